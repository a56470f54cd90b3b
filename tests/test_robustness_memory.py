"""Memory (issue #7): every public op, forward + backward, 1000 times in a loop leaves the resident
set flat.  RSS (from /proc/self/statm) is read after a warm-up and after the loop; growth must stay
under 20 MB (a leak of one input-sized buffer per call would be several hundred MB; an input here is
at least 16K elements).  The emulated CUDA kernels get 100 calls on tiny shapes (a leak per launch shows
there as well).  A worker subprocess per backend (allocations of other tests do not blur it) measures the ops one
after the other.
"""
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (HERE, os.path.dirname(HERE)):  # the spec registry, and cnnext (repo root)
    if _p not in sys.path:
        sys.path.insert(0, _p)
import test_robustness_specs as specs  # noqa: E402

TOLERANCE_MB = 20
ITERS = {"cpu": 1000, "emu": 100}


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(name, backend, iters):
    import gc

    import torch

    torch.set_num_threads(1)  # a loaded machine makes 2-thread OpenMP barriers slow; leaks don't care
    if name == "leaky-selftest":  # corr2d, keeping every output alive: a leak the test must see
        import dataclasses

        kept = []
        base = specs.SPECS["corr2d"]
        spec = dataclasses.replace(base, impl=lambda *a, **k: kept.append(base.fn(*a, **k)) or kept[-1])
    else:
        spec = specs.SPECS[name]
    # the spec's medium case (CPU; >= 16K input elements), or the smallest of a few tiny draws (emulator)
    cands = [specs.draw_valid(spec, s, small=True) for s in range(30)]
    size = lambda c: sum(t.numel() for t in specs.flat_tensors(specs.evaluate(spec, c, fn=spec.ref, backward=False)))  # noqa: E731
    case = spec.medium() if backend == "cpu" else min(cands, key=size)
    emu = backend == "emu"
    args, kwargs = case.build()
    for _ in range(max(20, iters // 10)):  # warm-up: allocator caches, autograd, lazy init
        specs.evaluate_built(spec, args, kwargs, emu)
    gc.collect()
    r0 = rss_mb()
    for _ in range(iters):
        specs.evaluate_built(spec, args, kwargs, emu)
    gc.collect()
    r1 = rss_mb()
    return {"op": name, "backend": backend, "iters": iters, "rss0_mb": r0, "rss1_mb": r1,
            "input_elems": size(case), "case": repr(case)}


_RESULTS = {}


def results(backend):
    """One worker process per backend measures every available op (one after the other)."""
    if backend not in _RESULTS:
        names = [s.name for s in specs.available_specs()]
        p = subprocess.run([sys.executable, os.path.abspath(__file__), ",".join(names), backend, str(ITERS[backend])],
                           capture_output=True, text=True, timeout=600, cwd=os.path.dirname(HERE))
        _RESULTS[backend] = (p.returncode, (p.stdout + p.stderr)[-3000:],
                             {r["op"]: r for r in map(json.loads, p.stdout.strip().splitlines()) if "op" in r}
                             if p.returncode == 0 else {})
    return _RESULTS[backend]


@pytest.mark.parametrize("backend", ["cpu", "emu"])
@pytest.mark.parametrize("name", list(specs.SPECS))
def test_no_leak(name, backend):
    if not specs.SPECS[name].available:
        pytest.skip(f"cnnext.functional.{name} does not exist yet")
    rc, tail, res = results(backend)
    assert rc == 0, f"worker failed (exit {rc}):\n{tail}"
    r = res[name]
    growth = r["rss1_mb"] - r["rss0_mb"]
    assert growth < TOLERANCE_MB, (f"{name} on {backend}: RSS grew {growth:.1f} MB over {r['iters']} forward+backward "
                                   f"calls ({r['rss0_mb']:.0f} -> {r['rss1_mb']:.0f} MB) on {r['case']}")


def test_leak_is_detected():
    """The measurement is not vacuous: an op that keeps every output (46K floats) alive grows past it."""
    if not specs.SPECS["corr2d"].available:
        pytest.skip("needs corr2d")
    p = subprocess.run([sys.executable, os.path.abspath(__file__), "leaky-selftest", "cpu", "200"],
                       capture_output=True, text=True, timeout=300, cwd=os.path.dirname(HERE))
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["rss1_mb"] - r["rss0_mb"] > TOLERANCE_MB, r


if __name__ == "__main__":
    for op in sys.argv[1].split(","):
        print(json.dumps(measure(op, sys.argv[2], int(sys.argv[3]))), flush=True)
