"""The CUDA kernels on a real GPU, in one command (issue 12 item 1).

Run from the repository root, after the README's set-up, on a machine with one NVIDIA GPU:

    python -m bench.gpu_check [--json gpu_check.json] [--skip-timing] [--skip-sanitizers] [--skip-large]

What it does (meant to finish in under 5 minutes on one H100/H200):
  environment   the device, its compute capability, cnnext.info()
  correctness   every op and every kernel variant (conv2d: both tiles, 1x1, strided, dilated, grouped,
                depthwise, split-K on and off, the direct fallback, odd sizes, and the TF32 tensor-core
                path; batch_norm: NCHW, channels_last, S == 1, train and eval, with and without ReLU;
                pools: ceil_mode, NaN; cat: every copy width, offset slices, more than 64 inputs),
                outputs and gradients, fp32 to 1e-5 and fp64 to 1e-10 (relative to the largest
                reference magnitude), each against cnnext's CPU kernels on the same inputs and against
                torch on the GPU with TF32 off
  more checks   fp64 gradcheck on tiny shapes; determinism (two runs, torch.equal); CUDA-graph capture
                of forward + backward; a side stream; sampled checks on inputs of more than 2^31
                elements; compute-sanitizer memcheck / racecheck / synccheck on tiny shapes (when
                compute-sanitizer is on PATH)
  timing        CUDA events: bench_conv2d's family shapes at batch 128 (forward, grad input, grad
                weight) against F.conv2d with TF32 on and off and cudnn.benchmark=True, in TFLOP/s and
                % of the device's FP32 and TF32 peaks; memory-bound ops in GB/s and % of the device's
                bandwidth; a ResNet-18 training step (96x96, batch 256) against torch
Output: a JSON file (--json); exit status 0 if every check passed, 1 if any failed, 3 (printing
`no CUDA device`) when there is no CUDA device.

The correctness machinery also runs on the CPU against the emulated CUDA kernels
(`--backend emu`, light cases only): tests/test_gpu_check.py runs it that way, so what this script
checks on a GPU is itself tested without one.
"""
import argparse
import contextlib
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
import traceback

import torch
import torch.nn.functional as F

EXIT_OK, EXIT_FAIL, EXIT_NO_DEVICE = 0, 1, 3
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


# ---------------------------------------------------------------- results
class Results:
    """Every check's outcome: section, name, ok, and what was measured."""

    def __init__(self, verbose=True):
        self.checks, self.timing, self.verbose = [], {}, verbose

    def add(self, section, name, ok, **detail):
        self.checks.append({"section": section, "name": name, "ok": bool(ok), **detail})
        if self.verbose:
            extra = " ".join(f"{k}={_fmt(v)}" for k, v in detail.items() if k != "traceback")
            print(f"{'ok  ' if ok else 'FAIL'} [{section}] {name} {extra}", flush=True)

    def run(self, section, name, fn):
        """fn() -> dict of details (ok = no exception and details['ok'] if given)."""
        try:
            d = fn() or {}
            ok = d.pop("ok", True)
            self.add(section, name, ok, **d)
        except Exception as e:  # a crash is a failed check, not the end of the run
            self.add(section, name, False, error=f"{type(e).__name__}: {e}"[:2000],
                     traceback=traceback.format_exc()[-4000:])

    @property
    def failed(self):
        return [c for c in self.checks if not c["ok"]]


def _fmt(v):
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def rel_err(actual, expected):
    """max |a - e| / max |e| over the non-NaN reference elements; inf when the NaN positions differ."""
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    if a.shape != e.shape:
        return math.inf
    if e.numel() == 0:
        return 0.0
    if not torch.equal(torch.isnan(a), torch.isnan(e)):
        return math.inf
    fin = ~torch.isnan(e)
    if not fin.any():
        return 0.0
    if not torch.equal(torch.isinf(a[fin]), torch.isinf(e[fin])):
        return math.inf
    both = fin & ~torch.isinf(e)
    if not both.any():
        return 0.0
    scale = e[both].abs().max().clamp_min(1e-30)
    return ((a - e)[both].abs().max() / scale).item()


# ---------------------------------------------------------------- backends
def backend_device(backend):
    return "cuda" if backend == "cuda" else "cpu"


@contextlib.contextmanager
def backend_context(backend):
    """cuda: the tensors are on the GPU; emu: CPU tensors inside cnnext.emulate_cuda(); cpu: CPU kernels."""
    import cnnext
    with cnnext.emulate_cuda(backend == "emu"):
        yield


@contextlib.contextmanager
def tf32(enabled):
    """torch.backends.cudnn.allow_tf32 (and matmul's) for the block: cnnext's conv follows cuDNN's flag."""
    prev = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = prev


@contextlib.contextmanager
def env(**kv):
    """Environment switches of the launchers (CNNEXT_CONV2D_DIRECT, CNNEXT_CONV2D_TILE) for the block."""
    prev = {k: os.environ.get(k) for k in kv}
    os.environ.update({k: str(v) for k, v in kv.items()})
    try:
        yield
    finally:
        for k, v in prev.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run(fn, inputs, grad_idx, gy_seed, device, ctx, memory_format=None):
    """fn(*inputs) on `device` inside ctx: the outputs, and the gradients of the first output with respect
    to inputs[grad_idx] for a fixed random grad_output. Inputs are CPU tensors (or lists of them)."""
    def move(t, i):
        if isinstance(t, (list, tuple)):
            return [move(u, i) for u in t]
        if not isinstance(t, torch.Tensor):
            return t
        u = t.to(device)
        if memory_format is not None and u.dim() == 4 and i == 0:
            u = u.contiguous(memory_format=memory_format)
        if i in grad_idx:
            u = u.detach().requires_grad_()
        return u

    xs = [move(t, i) for i, t in enumerate(inputs)]
    leaves = []
    for i in grad_idx:
        leaves += xs[i] if isinstance(xs[i], list) else [xs[i]]
    with ctx:
        out = fn(*xs)
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        grads = []
        if leaves:
            y = outs[0]
            g = torch.Generator().manual_seed(gy_seed)
            gy = torch.randn(y.shape, dtype=y.dtype, generator=g).to(device)
            grads = list(torch.autograd.grad(y, leaves, gy, allow_unused=True))
    return [o.detach() for o in outs], [g.detach() if g is not None else None for g in grads]


def compare_op(cn_fn, torch_fn, inputs, backend, grad_idx=(), tol=None, memory_format=None, vs_cpu=True,
               vs_torch=True):
    """cnnext (`cn_fn`) on `backend` against cnnext's CPU kernels and against torch (`torch_fn`) on the
    backend's device (TF32 off), outputs and gradients. Returns {'ok', 'err_cpu', 'err_torch', 'tol'}."""
    dtype = next(t for t in _flat(inputs) if isinstance(t, torch.Tensor) and t.is_floating_point()).dtype
    tol = TOL[dtype] if tol is None else tol
    dev = backend_device(backend)
    with tf32(False):
        got = _run(cn_fn, inputs, grad_idx, 1, dev, backend_context(backend), memory_format)
        refs = {}
        if vs_cpu:
            refs["err_cpu"] = _run(cn_fn, inputs, grad_idx, 1, "cpu", backend_context("cpu"))
        if vs_torch:
            refs["err_torch"] = _run(torch_fn, inputs, grad_idx, 1, dev, contextlib.nullcontext(), memory_format)
    out = {"tol": tol}
    ok = True
    for key, ref in refs.items():
        errs = []
        for a, e in zip(got[0] + got[1], ref[0] + ref[1]):
            if a is None or e is None:
                errs.append(0.0 if a is None and e is None else math.inf)
            elif not a.is_floating_point():
                errs.append(0.0 if torch.equal(a.cpu(), e.cpu()) else math.inf)
            else:
                errs.append(rel_err(a, e))
        if len(got[0]) + len(got[1]) != len(ref[0]) + len(ref[1]):
            errs.append(math.inf)
        out[key] = max(errs) if errs else 0.0
        ok = ok and out[key] <= tol
    out["ok"] = ok
    return out


def _flat(xs):
    for x in xs:
        if isinstance(x, (list, tuple)):
            yield from _flat(x)
        else:
            yield x


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _randn(shape, dtype, seed):
    return torch.randn(shape, dtype=dtype, generator=_gen(seed))


# ---------------------------------------------------------------- correctness cases
# Each case: (op, name, heavy, fn) where fn(backend, dtype) -> compare_op's dict. Heavy cases are
# the GPU-sized ones (the 128 tile's natural trigger, split-K off by size): skipped on the emulator.
def conv_cases():
    from cnnext.functional import conv2d
    # (name, (N, C, H, W), (K, kh, kw), stride, padding, dilation, groups, env, heavy)
    cfg = [
        ("tile64_3x3", (2, 8, 9, 9), (16, 3, 3), 1, 1, 1, 1, {}, False),
        ("tile128_forced", (1, 6, 7, 9), (130, 3, 3), 1, 1, 1, 1, {"CNNEXT_CONV2D_TILE": "128"}, False),
        ("tile128_by_size", (4, 32, 96, 96), (128, 3, 3), 1, 1, 1, 1, {}, True),
        ("1x1", (2, 40, 9, 9), (70, 1, 1), 1, 0, 1, 1, {}, False),
        ("1x1_s2", (2, 4, 7, 7), (6, 1, 1), 2, 0, 1, 1, {}, False),
        ("3x3_s2", (2, 5, 11, 10), (7, 3, 3), 2, 1, 1, 1, {}, False),
        ("7x7_s2_p3", (1, 3, 17, 16), (8, 7, 7), 2, 3, 1, 1, {}, False),
        ("11x11_s4", (1, 1, 27, 27), (4, 11, 11), 4, 1, 1, 1, {}, False),
        ("dilated", (1, 3, 12, 13), (4, 3, 3), 1, 2, 2, 1, {}, False),
        ("dilated_asym", (1, 2, 11, 12), (3, 3, 2), (2, 1), (1, 2), (2, 3), 1, {}, False),
        ("grouped", (2, 8, 7, 6), (12, 3, 3), 1, 1, 1, 4, {}, False),
        ("depthwise", (2, 9, 8, 7), (9, 3, 3), 1, 1, 1, 9, {}, False),
        ("depthwise_x2_s2", (2, 6, 9, 9), (12, 3, 3), 2, 1, 1, 6, {}, False),
        ("many_groups", (1, 65, 3, 3), (65, 3, 3), 1, 1, 1, 65, {}, False),
        ("splitk_on", (4, 3, 33, 31), (5, 3, 3), 1, 1, 1, 1, {}, False),  # small gW, long reduction: splits
        ("splitk_off", (1, 4, 7, 7), (6, 3, 3), 1, 1, 1, 1, {}, False),  # reduction < 4 BK steps: one split
        ("splitk_off_by_tiles", (2, 256, 12, 12), (256, 3, 3), 1, 1, 1, 1, {}, True),
        ("direct_fallback", (2, 5, 9, 8), (6, 3, 2), (2, 1), (1, 2), (1, 2), 1, {"CNNEXT_CONV2D_DIRECT": "1"}, False),
        ("direct_fallback_grouped", (1, 6, 7, 7), (6, 3, 3), 1, 1, 1, 3, {"CNNEXT_CONV2D_DIRECT": "1"}, False),
        ("odd_sizes", (3, 7, 13, 11), (5, 5, 3), (3, 2), (2, 1), 1, 1, {}, False),
        ("odd_over_tiles", (1, 9, 10, 9), (67, 3, 3), 1, 1, 1, 1, {}, False),
        ("kernel_eq_padded", (1, 2, 3, 4), (3, 5, 6), 1, 1, 1, 1, {}, False),
    ]
    out = []
    for name, xs, (K, kh, kw), st, pad, dil, groups, e, heavy in cfg:
        def fn(backend, dtype, xs=xs, K=K, kh=kh, kw=kw, st=st, pad=pad, dil=dil, groups=groups, e=e, name=name):
            s = sum(map(ord, name))
            x = _randn(xs, dtype, s)
            w = _randn((K, xs[1] // groups, kh, kw), dtype, s + 1) / math.sqrt(xs[1] // groups * kh * kw)
            b = _randn((K,), dtype, s + 2)
            kw_ = dict(stride=st, padding=pad, dilation=dil, groups=groups)
            with env(**e):
                return compare_op(lambda x, w, b: conv2d(x, w, b, **kw_), lambda x, w, b: F.conv2d(x, w, b, **kw_),
                                  [x, w, b], backend, grad_idx=(0, 1, 2))
        out.append(("conv2d", name, heavy, fn))
    return out


def bn_cases():
    from cnnext.functional import batch_norm, batch_norm_relu
    out = []
    for layout in ("nchw", "channels_last", "s1"):
        for training in (True, False):
            for relu in (False, True):
                name = f"{layout}_{'train' if training else 'eval'}{'_relu' if relu else ''}"

                def fn(backend, dtype, layout=layout, training=training, relu=relu, name=name):
                    shape = {"nchw": (4, 5, 7, 6), "channels_last": (3, 6, 5, 7), "s1": (9, 7, 1, 1)}[layout]
                    s = sum(map(ord, name))
                    C = shape[1]
                    x = _randn(shape, dtype, s) * 2 + 0.5
                    w, b = _randn((C,), dtype, s + 1), _randn((C,), dtype, s + 2)
                    rm, rv = _randn((C,), dtype, s + 3) * 0.1, torch.rand(C, dtype=dtype, generator=_gen(s + 4)) + 0.5
                    cn, tf = (batch_norm_relu, lambda *a, **k: F.relu(F.batch_norm(*a, **k))) if relu else \
                        (batch_norm, F.batch_norm)

                    def run(op):
                        def f(x, w, b, rm, rv):
                            rm, rv = rm.clone(), rv.clone()
                            y = op(x, rm, rv, w, b, training=training, momentum=0.1, eps=1e-5)
                            return y, rm, rv
                        return f
                    mf = torch.channels_last if layout == "channels_last" else None
                    return compare_op(run(cn), run(tf), [x, w, b, rm, rv], backend, grad_idx=(0, 1, 2), memory_format=mf)
                out.append(("batch_norm", name, False, fn))
    return out


def pool_cases():
    from cnnext.functional import adaptive_avg_pool2d, avg_pool2d, max_pool2d
    cfg = [  # (op name, cn, torch, kwargs, shape, nan)
        ("max_pool2d", "k3s2", max_pool2d, F.max_pool2d, dict(kernel_size=3, stride=2), (2, 3, 11, 10), False),
        ("max_pool2d", "k3s2p1_ceil", max_pool2d, F.max_pool2d, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
         (2, 3, 10, 9), False),
        ("max_pool2d", "k2_ceil_dil2", max_pool2d, F.max_pool2d, dict(kernel_size=2, stride=2, dilation=2,
                                                                       ceil_mode=True), (1, 4, 9, 8), False),
        ("max_pool2d", "indices", max_pool2d, F.max_pool2d, dict(kernel_size=3, stride=2, return_indices=True),
         (2, 2, 9, 9), False),
        ("max_pool2d", "nan", max_pool2d, F.max_pool2d, dict(kernel_size=3, stride=2, padding=1), (2, 3, 9, 9), True),
        ("avg_pool2d", "k3s2p1_ceil", avg_pool2d, F.avg_pool2d, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
         (2, 3, 10, 9), False),
        ("avg_pool2d", "exclude_pad", avg_pool2d, F.avg_pool2d, dict(kernel_size=3, stride=1, padding=1,
                                                                     count_include_pad=False), (2, 3, 7, 6), False),
        ("avg_pool2d", "divisor", avg_pool2d, F.avg_pool2d, dict(kernel_size=2, divisor_override=3), (1, 2, 8, 8), False),
        ("avg_pool2d", "nan", avg_pool2d, F.avg_pool2d, dict(kernel_size=2, stride=2, ceil_mode=True), (2, 3, 9, 9), True),
        ("adaptive_avg_pool2d", "global", adaptive_avg_pool2d, F.adaptive_avg_pool2d, dict(output_size=1),
         (3, 5, 7, 6), False),
        ("adaptive_avg_pool2d", "5x3", adaptive_avg_pool2d, F.adaptive_avg_pool2d, dict(output_size=(5, 3)),
         (2, 3, 11, 7), False),
        ("adaptive_avg_pool2d", "nan", adaptive_avg_pool2d, F.adaptive_avg_pool2d, dict(output_size=(2, 2)),
         (2, 3, 5, 5), True),
    ]
    out = []
    for op, name, cn, tf, kw, shape, nan in cfg:
        def fn(backend, dtype, cn=cn, tf=tf, kw=kw, shape=shape, nan=nan, name=name):
            x = _randn(shape, dtype, sum(map(ord, name)))
            if nan:
                x.view(-1)[:: 7] = float("nan")
            return compare_op(lambda x: cn(x, **kw), lambda x: tf(x, **kw), [x], backend,
                              grad_idx=() if nan else (0,))
        out.append((op, name, False, fn))
    return out


def cat_cases():
    from cnnext.functional import cat
    out = []
    # inner sizes that give every copy width (1, 2, 4 elements, and odd ones), offset slices, > 64 inputs
    for inner in (1, 2, 3, 4, 5, 8, 16, 17):
        def fn(backend, dtype, inner=inner):
            ts = [_randn((3, c, inner), dtype, 10 * inner + c) for c in (1, 2, 5)]
            return compare_op(lambda *t: cat(list(t), dim=1), lambda *t: torch.cat(list(t), dim=1), ts, backend,
                              grad_idx=(0, 1, 2))
        out.append(("cat", f"inner{inner}", False, fn))

    def offset(backend, dtype):  # views that start one element in: bases off every vector alignment
        def f(*t):
            return cat([u[1:] for u in t], dim=0)

        def g(*t):
            return torch.cat([u[1:] for u in t], dim=0)
        ts = [_randn((n,), dtype, n) for n in (13, 26, 9)]
        return compare_op(f, g, ts, backend, grad_idx=(0, 1, 2))
    out.append(("cat", "offset_slices", False, offset))

    def many(backend, dtype):
        ts = [_randn((2, 1 + i % 3, 3), dtype, i) for i in range(70)]
        return compare_op(lambda *t: cat(list(t), dim=1), lambda *t: torch.cat(list(t), dim=1), ts, backend,
                          grad_idx=tuple(range(70)))
    out.append(("cat", "70_inputs", False, many))

    def dim_last(backend, dtype):
        ts = [_randn((2, 3, w), dtype, w) for w in (1, 7, 4)]
        return compare_op(lambda *t: cat(list(t), dim=-1), lambda *t: torch.cat(list(t), dim=-1), ts, backend,
                          grad_idx=(0, 1, 2))
    out.append(("cat", "dim_last", False, dim_last))
    return out


def corr2d_cases():
    from cnnext.functional import corr2d

    def fn(backend, dtype):
        x, k = _randn((2, 3, 9, 11), dtype, 1), _randn((3, 4), dtype, 2)
        return compare_op(corr2d, lambda x, k: F.conv2d(x.reshape(-1, 1, 9, 11), k[None, None]).reshape(2, 3, 7, 8),
                          [x, k], backend, grad_idx=(0, 1))
    return [("corr2d", "3x4", False, fn)]


def all_cases():
    return conv_cases() + bn_cases() + pool_cases() + cat_cases() + corr2d_cases()


def tf32_check(backend):
    """conv2d with allow_tf32=True (the default) goes through the TF32 tensor cores: its error against
    float64 is that of TF32 (above 1e-5, below 1e-2); with allow_tf32=False it is FP32's (<= 1e-5)."""
    from cnnext.functional import conv2d
    dev = backend_device(backend)
    x, w = _randn((2, 32, 12, 12), torch.float32, 5).to(dev), _randn((48, 32, 3, 3), torch.float32, 6).to(dev)
    ref = F.conv2d(x.double().cpu(), w.double().cpu(), padding=1)
    out = {}
    for on in (True, False):
        with tf32(on), backend_context(backend):
            out[f"err_tf32_{'on' if on else 'off'}"] = rel_err(conv2d(x, w, padding=1), ref)
    out["ok"] = 1e-5 < out["err_tf32_on"] <= 1e-2 and out["err_tf32_off"] <= 1e-5
    return out


def half_check(backend, dtype):
    """conv2d in float16 / bfloat16 on the tensor cores (WMMA m16n16k16, float sums): output and the three
    gradients within one rounding to dtype (2^-8 bfloat16, 2^-10 float16, of the largest magnitude) of
    torch's float64 result on the same 16-bit values, on a plain, a strided-phase, a 1x1 and a split-K shape."""
    from cnnext.functional import conv2d
    dev = backend_device(backend)
    bound = 2.0 ** -8 if dtype == torch.bfloat16 else 2.0 ** -10
    out = {"tol": bound}
    for name, xs, ws, kw in [("3x3", (2, 24, 11, 10), (70, 24, 3, 3), dict(padding=1)),
                             ("s2_phases", (2, 8, 14, 13), (12, 4, 3, 4), dict(stride=(3, 2), padding=(1, 2), groups=2)),
                             ("1x1", (2, 40, 9, 9), (66, 40, 1, 1), {}),
                             ("splitk", (8, 3, 30, 29), (5, 3, 3, 3), dict(padding=1))]:
        s = sum(map(ord, name))
        x, w, b = (_randn(sh, torch.float32, s + i).to(dtype) for i, sh in enumerate((xs, ws, ws[:1])))
        gy_shape = F.conv2d(x.float(), w.float(), None, **kw).shape
        gy = _randn(gy_shape, torch.float32, s + 3).to(dtype)
        xd, wd, bd = (t.double().requires_grad_() for t in (x, w, b))
        yd = F.conv2d(xd, wd, bd, **kw)
        ref = [yd.detach(), *torch.autograd.grad(yd, [xd, wd, bd], gy.double())]
        xh, wh, bh = (t.to(dev).requires_grad_() for t in (x, w, b))
        with backend_context(backend):
            y = conv2d(xh, wh, bh, **kw)
            got = [y.detach(), *torch.autograd.grad(y, [xh, wh, bh], gy.to(dev))]
        out[f"err_{name}"] = max(rel_err(a.double().cpu(), e) for a, e in zip(got, ref))
        out.setdefault("dtypes_ok", True)
        out["dtypes_ok"] = out["dtypes_ok"] and all(a.dtype == dtype for a in got)
    out["ok"] = out["dtypes_ok"] and all(v <= bound for k, v in out.items() if k.startswith("err_"))
    return out


def correctness(res, backend, only=None, include_heavy=True, dtypes=(torch.float32, torch.float64)):
    for op, name, heavy, fn in all_cases():
        if (only and op not in only) or (heavy and not include_heavy):
            continue
        for dt in dtypes:
            res.run("correctness", f"{op}/{name}/{str(dt)[6:]}", lambda fn=fn, dt=dt: fn(backend, dt))
    if not only or "conv2d" in only:
        res.run("correctness", "conv2d/tf32_path", lambda: tf32_check(backend))
        for dt in (torch.bfloat16, torch.float16):
            res.run("correctness", f"conv2d/half_path/{str(dt)[6:]}", lambda dt=dt: half_check(backend, dt))


# ---------------------------------------------------------------- more checks
def gradchecks(res, backend):
    from cnnext import functional as C
    dev = backend_device(backend)
    d = torch.float64

    def t(*shape, seed=0):
        return _randn(shape, d, seed).to(dev).requires_grad_()
    cases = {
        "conv2d": (lambda x, w, b: C.conv2d(x, w, b, stride=(2, 1), padding=1, dilation=(1, 2), groups=2),
                   [t(1, 4, 5, 4), t(4, 2, 3, 2, seed=1), t(4, seed=2)]),
        "batch_norm_train": (lambda x, w, b: C.batch_norm(x, None, None, w, b, training=True),
                             [t(3, 2, 2, 3), t(2, seed=1), t(2, seed=2)]),
        "batch_norm_relu_train": (lambda x, w, b: C.batch_norm_relu(x, None, None, w, b, training=True),
                                  [t(3, 2, 2, 3), t(2, seed=1), t(2, seed=2)]),
        "max_pool2d": (lambda x: C.max_pool2d(x, 2, 1, ceil_mode=True), [t(1, 2, 4, 5)]),
        "avg_pool2d": (lambda x: C.avg_pool2d(x, 3, 2, 1, ceil_mode=True), [t(1, 2, 5, 4)]),
        "adaptive_avg_pool2d": (lambda x: C.adaptive_avg_pool2d(x, (3, 2)), [t(1, 2, 5, 4)]),
        "cat": (lambda a, b: C.cat([a, b], dim=1), [t(2, 1, 3), t(2, 2, 3, seed=1)]),
        "corr2d": (lambda x, k: C.corr2d(x, k), [t(2, 5, 4), t(2, 3, seed=1)]),
    }
    for name, (fn, args) in cases.items():
        def run(fn=fn, args=args):
            with backend_context(backend):
                return {"ok": torch.autograd.gradcheck(fn, args, raise_exception=False)}
        res.run("gradcheck", name, run)


def _small_net(dev):
    import cnnext.nn as cnn
    torch.manual_seed(0)
    return torch.nn.Sequential(
        cnn.Conv2d(3, 16, 3, padding=1), cnn.BatchNorm2d(16), torch.nn.ReLU(), cnn.MaxPool2d(2),
        cnn.Conv2d(16, 32, 3, stride=2, padding=1), cnn.BatchNorm2d(32), torch.nn.ReLU(),
        cnn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10)).to(dev)


def _step(net, x):
    net.zero_grad(set_to_none=False)
    loss = net(x).square().mean()
    loss.backward()
    return [loss.detach().clone()] + [p.grad.detach().clone() for p in net.parameters()]


def determinism(res, backend):
    from cnnext import functional as C
    dev = backend_device(backend)

    def conv_twice():  # split-K grad weight and the BN reductions included
        x = _randn((8, 16, 20, 20), torch.float32, 1).to(dev).requires_grad_()
        w = _randn((24, 16, 3, 3), torch.float32, 2).to(dev).requires_grad_()
        outs = []
        for _ in range(2):
            with backend_context(backend):
                y = C.batch_norm_relu(C.conv2d(x, w, padding=1), None, None, training=True)
                g = torch.autograd.grad(y, [x, w], torch.ones_like(y))
            outs.append([y.detach(), *g])
        return {"ok": all(torch.equal(a, b) for a, b in zip(*outs))}
    res.run("determinism", "conv2d+batch_norm_relu fwd+bwd", conv_twice)

    def net_twice():
        x = _randn((4, 3, 16, 16), torch.float32, 3).to(dev)
        with backend_context(backend):
            a = _step(_small_net(dev), x)
            b = _step(_small_net(dev), x)
        return {"ok": all(torch.equal(u, v) for u, v in zip(a, b))}
    res.run("determinism", "small net step", net_twice)


def cuda_graph(res):
    def run():
        dev = "cuda"
        net = _small_net(dev)
        x = _randn((4, 3, 16, 16), torch.float32, 3).to(dev)
        with tf32(False):
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):  # warm-up on a side stream, as torch's graph recipe does
                for _ in range(2):
                    _step(net, x)
            torch.cuda.current_stream().wait_stream(s)
            state = {k: v.clone() for k, v in net.state_dict().items()}
            static_x = x.clone()
            g = torch.cuda.CUDAGraph()
            net.zero_grad(set_to_none=False)
            with torch.cuda.graph(g):
                loss = net(static_x).square().mean()
                loss.backward()
            net.load_state_dict(state)  # capture ran nothing; BN running stats stay as they were
            net.zero_grad(set_to_none=False)
            g.replay()
            torch.cuda.synchronize()
            got = [loss.detach().clone()] + [p.grad.detach().clone() for p in net.parameters()]
            net.load_state_dict(state)
            ref = _step(net, x)
        err = max(rel_err(a, b) for a, b in zip(got, ref))
        return {"ok": err <= 1e-5, "err": err}
    res.run("cuda_graph", "capture forward+backward, replay vs eager", run)


def side_stream(res):
    def run():
        from cnnext import functional as C
        x = _randn((8, 16, 20, 20), torch.float32, 1).cuda()
        w = _randn((24, 16, 3, 3), torch.float32, 2).cuda()
        with tf32(False):
            ref = C.max_pool2d(C.batch_norm_relu(C.conv2d(x, w, padding=1), None, None, training=True), 2)
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                xs = x * 1.0  # produced on the side stream
                torch.cuda._sleep(10_000_000)  # a busy side stream: the ops must queue behind it
                got = C.max_pool2d(C.batch_norm_relu(C.conv2d(xs, w, padding=1), None, None, training=True), 2)
            torch.cuda.current_stream().wait_stream(s)
            torch.cuda.synchronize()
        return {"ok": torch.equal(got, ref)}
    res.run("side_stream", "conv2d+bn_relu+max_pool2d on a busy side stream", run)


def large_checks(res):
    """Sampled checks on inputs of more than 2^31 elements (the kernels' 64-bit paths)."""
    from cnnext import functional as C
    big = 2 ** 31 + 2 ** 20
    rng = random.Random(0)

    def conv():  # image over 2^31 elements: the direct fallback
        H = W = 46400  # 2.15e9 > 2^31
        x = torch.empty(1, 1, H, W, device="cuda").uniform_(-1, 1)
        w = torch.randn(2, 1, 3, 3, device="cuda")
        with tf32(False):
            y = C.conv2d(x, w, padding=1)
        errs = []
        for _ in range(64):
            k, p, q = rng.randrange(2), rng.randrange(H), rng.randrange(W)
            patch = F.pad(x[0, 0, max(p - 1, 0):p + 2, max(q - 1, 0):q + 2].double(),
                          (1 if q == 0 else 0, 1 if q == W - 1 else 0, 1 if p == 0 else 0, 1 if p == H - 1 else 0))
            e = (patch * w[k, 0].double()).sum()
            errs.append(abs(y[0, k, p, q].double() - e).item() / 3.0)
        del x, y
        return {"ok": max(errs) <= 1e-5, "err": max(errs)}

    def pools_bn_cat():
        x = torch.empty(1, 1, 2, big // 2, device="cuda").uniform_(-1, 1)  # 1 plane, W > 2^30
        errs = {}
        y = C.max_pool2d(x, (2, 2))
        idx = [rng.randrange(y.shape[-1]) for _ in range(64)]
        errs["max_pool2d"] = max(
            abs(y[0, 0, 0, j].item() - x[0, 0, :, 2 * j:2 * j + 2].max().item()) for j in idx)
        y = C.avg_pool2d(x, (2, 2))
        errs["avg_pool2d"] = max(abs(y[0, 0, 0, j].item() - x[0, 0, :, 2 * j:2 * j + 2].double().mean().item())
                                 for j in idx)
        del y
        xb = x.view(1, 1, -1, 1)
        rm, rv = torch.tensor([0.25], device="cuda"), torch.tensor([2.0], device="cuda")
        y = C.batch_norm(xb, rm, rv, training=False)
        flat_idx = [rng.randrange(xb.numel()) for _ in range(64)]
        errs["batch_norm_eval"] = max(abs(y.view(-1)[i].double() - (xb.view(-1)[i].double() - 0.25) /
                                          math.sqrt(2.0 + 1e-5)).item() for i in flat_idx)
        del y
        a = x.view(-1)[: big // 2]
        b = x.view(-1)[big // 2:]
        y = C.cat([a, b, a[:5]], dim=0)  # output over 2^31 elements
        errs["cat"] = max(abs(y[i].item() - (x.view(-1)[i].item() if i < big else a[i - big].item()))
                          for i in flat_idx + [big - 1, big, big + 4])
        out = {k: v for k, v in errs.items()}
        out["ok"] = all(v <= 1e-5 for v in errs.values())
        return out

    res.run("large", "conv2d over 2^31 (direct fallback), 64 samples", conv)
    torch.cuda.empty_cache()
    res.run("large", "max/avg pool, batch_norm eval, cat over 2^31, 64 samples", pools_bn_cat)
    torch.cuda.empty_cache()


def tiny_all_ops():
    """Every op, forward and backward, on tiny CUDA tensors (what the sanitizers run)."""
    from cnnext import functional as C
    d = "cuda"
    x = torch.randn(2, 4, 9, 8, device=d, requires_grad=True)
    w = torch.randn(6, 2, 3, 3, device=d, requires_grad=True)
    with tf32(False):
        y = C.conv2d(x, w, None, padding=1, groups=2)
    with tf32(True):
        y = y + C.conv2d(x, w, None, padding=1, groups=2)
    y = C.batch_norm_relu(y, None, None, training=True)
    y = C.batch_norm(y, None, None, training=True)
    y = C.max_pool2d(y, 3, 2, 1, ceil_mode=True) + C.avg_pool2d(y, 3, 2, 1, ceil_mode=True)
    y = C.cat([y, C.adaptive_avg_pool2d(y, (5, 4))], dim=1)
    y = C.corr2d(y, torch.randn(2, 2, device=d, requires_grad=True))
    y.sum().backward()
    torch.cuda.synchronize()


def sanitizers(res, timeout=100):
    exe = shutil.which("compute-sanitizer")
    if exe is None:
        res.add("sanitizers", "compute-sanitizer", True, skipped="not on PATH")
        return
    for tool in ("memcheck", "racecheck", "synccheck"):
        def run(tool=tool):
            cmd = [exe, "--tool", tool, "--error-exitcode", "99", sys.executable, "-m", "bench.gpu_check",
                   "--tiny-child"]
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            tail = (p.stdout + p.stderr)[-1500:]
            return {"ok": p.returncode == 0 and "ERROR SUMMARY: 0 errors" in p.stdout + p.stderr, "rc": p.returncode,
                    "tail": tail}
        res.run("sanitizers", tool, run)


# ---------------------------------------------------------------- timing
FP32_LANES = {(7, 0): 64, (7, 5): 64, (8, 0): 64, (8, 6): 128, (8, 7): 128, (8, 9): 128, (9, 0): 128}
# dense TF32 tensor-core FLOP per clock per SM (A100: 156 TFLOP/s, H100 SXM: 495, consumer Ampere/Ada: 1/4 of A100)
TF32_FLOP_PER_CLK = {(8, 0): 1024, (8, 6): 256, (8, 7): 512, (8, 9): 256, (9, 0): 2048}


def device_peaks():
    p = torch.cuda.get_device_properties(0)
    cc = (p.major, p.minor)
    clk = p.clock_rate * 1e3  # Hz (the boost clock)
    fp32 = p.multi_processor_count * clk * 2 * FP32_LANES.get(cc, 128)
    tf = p.multi_processor_count * clk * TF32_FLOP_PER_CLK.get(cc, 0)
    bw = 2 * p.memory_clock_rate * 1e3 * p.memory_bus_width / 8  # DDR: two transfers per clock
    return {"fp32_tflops": fp32 / 1e12, "tf32_tflops": tf / 1e12 or None, "hbm_gbs": bw / 1e9,
            "sm_count": p.multi_processor_count, "clock_mhz": p.clock_rate / 1e3}


def cuda_time(fn, warmup=3, reps=10):
    """Median ms per call over `reps` CUDA-event timed calls."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


def conv_timing(res, peaks, batch=128, quick=False):
    from bench import bench_conv2d
    ops = torch.ops.cnnext
    rows = []
    shapes = bench_conv2d.shapes()
    if quick:
        shapes = shapes[::8]
    prev_bench = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        for net, ci, co, k, st, pad, hw, first in shapes:
            x = torch.randn(batch, ci, hw, hw, device="cuda")
            w = torch.randn(co, ci, k, k, device="cuda") / math.sqrt(ci * k * k)
            P = (hw + 2 * pad - k) // st + 1
            gy = torch.randn(batch, co, P, P, device="cuda")
            flops = 2 * batch * co * P * P * ci * k * k
            conv = (st, pad, 1, 1)
            passes = {
                "forward": (lambda: ops.conv2d_forward(x, w, None, [st] * 2, [pad] * 2, [1, 1], 1),
                            lambda: F.conv2d(x, w, None, st, pad)),
                "grad_input": (lambda: ops.conv2d_backward_input(gy, w, list(x.shape), [st] * 2, [pad] * 2, [1, 1], 1),
                               lambda: torch.ops.aten.convolution_backward(gy, x, w, None, [st] * 2, [pad] * 2,
                                                                           [1, 1], False, [0, 0], 1,
                                                                           [True, False, False])),
                "grad_weight": (lambda: ops.conv2d_backward_weight(gy, x, list(w.shape), [st] * 2, [pad] * 2, [1, 1], 1,
                                                                   False),
                                lambda: torch.ops.aten.convolution_backward(gy, x, w, None, [st] * 2, [pad] * 2,
                                                                            [1, 1], False, [0, 0], 1,
                                                                            [False, True, False])),
            }
            del conv
            xh, wh, gyh = x.bfloat16(), w.bfloat16(), gy.bfloat16()
            bf16 = {  # the same passes on bfloat16 copies: cnnext's WMMA m16n16k16 against cuDNN's bfloat16
                "forward": (lambda: ops.conv2d_forward(xh, wh, None, [st] * 2, [pad] * 2, [1, 1], 1),
                            lambda: F.conv2d(xh, wh, None, st, pad)),
                "grad_input": (lambda: ops.conv2d_backward_input(gyh, wh, list(x.shape), [st] * 2, [pad] * 2, [1, 1], 1),
                               lambda: torch.ops.aten.convolution_backward(gyh, xh, wh, None, [st] * 2, [pad] * 2,
                                                                           [1, 1], False, [0, 0], 1,
                                                                           [True, False, False])),
                "grad_weight": (lambda: ops.conv2d_backward_weight(gyh, xh, list(w.shape), [st] * 2, [pad] * 2, [1, 1],
                                                                   1, False),
                                lambda: torch.ops.aten.convolution_backward(gyh, xh, wh, None, [st] * 2, [pad] * 2,
                                                                            [1, 1], False, [0, 0], 1,
                                                                            [False, True, False])),
            }
            for pname, (cn, tf) in passes.items():
                if first and pname == "grad_input":
                    continue
                row = {"net": net, "shape": f"{ci}->{co} {k}x{k} s{st} p{pad} @{hw}", "pass": pname, "gflop": flops / 1e9}
                for label, on in (("tf32", True), ("fp32", False)):
                    with tf32(on):
                        row[f"cnnext_{label}_ms"] = cuda_time(cn)
                        row[f"torch_{label}_ms"] = cuda_time(tf)
                row["cnnext_bf16_ms"] = cuda_time(bf16[pname][0])
                row["torch_bf16_ms"] = cuda_time(bf16[pname][1])
                for key in [k_ for k_ in row if k_.endswith("_ms")]:
                    row[key.replace("_ms", "_tflops")] = flops / (row[key] * 1e-3) / 1e12
                row["pct_fp32_peak"] = 100 * row["cnnext_fp32_tflops"] / peaks["fp32_tflops"]
                if peaks["tf32_tflops"]:
                    row["pct_tf32_peak"] = 100 * row["cnnext_tf32_tflops"] / peaks["tf32_tflops"]
                row["vs_cudnn_tf32"] = row["torch_tf32_ms"] / row["cnnext_tf32_ms"]
                row["vs_cudnn_fp32"] = row["torch_fp32_ms"] / row["cnnext_fp32_ms"]
                row["vs_cudnn_bf16"] = row["torch_bf16_ms"] / row["cnnext_bf16_ms"]
                rows.append(row)
                print(f"  {net:10s} {row['shape']:28s} {pname:11s} cnnext tf32 {row['cnnext_tf32_tflops']:6.1f} "
                      f"fp32 {row['cnnext_fp32_tflops']:6.1f} | cudnn tf32 {row['torch_tf32_tflops']:6.1f} fp32 "
                      f"{row['torch_fp32_tflops']:6.1f} | bf16 cnnext {row['cnnext_bf16_tflops']:6.1f} cudnn "
                      f"{row['torch_bf16_tflops']:6.1f} TFLOP/s", flush=True)
            del x, w, gy, xh, wh, gyh
    finally:
        torch.backends.cudnn.benchmark = prev_bench
    fwd = [r["vs_cudnn_tf32"] for r in rows if r["pass"] == "forward"]
    gm = math.exp(sum(map(math.log, fwd)) / len(fwd))
    res.timing["conv2d"] = rows
    res.add("timing", "conv2d forward vs cuDNN TF32 (geomean speed ratio, bar 0.5)", gm >= 0.5, ratio=gm)


def memory_timing(res, peaks):
    from cnnext import functional as C
    rows = []
    N = 128
    x = torch.randn(N, 64, 56, 56, device="cuda")
    g = torch.randn_like(x)
    w, b = torch.randn(64, device="cuda"), torch.randn(64, device="cuda")
    rm, rv = torch.zeros(64, device="cuda"), torch.ones(64, device="cuda")
    nb = x.numel() * 4
    copy_ms = cuda_time(lambda: g.copy_(x))
    copy_gbs = 2 * nb / (copy_ms * 1e-3) / 1e9
    y_pool = torch.empty(N, 64, 28, 28, device="cuda")
    cases = [  # (name, cnnext, torch, bytes moved)
        ("batch_norm eval", lambda: C.batch_norm(x, rm, rv, w, b), lambda: F.batch_norm(x, rm, rv, w, b), 2 * nb),
        ("batch_norm train fwd", lambda: C.batch_norm(x, None, None, w, b, training=True),
         lambda: F.batch_norm(x, None, None, w, b, training=True), 3 * nb),
        ("batch_norm_relu train fwd", lambda: C.batch_norm_relu(x, None, None, w, b, training=True),
         lambda: F.relu(F.batch_norm(x, None, None, w, b, training=True)), 3 * nb),
        ("max_pool2d 3x3 s2 p1", lambda: C.max_pool2d(x, 3, 2, 1), lambda: F.max_pool2d(x, 3, 2, 1),
         nb + y_pool.numel() * 4),
        ("avg_pool2d 2x2", lambda: C.avg_pool2d(x, 2), lambda: F.avg_pool2d(x, 2), nb + y_pool.numel() * 4),
        ("adaptive_avg_pool2d global", lambda: C.adaptive_avg_pool2d(x, 1), lambda: F.adaptive_avg_pool2d(x, 1), nb),
        ("cat dim 1", lambda: C.cat([x, g], 1), lambda: torch.cat([x, g], 1), 4 * nb),
    ]
    for name, cn, tf, nbytes in cases:
        t_cn, t_tf = cuda_time(cn), cuda_time(tf)
        row = {"op": name, "cnnext_ms": t_cn, "torch_ms": t_tf, "cnnext_gbs": nbytes / (t_cn * 1e-3) / 1e9,
               "torch_gbs": nbytes / (t_tf * 1e-3) / 1e9}
        row["pct_hbm"] = 100 * row["cnnext_gbs"] / peaks["hbm_gbs"]
        row["pct_copy"] = 100 * row["cnnext_gbs"] / copy_gbs
        rows.append(row)
        print(f"  {name:28s} cnnext {row['cnnext_gbs']:7.0f} GB/s ({row['pct_hbm']:4.0f}% of HBM) torch "
              f"{row['torch_gbs']:7.0f} GB/s", flush=True)
    res.timing["memory_bound"] = {"copy_gbs": copy_gbs, "rows": rows}
    low = [r["op"] for r in rows if r["pct_hbm"] < 80]
    res.add("timing", "memory-bound ops at >= 80% of HBM bandwidth (bar)", not low, below=",".join(low) or "-")


def resnet_timing(res, batch=256):
    import cnnext.models as M
    rows = {}
    x = torch.randn(batch, 1, 96, 96, device="cuda")
    t = torch.randint(0, 10, (batch,), device="cuda")
    for layers in ("cnnext", "torch"):
        torch.manual_seed(0)
        net = M.resnet18(layers=layers).cuda()
        opt = torch.optim.SGD(net.parameters(), lr=0.01)

        def step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), t).backward()
            opt.step()
        for label, on in (("tf32", True), ("fp32", False)):
            with tf32(on):
                rows[f"{layers}_{label}_ms"] = cuda_time(step, warmup=3, reps=5)
        del net, opt
    rows["ratio_tf32"] = rows["torch_tf32_ms"] / rows["cnnext_tf32_ms"]
    rows["ratio_fp32"] = rows["torch_fp32_ms"] / rows["cnnext_fp32_ms"]
    res.timing["resnet18_step"] = rows
    res.add("timing", "ResNet-18 step, batch 256 @96 (torch / cnnext)", True, **{k: v for k, v in rows.items()})


# ---------------------------------------------------------------- main
def environment():
    import cnnext
    p = torch.cuda.get_device_properties(0)
    return {"device": p.name, "compute_capability": f"{p.major}.{p.minor}", "sm_count": p.multi_processor_count,
            "memory_gib": p.total_memory / 2 ** 30, "torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "cnnext": cnnext.info(), "peaks": device_peaks()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default="gpu_check.json", help="where the results go (default gpu_check.json)")
    ap.add_argument("--backend", choices=["cuda", "emu"], default="cuda",
                    help="emu: the correctness and determinism checks (light cases) on the CPU emulator")
    ap.add_argument("--only", default="", help="comma-separated ops for the correctness section")
    ap.add_argument("--skip-timing", action="store_true")
    ap.add_argument("--skip-sanitizers", action="store_true")
    ap.add_argument("--skip-large", action="store_true", help="skip the > 2^31-element checks")
    ap.add_argument("--quick", action="store_true", help="every 8th conv shape in the timing")
    ap.add_argument("--tiny-child", action="store_true", help=argparse.SUPPRESS)  # what the sanitizers run
    args = ap.parse_args(argv)

    if args.backend == "cuda" and not torch.cuda.is_available():
        print("no CUDA device")
        with open(args.json, "w") as f:
            json.dump({"error": "no CUDA device", "torch": torch.__version__}, f, indent=1)
        return EXIT_NO_DEVICE
    import cnnext
    if args.tiny_child:
        tiny_all_ops()
        return EXIT_OK
    t0 = time.time()
    res = Results()
    out = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "backend": args.backend}
    if args.backend == "cuda":
        if not cnnext.info()["cuda_kernels_compiled"]:
            print("cnnext was built without its CUDA kernels (CNNEXT_CUDA=0 or no nvcc): nothing to check")
            with open(args.json, "w") as f:
                json.dump({"error": "cnnext built without CUDA kernels"}, f, indent=1)
            return EXIT_FAIL
        out["environment"] = environment()
        e = out["environment"]
        print(f"device {e['device']} (sm_{e['compute_capability'].replace('.', '')}, {e['sm_count']} SMs), "
              f"torch {e['torch']} CUDA {e['torch_cuda']} cuDNN {e['cudnn']}")
        print(json.dumps(e["cnnext"], indent=1))
    else:
        out["environment"] = {"cnnext": cnnext.info()}
    only = set(filter(None, args.only.split(",")))
    correctness(res, args.backend, only=only, include_heavy=args.backend == "cuda")
    if not only:
        gradchecks(res, args.backend)
        determinism(res, args.backend)
    if args.backend == "cuda" and not only:
        cuda_graph(res)
        side_stream(res)
        if not args.skip_large:
            large_checks(res)
        if not args.skip_sanitizers:
            sanitizers(res)
        if not args.skip_timing:
            peaks = out["environment"]["peaks"]
            res.run("timing", "conv2d", lambda: conv_timing(res, peaks, quick=args.quick))
            res.run("timing", "memory-bound", lambda: memory_timing(res, peaks))
            res.run("timing", "resnet18", lambda: resnet_timing(res))
    out["seconds"] = time.time() - t0
    out["checks"] = res.checks
    out["timing"] = res.timing
    out["failed"] = [f"{c['section']}/{c['name']}" for c in res.failed]
    with open(args.json, "w") as f:
        json.dump(out, f, indent=1, default=str)
    n, nf = len(res.checks), len(res.failed)
    print(f"\n{n - nf}/{n} checks passed in {out['seconds']:.0f} s; results in {args.json}")
    for c in out["failed"]:
        print(f"  FAILED {c}")
    return EXIT_FAIL if nf else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
