"""Property-based tests (hypothesis) over every public op of cnnext.functional (issue #7).

For each op of the registry in test_robustness_specs.py, one worker subprocess runs three phases:
  valid_cpu  random valid arguments: output, gradients (and batch_norm's running statistics) match
             torch on the CPU kernels (project tolerances: fp32 1e-5, fp64 1e-10 relative);
  valid_emu  a few tiny random valid cases on the emulated CUDA kernels, same checks;
  invalid    random invalid arguments (negative / zero / huge / wrong-type sizes, mismatched shapes,
             dtypes and devices (the 'meta' device), wrong rank, empty tensors, NaN/Inf data, a
             non-tensor where a tensor goes): cnnext must raise an exception whose message names the
             op and the argument, or give torch's result -- never accept what torch rejects, never
             crash, never hang.
The worker logs each case before running it, so a segfault or an abort fails the test with the
case that caused it instead of killing the test run.  One process per op keeps spawns few.
Reproduce a case from its description (tensors are T(shape, dtype, seed=...)) or rerun the worker:
    python tests/test_robustness_props.py --worker max_pool2d --seed 1234
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import traceback

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (HERE, os.path.dirname(HERE)):  # tests/ (the spec registry) and the repo root (cnnext)
    if _p not in sys.path:
        sys.path.insert(0, _p)

import torch  # noqa: E402

import test_robustness_specs as specs  # noqa: E402
from test_robustness_specs import SPECS, Case, HypothesisDrawer, T, float_outputs  # noqa: E402

N_VALID = int(os.environ.get("ROBUSTNESS_VALID_EXAMPLES", 30))
N_EMU = int(os.environ.get("ROBUSTNESS_EMU_EXAMPLES", 4))
N_INVALID = int(os.environ.get("ROBUSTNESS_INVALID_EXAMPLES", 80))
WORKER_TIMEOUT = int(os.environ.get("ROBUSTNESS_WORKER_TIMEOUT", 300))
PHASES = ("valid_cpu", "valid_emu", "invalid")
RTOL = {torch.float32: 1e-5, torch.float64: 1e-10}


# ============================================================================ comparisons


def rel_err(a, e, scale=0.0):
    """max |a - e| / max(max |e|, scale) over finite positions; inf if NaN/Inf positions differ."""
    a, e = a.detach().double(), e.detach().double()
    if not torch.equal(torch.isnan(a), torch.isnan(e)):
        return float("inf")
    inf_e = torch.isinf(e)
    if not torch.equal(inf_e, torch.isinf(a)) or not torch.equal(a[inf_e], e[inf_e]):
        return float("inf")
    fin = torch.isfinite(e)
    if not fin.any():
        return 0.0
    scale = e[fin].abs().max().clamp_min(max(scale, 1e-30))
    return ((a - e)[fin].abs().max() / scale).item()


def compare(got, want, what, scale=0.0):
    """None if `got` matches `want` (nested tuples/lists of tensors), else a message; `scale`: a floor
    for the magnitude float errors are measured against (rel_err)."""
    if isinstance(want, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(want):
            return f"{what}: got {type(got).__name__} of {len(got) if isinstance(got, (tuple, list)) else '-'}, want {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            m = compare(g, w, f"{what}[{i}]", scale)
            if m:
                return m
        return None
    if not isinstance(want, torch.Tensor):
        return None if got == want else f"{what}: {got!r} != {want!r}"
    if not isinstance(got, torch.Tensor):
        return f"{what}: got {type(got).__name__}, want a tensor"
    if got.shape != want.shape or got.dtype != want.dtype or got.device != want.device:
        return f"{what}: got {tuple(got.shape)} {got.dtype} {got.device}, want {tuple(want.shape)} {want.dtype} {want.device}"
    if want.device.type == "meta" or want.numel() == 0:
        return None
    if not want.is_floating_point():
        return None if torch.equal(got, want) else f"{what}: integer values differ ({(got != want).sum().item()} positions)"
    err = rel_err(got, want, scale)
    tol = RTOL.get(want.dtype, 1e-3)
    return None if err <= tol else f"{what}: relative error {err:.3g} > {tol:.0e}"


def _to_fp64(x):
    if isinstance(x, torch.Tensor) and x.dtype == torch.float32:
        return x.detach().double()
    if isinstance(x, (list, tuple)):
        return type(x)(_to_fp64(t) for t in x)
    return x


def as_accurate_as_torch(spec, case, got, want):
    """For a float32 case that misses the 1e-5 tolerance against torch's float32 result: judge both
    against torch's float64 result on the same inputs. A sum that cancels (e.g. a gradient of a few
    terms of size 1 adding up to 3e-3) leaves both libraries far from each other but each near the
    exact value; cnnext passes if it is within 1e-5 of the float64 result, or no further from it
    than twice torch's own float32 error."""
    args, kwargs = case.build()
    exact = specs.evaluate_built(spec, _to_fp64(args), {k: _to_fp64(v) for k, v in kwargs.items()}, fn=spec.ref)
    g, w, e = specs.flat_tensors(got), specs.flat_tensors(want), specs.flat_tensors(exact)
    if not (len(g) == len(w) == len(e)):
        return False
    for gt, wt, et in zip(g, w, e):
        if wt.dtype != torch.float32:  # only float32 results get the float64 arbiter
            if compare(gt, wt, "") is not None:
                return False
        elif rel_err(gt, et) > max(RTOL[torch.float32], 2 * rel_err(wt, et)):
            return False
    return True


def run_valid(spec, case, emulate):
    """Forward + backward of cnnext vs torch on one valid case; returns None or a failure message."""
    want = specs.evaluate(spec, case, False, fn=spec.ref)
    got = specs.evaluate(spec, case, emulate)
    # batch_norm_relu: the output's error against the magnitude of batch_norm's output (OpSpec.output_scale_ref)
    out_scale = 0.0
    if spec.output_scale_ref is not None:
        pre = specs.evaluate(spec, case, False, fn=spec.output_scale_ref, backward=False)[0]
        fin = pre[torch.isfinite(pre)]
        out_scale = fin.double().abs().max().item() if fin.numel() else 0.0
    for g, w, what in zip(got, want, ("output", "grads", "in-place state")):
        m = compare(g, w, what, out_scale if what == "output" else 0.0)
        if m and not as_accurate_as_torch(spec, case, got, want):
            return m
    return None


# ============================================================================ invalid cases

BAD_TENSOR_VALUES = ["list", None, "abc", 3, 2.5]


def tensor_slots(case):
    """(path, T) of every tensor argument: path = ('a', i) | ('a', i, j) | ('k', name)."""
    out = []
    for i, a in enumerate(case.args):
        if isinstance(a, T):
            out.append((("a", i), a))
        elif isinstance(a, list):
            out += [(("a", i, j), t) for j, t in enumerate(a) if isinstance(t, T)]
    out += [(("k", n), v) for n, v in case.kwargs.items() if isinstance(v, T)]
    return out


def replace(case, path, value):
    args, kwargs = list(case.args), dict(case.kwargs)
    if path[0] == "k":
        kwargs[path[1]] = value
    elif len(path) == 2:
        args[path[1]] = value
    else:
        lst = list(args[path[1]])
        lst[path[2]] = value
        args[path[1]] = lst
    return args, kwargs


def slot_name(spec, path):
    if path[0] == "k":
        return path[1]
    return spec.input_names[path[1]] if path[1] < len(spec.input_names) else f"arg{path[1]}"


def draw_invalid(spec, draw):
    """A valid case, then one corruption of it.  `expect` = argument names a message may name;
    `must_match` = data-only corruptions where cnnext must do what torch does."""
    base = spec.valid(draw, True)
    slots = tensor_slots(base)
    kinds = ["dtype", "meta", "nan", "rank", "empty", "type"] + ["param"] * bool(spec.params) * 3 + ["op"] * len(
        spec.mutations
    ) * 2
    kind = draw.choice(kinds)
    path, t = slots[draw.int(0, len(slots) - 1)] if slots else (None, None)
    name = slot_name(spec, path) if path else "input"
    if kind == "param":
        p = draw.choice(sorted(spec.params))
        v = draw.choice(spec.params[p])
        return Case(base.args, {**base.kwargs, p: v}, (p,), f"{p}={v!r}"), False
    if kind == "op":
        m = draw.choice(spec.mutations)
        c = m(draw, base)
        if c is not None:
            return c, False
        kind = "nan"
    import dataclasses as dc

    if kind == "dtype":
        # (bfloat16 and float16 are valid: tests/test_half.py)
        dt = draw.choice([torch.int64, torch.int32, torch.float8_e4m3fn, torch.float8_e5m2, torch.bool,
                          torch.complex64, torch.uint8])
        args, kwargs = replace(base, path, dc.replace(t, dtype=dt))
        return Case(args, kwargs, (name, "dtype", "float"), f"{name} dtype {dt}"), False
    if kind == "meta":
        args, kwargs = replace(base, path, dc.replace(t, device="meta"))
        return Case(args, kwargs, (name, "device", "meta"), f"{name} on meta"), len(slots) == 1
    if kind == "nan":
        v = draw.choice(["nan", "inf", "-inf"])
        args, kwargs = replace(base, path, dc.replace(t, fill=(v, draw.int(0, 10**6))))
        return Case(args, kwargs, (), f"{name} holds {v}"), True
    if kind == "rank":
        shape = tuple(t.shape)
        new = draw.choice([shape[1:], shape + (2,), (1,) + shape, shape[:-1], (), shape[-1:]])
        args, kwargs = replace(base, path, dc.replace(t, shape=new, layout="contiguous"))
        return Case(args, kwargs, (name, "dim", "shape", "size"), f"{name} of shape {new}"), False
    if kind == "empty":
        shape = list(t.shape)
        if not shape:
            return Case(base.args, base.kwargs, (), "unchanged"), True
        shape[draw.int(0, len(shape) - 1)] = 0
        args, kwargs = replace(base, path, dc.replace(t, shape=tuple(shape)))
        return Case(args, kwargs, (name, "empty", "size", "shape", "dim", "zero", "0"), f"{name} of shape {tuple(shape)}"), False
    # a non-tensor where a tensor goes
    v = draw.choice(BAD_TENSOR_VALUES)
    if v == "list":
        v = [[1.0, 2.0], [3.0, 4.0]]
    args, kwargs = replace(base, path, v)
    return Case(args, kwargs, (name, "Tensor", "tensor"), f"{name}={v!r}"), False


def outcome(fn, case, emulate=False):
    try:
        args, kwargs = case.build()
    except Exception as e:  # the description itself cannot be built (e.g. bool randn): skip
        return "unbuildable", e
    try:
        with specs.cnnext.emulate_cuda(emulate):
            return "ok", fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 -- any Python exception is a clean rejection
        return "raised", e


def clamp_huge(v):
    if isinstance(v, bool) or not isinstance(v, (int, tuple, list)):
        return v
    if isinstance(v, int):
        return max(min(v, 2**31 - 1), -(2**31))
    return type(v)(clamp_huge(x) for x in v)


def judge_invalid(spec, case, must_match):
    t_kind, t_val = outcome(spec.ref, case)
    if t_kind == "unbuildable":
        return None
    if t_kind == "raised" and "without overflow" in str(t_val):
        # torch's own int32 limit on a huge size / stride / padding: cnnext may take int64 values, so
        # judge against torch with those values clamped to 2^31-1, which acts the same on these small
        # inputs (one window per axis for a stride; still larger than the input for a kernel)
        clamped = Case(case.args, {k: clamp_huge(v) for k, v in case.kwargs.items()}, case.expect, case.what)
        t_kind, t_val = outcome(spec.ref, clamped)
    c_kind, c_val = outcome(spec.fn, case)
    if c_kind == "raised":
        msg = f"{type(c_val).__name__}: {c_val}"
        low = msg.lower()
        if t_kind == "ok" and must_match:
            return f"raised where torch succeeds: {msg[:300]}"
        if not any(n.lower() in low for n in (spec.name, *spec.aliases)):
            return f"error does not name the op '{spec.name}': {msg[:300]}"
        if case.expect and not any(e.lower() in low for e in case.expect):
            return f"error names none of {case.expect}: {msg[:300]}"
        return None
    if t_kind == "raised":
        return f"accepted input torch rejects ({type(t_val).__name__}: {str(t_val)[:200]})"
    if case.what.split(" holds ")[-1] in ("nan", "inf", "-inf"):
        return compare_nonfinite(c_val, t_val)
    return compare(c_val, t_val, "result")


def compare_nonfinite(got, want):
    """NaN/Inf injected into the data: wherever torch's result is NaN or Inf, cnnext's must be non-finite
    too (a NaN never disappears); where both are finite they match.  cnnext may be non-finite where
    torch is finite: 0 * inf on the zero padding is NaN in IEEE arithmetic, and torch itself differs
    between its code paths on whether padding taps are multiplied (conv2d: padding=1 gives NaN,
    padding with dilation and groups skips the tap)."""
    gs = list(got) if isinstance(got, (tuple, list)) else [got]
    ws = list(want) if isinstance(want, (tuple, list)) else [want]
    if len(gs) != len(ws):
        return f"result: {len(gs)} outputs, want {len(ws)}"
    for i, (g, w) in enumerate(zip(gs, ws)):
        if not isinstance(w, torch.Tensor) or not w.is_floating_point() or w.device.type == "meta":
            m = compare(g, w, f"result[{i}]")
            if m and not (isinstance(w, torch.Tensor) and not w.is_floating_point()):
                return m
            continue
        if not isinstance(g, torch.Tensor) or g.shape != w.shape or g.dtype != w.dtype:
            return compare(g, w, f"result[{i}]")
        g64, w64 = g.double(), w.double()
        lost = ~torch.isfinite(w64) & torch.isfinite(g64)
        if lost.any():
            k = lost.nonzero()[0].tolist()
            return f"result[{i}]: torch gives {w64[tuple(k)].item()} at {k}, cnnext a finite {g64[tuple(k)].item()}"
        both = torch.isfinite(w64) & torch.isfinite(g64)
        if both.any():
            m = compare(g64[both], w64[both], f"result[{i}] (finite positions)")
            if m and RTOL.get(w.dtype) and rel_err(g64[both], w64[both]) > RTOL[w.dtype]:
                return m
    return None


# ============================================================================ the worker


def worker(op, out_path, seed, phases):
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    spec = SPECS[op]
    log = open(out_path, "a", buffering=1)

    def emit(**kw):
        log.write(json.dumps(kw) + "\n")
        log.flush()

    def cfg(n):
        return settings(max_examples=n, deadline=None, database=None, derandomize=False, print_blob=False,
                        phases=[Phase.generate], suppress_health_check=list(HealthCheck))

    for phase in phases:
        failures, count = [], [0]
        emit(event="phase", phase=phase)

        def record(case, msg):
            if len(failures) < 8:
                failures.append({"case": repr(case), "msg": msg})
            count.append(1)

        if phase in ("valid_cpu", "valid_emu"):
            emu = phase == "valid_emu"

            @hseed(seed)
            @cfg(N_EMU if emu else N_VALID)
            @given(st.data())
            def prop(data):
                case = spec.valid(HypothesisDrawer(data), emu)
                count[0] += 1
                emit(event="case", case=repr(case))
                try:
                    m = run_valid(spec, case, emu)
                except Exception as e:  # noqa: BLE001
                    m = f"raised on valid input: {type(e).__name__}: {str(e)[:400]}\n{traceback.format_exc()[-600:]}"
                if m:
                    record(case, m)
        else:

            @hseed(seed)
            @cfg(N_INVALID)
            @given(st.data())
            def prop(data):
                case, must_match = draw_invalid(spec, HypothesisDrawer(data))
                count[0] += 1
                emit(event="case", case=repr(case))
                try:
                    m = judge_invalid(spec, case, must_match)
                except Exception as e:  # noqa: BLE001 -- a failure of the comparison itself
                    m = f"checking failed: {type(e).__name__}: {str(e)[:300]}"
                if m:
                    record(case, m)

        prop()
        emit(event="done", phase=phase, cases=count[0], failed=len(count) - 1, failures=failures)
    log.close()


# ============================================================================ the tests

_RESULTS = {}


def run_worker(op):
    if op in _RESULTS:
        return _RESULTS[op]
    seed = int(os.environ.get("ROBUSTNESS_SEED", int.from_bytes(os.urandom(4), "little")))
    fd, path = tempfile.mkstemp(prefix=f"robust-{op}-", suffix=".jsonl")
    os.close(fd)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", op, "--out", path, "--seed", str(seed)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT)
        rc, tail = p.returncode, (p.stdout + p.stderr)[-3000:]
    except subprocess.TimeoutExpired as e:
        rc, tail = "timeout", ((e.stdout or b"").decode(errors="replace") + (e.stderr or b"").decode(errors="replace"))[-3000:]
    events = [json.loads(line) for line in open(path) if line.strip()]
    os.unlink(path)
    res = {"rc": rc, "tail": tail, "seed": seed, "events": events}
    _RESULTS[op] = res
    return res


def ops():
    return list(SPECS)


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("op", ops())
def test_property(op, phase):
    spec = SPECS[op]
    if not spec.available:
        pytest.skip(f"cnnext.functional.{op} does not exist yet")
    r = run_worker(op)
    done = {e["phase"]: e for e in r["events"] if e["event"] == "done"}
    where = f"(worker seed {r['seed']}: ROBUSTNESS_SEED={r['seed']} python tests/test_robustness_props.py --worker {op})"
    if phase not in done:
        started = [e["phase"] for e in r["events"] if e["event"] == "phase"]
        last = [e["case"] for e in r["events"] if e["event"] == "case"]
        if started and started[-1] == phase:
            pytest.fail(f"{op}: the worker died (exit {r['rc']}) in phase {phase} while running\n  {last[-1] if last else '?'}\n"
                        f"{where}\n--- worker output ---\n{r['tail']}")
        pytest.fail(f"{op}: phase {phase} never ran: the worker died earlier (exit {r['rc']}) {where}\n{r['tail'][-1500:]}")
    d = done[phase]
    assert d["cases"] > 0
    if d["failed"]:
        lines = "\n".join(f"  {f['case']}\n    -> {f['msg']}" for f in d["failures"])
        pytest.fail(f"{op} {phase}: {d['failed']} of {d['cases']} cases failed {where}\n{lines}")


def test_the_checks_can_fail():
    """The judges are not vacuous: a slightly wrong op, an op that accepts what torch rejects, and an
    op whose error does not name itself are all caught (on every spec, with torch standing in)."""
    from test_robustness_specs import RandomDrawer

    for spec in SPECS.values():
        case = next(c for c in (spec.valid(RandomDrawer(s), True) for s in range(100))
                    if float_outputs(spec.ref(*c.build()[0], **c.build()[1]))[0].numel())
        assert run_valid(dataclasses.replace(spec, impl=spec.ref), case, False) is None

        def off(*a, **k):
            out = spec.ref(*a, **k)
            return tuple(o * 1.001 if o.is_floating_point() else o for o in out) if isinstance(out, tuple) else out * 1.001

        assert run_valid(dataclasses.replace(spec, impl=off), case, False), spec.name
        bad = Case(case.args, case.kwargs, (), "rank") if not case.args or not isinstance(case.args[0], T) else \
            Case([dataclasses.replace(case.args[0], shape=()), *case.args[1:]], case.kwargs, ("input",), "0-D input")
        if spec.name == "cat":
            bad = Case([[]], case.kwargs, ("tensors",), "no tensors")
        lenient = dataclasses.replace(spec, impl=lambda *a, **k: torch.zeros(1))
        assert "accepted input torch rejects" in judge_invalid(lenient, bad, False), spec.name

        def anonymous(*a, **k):
            raise RuntimeError("something went wrong")

        assert "does not name the op" in judge_invalid(dataclasses.replace(spec, impl=anonymous), bad, False)


if __name__ == "__main__":
    import argparse
    # the exact-FP32 bar for the emulated conv2d (conftest.py does the same for in-process tests)
    torch.backends.cudnn.allow_tf32 = False

    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", required=True)
    ap.add_argument("--out", default="/dev/stdout")
    ap.add_argument("--seed", type=int, default=int(os.environ.get("ROBUSTNESS_SEED", 0)))
    ap.add_argument("--phases", default=",".join(PHASES))
    a = ap.parse_args()
    worker(a.worker, a.out, a.seed, a.phases.split(","))
