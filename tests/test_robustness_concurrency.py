"""Concurrency (issue #7): every public op called from 8 Python threads at once, and under different
torch.set_num_threads settings, gives the serial results.

  * test_threads_cpu / test_threads_emu / test_threads_mixed: 8 threads, each running every op
    (forward + backward) on its own inputs, 3 rounds, started together by a barrier; results must be
    bit-identical to the same calls made serially.  On the emulator (launches serialized by a mutex,
    `__shared__` static) this checks launches do not deadlock or mix up results; 'mixed' runs CPU and
    emulated threads side by side (emulate_cuda() is per thread).  A thread still running after the
    time limit is reported as a deadlock.
  * test_num_threads: torch.set_num_threads(1) vs (2) on the spec's medium case (big enough for
    at::parallel_for to split) and a few random ones; ops whose spec says `bit_identical_threads` must agree bit for bit, the others within the
    project tolerance.
"""
import os
import sys
import threading

import pytest
import torch

for _p in (os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.dirname(os.path.abspath(__file__)))):
    if _p not in sys.path:
        sys.path.insert(0, _p)
import test_robustness_specs as specs  # noqa: E402
from conftest import assert_rel_close  # noqa: E402

N_THREADS = 8
ROUNDS = 3
TIMEOUT = 240


def ops():
    avail = specs.available_specs()
    assert avail, "no public op available"
    return avail


def cases(small, seed0, emulate_of_thread):
    """One valid case per op and per thread (different inputs in every thread).  A case that fails
    even serially (a bug test_robustness_props reports) is replaced by the next draw."""
    out = {}
    for s in ops():
        out[s.name] = []
        for t in range(N_THREADS):
            for k in range(20):
                c = specs.draw_valid(s, seed0 + 1000 * t + 100000 * k, small)
                try:
                    specs.evaluate(s, c, emulate_of_thread(t))
                    break
                except Exception:  # noqa: BLE001
                    continue
            out[s.name].append(c)
    return out


def identical(a, b):
    ta, tb = specs.flat_tensors(a), specs.flat_tensors(b)
    return len(ta) == len(tb) and all(
        x.shape == y.shape and x.dtype == y.dtype and torch.equal(x.nan_to_num(7.0), y.nan_to_num(7.0)) and
        torch.equal(x.isnan(), y.isnan()) for x, y in zip(ta, tb))


def run_threads(emulate_of_thread, small, seed0):
    cs = cases(small, seed0, emulate_of_thread)
    by_name = {s.name: s for s in ops()}
    serial = {(n, t): specs.evaluate(by_name[n], cs[n][t], emulate_of_thread(t)) for n in cs for t in range(N_THREADS)}
    results, errors = {}, []
    barrier = threading.Barrier(N_THREADS)

    def body(t):
        try:
            barrier.wait()
            names = list(cs)
            for r in range(ROUNDS):
                for i in range(len(names)):  # every op, in a different order per thread
                    n = names[(i + t) % len(names)]
                    results[(n, t, r)] = specs.evaluate(by_name[n], cs[n][t], emulate_of_thread(t))
        except Exception as e:  # noqa: BLE001
            errors.append(f"thread {t}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=body, args=(t,), daemon=True) for t in range(N_THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(TIMEOUT)
    alive = [i for i, th in enumerate(threads) if th.is_alive()]
    assert not alive, f"threads {alive} still running after {TIMEOUT}s: deadlock?"
    assert not errors, "\n".join(errors)
    bad = [f"{n} thread {t} round {r} ({'emu' if emulate_of_thread(t) else 'cpu'}): {cs[n][t]}"
           for (n, t, r), res in results.items() if not identical(res, serial[(n, t)])]
    assert len(results) == len(cs) * N_THREADS * ROUNDS
    assert not bad, "results differ from the serial run:\n" + "\n".join(bad[:10])


def test_threads_cpu():
    run_threads(lambda t: False, small=False, seed0=1)


def test_threads_emu():
    run_threads(lambda t: True, small=True, seed0=2)


def test_threads_mixed():
    run_threads(lambda t: t % 2 == 1, small=True, seed0=3)


@pytest.mark.parametrize("name", list(specs.SPECS))
def test_num_threads(name):
    spec = specs.SPECS[name]
    if not spec.available:
        pytest.skip(f"cnnext.functional.{name} does not exist yet")
    prev = torch.get_num_threads()
    try:
        for case in (spec.medium(), *(specs.draw_valid(spec, s) for s in range(4))):
            res = {}
            for n in (1, 2, 1):
                torch.set_num_threads(n)
                res.setdefault(n, []).append(specs.evaluate(spec, case))
            assert identical(res[1][0], res[1][1]), f"{name}: two runs with 1 thread differ: {case}"
            if spec.bit_identical_threads:
                assert identical(res[1][0], res[2][0]), f"{name}: 1 vs 2 threads not bit-identical: {case}"
            else:
                for a, b in zip(specs.flat_tensors(res[1][0]), specs.flat_tensors(res[2][0])):
                    if a.is_floating_point():
                        assert_rel_close(b, a, what=f"{name}: 2 vs 1 threads")
                    else:
                        assert torch.equal(a, b)
    finally:
        torch.set_num_threads(prev)
