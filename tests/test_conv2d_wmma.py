"""conv2d's tensor-core kernel (csrc/cuda/conv2d_wmma.cu conv2d_igemm_wmma: fp32 accumulators, a 3-stage
pipeline in shared memory), run by the emulator (csrc/cuda/tensor_core.h): its TF32 path (WMMA tf32
m16n16k8, cp.async) and the switch it follows, torch.backends.cudnn.allow_tf32, as cuDNN does (torch's
default True); and its float16 / bfloat16 path (WMMA m16n16k16 on the stored 16-bit operands).

  * allow_tf32=True: forward, grad input and grad weight show TF32 rounding -- relative error against
    float64 between 1e-5 and 1e-2 -- and match, to FP32 accumulation error, float64 convs of the operands
    rounded to TF32 as cvt.rna.tf32.f32 rounds them (so both operands of every pass are rounded, and
    nothing else is lost);
  * allow_tf32=False: the exact FP32 SIMT kernels (<= 1e-5); float64 never uses tensor cores;
  * the CPU kernels ignore the switch;
  * float16 / bfloat16: output, grad input, grad weight and grad bias within one rounding to the dtype of
    torch's float64 result on the same 16-bit values (2^-8 of the largest magnitude for bfloat16, 2^-10 for
    float16: the products are exact in float, the sums float, the one rounding is the output's), whatever
    allow_tf32 says; also on the 64-bit direct fallback, and with a GPU-sized grid, deterministically.
(The other conv2d tests run with the switch off: tests/conftest.py.)"""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from cnnext.functional import conv2d
from conftest import assert_rel_close, emu_grid_cap, on


def tf32_round(t):
    """cvt.rna.tf32.f32 on float32 t: round half away from zero to a 10-bit mantissa."""
    u = t.contiguous().view(torch.int32)
    return ((u + 0x1000) & -0x2000).view(torch.float32)


def rel(a, e):
    a, e = a.detach().double(), e.detach().double()
    return ((a - e).abs().max() / e.abs().max()).item()


@pytest.fixture
def allow_tf32():
    prev = torch.backends.cudnn.allow_tf32

    def set_(on_):
        torch.backends.cudnn.allow_tf32 = on_
    yield set_
    torch.backends.cudnn.allow_tf32 = prev


# (name, (N, C, H, W), (K, kh, kw), conv kwargs): tiles partial in both GEMM dims, 1x1 (the plain-GEMM
# loads), strides (grad input's gather), dilation, groups, a long grad-weight reduction (split-K)
CASES = [
    ("3x3_p1", (2, 24, 11, 10), (70, 3, 3), dict(padding=1)),
    ("1x1", (2, 40, 9, 9), (66, 1, 1), dict()),
    ("5x5_s2_p2", (1, 6, 15, 13), (9, 5, 5), dict(stride=2, padding=2)),
    ("dil2_asym", (1, 5, 12, 13), (7, 3, 2), dict(stride=(2, 1), padding=(1, 2), dilation=(2, 1))),
    ("groups3", (2, 9, 8, 7), (12, 3, 3), dict(padding=1, groups=3)),
    ("splitk", (4, 3, 30, 29), (5, 3, 3), dict(padding=1)),
    # strided grad input by phases (kBwdInS): a phase without taps (gcd(stride, dilation) = 2), groups
    ("s2_dil2_phases", (1, 6, 17, 15), (10, 3, 3), dict(stride=2, padding=2, dilation=2)),
    ("s3x2_groups2_phases", (2, 8, 14, 13), (12, 3, 4), dict(stride=(3, 2), padding=(1, 2), groups=2)),
]


def _inputs(xs, ws, groups, seed):
    g = torch.Generator().manual_seed(seed)
    K, kh, kw = ws
    x = torch.randn(xs, generator=g)
    w = torch.randn(K, xs[1] // groups, kh, kw, generator=g)
    b = torch.randn(K, generator=g)
    return x, w, b


def _passes(x, w, b, kw):
    """cnnext's output and its three gradients for a fixed grad_output."""
    xl, wl, bl = (t.clone().requires_grad_() for t in (x, w, b))
    y = conv2d(xl, wl, bl, **kw)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(7))
    gx, gw, gb = torch.autograd.grad(y, [xl, wl, bl], gy)
    return y.detach(), gx, gw, gb, gy


def _torch_passes(x, w, b, gy, kw):
    """float64 references: output, grad input, grad weight, grad bias."""
    xl, wl, bl = (t.double().requires_grad_() for t in (x, w, b))
    y = F.conv2d(xl, wl, bl, **kw)
    return (y.detach(), *torch.autograd.grad(y, [xl, wl, bl], gy.double()))


@pytest.mark.parametrize("name,xs,ws,kw", CASES, ids=[c[0] for c in CASES])
def test_tf32_rounding_on_and_exact_off(name, xs, ws, kw, allow_tf32):
    x, w, b = _inputs(xs, ws, kw.get("groups", 1), sum(map(ord, name)))
    allow_tf32(True)
    with on("emu"):
        y, gx, gw, gb, gy = _passes(x, w, b, kw)
    ref = _torch_passes(x, w, b, gy, kw)
    for what, a, e in zip(["output", "grad input", "grad weight"], (y, gx, gw), ref):
        err = rel(a, e)
        assert 1e-5 < err <= 1e-2, f"{what}: TF32 relative error {err:.3g} not in (1e-5, 1e-2]"
    assert_rel_close(gb, ref[3].float(), what="grad bias (a plain sum: no tensor cores)")
    # the rounding is exactly the tensor core's: float64 convs of the TF32-rounded operands, to FP32 error
    xr, wr, gyr = tf32_round(x).double(), tf32_round(w).double(), tf32_round(gy).double()
    y_r = F.conv2d(xr, wr, b.double(), **kw)
    gx_r = torch.nn.grad.conv2d_input(x.shape, wr, gyr, **kw)
    gw_r = torch.nn.grad.conv2d_weight(xr, w.shape, gyr, **kw)
    for what, a, e in zip(["output", "grad input", "grad weight"], (y, gx, gw), (y_r, gx_r, gw_r)):
        assert rel(a, e) <= 1e-5, f"{what}: {rel(a, e):.3g} from the TF32-rounded float64 conv"

    allow_tf32(False)
    with on("emu"):
        y, gx, gw, gb, gy = _passes(x, w, b, kw)
    for what, a, e in zip(["output", "grad input", "grad weight", "grad bias"], (y, gx, gw, gb), ref):
        assert_rel_close(a, e.float(), what=f"allow_tf32=False {what}")


def test_double_and_cpu_ignore_the_switch(allow_tf32):
    allow_tf32(True)
    x, w, b = _inputs((2, 8, 9, 9), (16, 3, 3), 1, 0)
    for be in ("emu", "cpu"):
        with on(be):
            assert_rel_close(conv2d(x.double(), w.double(), b.double(), padding=1),
                             F.conv2d(x.double(), w.double(), b.double(), padding=1), what=f"{be} float64")
    with on("cpu"):
        assert_rel_close(conv2d(x, w, b, padding=1), F.conv2d(x.double(), w.double(), b.double(), padding=1).float(),
                         what="cpu float32")


def test_fp32_precision_api(allow_tf32):
    """torch's newer switch for the same thing (cudnn.conv.fp32_precision) is followed too."""
    x, w, b = _inputs((1, 16, 8, 8), (32, 3, 3), 1, 1)
    ref = F.conv2d(x.double(), w.double(), b.double(), padding=1)
    prev = torch.backends.cudnn.conv.fp32_precision
    try:
        for prec, tf in (("tf32", True), ("ieee", False)):
            torch.backends.cudnn.conv.fp32_precision = prec
            with on("emu"):
                err = rel(conv2d(x, w, b, padding=1), ref)
            assert (1e-5 < err <= 1e-2) if tf else err <= 1e-5, (prec, err)
    finally:
        torch.backends.cudnn.conv.fp32_precision = prev


def test_tf32_gpu_sized_grid_and_deterministic(allow_tf32):
    """one block per tile (the GPU's grid, no grid-stride looping), and the same bits twice (the emulator's
    fragment layout differs from launch to launch; a kernel that depended on it would differ)."""
    allow_tf32(True)
    x, w, b = _inputs((2, 16, 20, 19), (80, 3, 3), 1, 3)
    with on("emu"), emu_grid_cap(65535):
        a = _passes(x, w, b, dict(padding=1))
    with on("emu"):
        c = _passes(x, w, b, dict(padding=1))
    for u, v in zip(a, c):
        assert torch.equal(u, v)


def test_default_is_torchs_default():
    """cnnext follows torch's default (allow_tf32 True for cuDNN convs), as cuDNN would: run in a fresh
    process, where no test fixture has touched the switch."""
    code = ("import torch, cnnext, torch.nn.functional as F\n"
            "assert torch.backends.cudnn.allow_tf32\n"
            "g = torch.Generator().manual_seed(0)\n"
            "x, w = torch.randn(1, 16, 8, 8, generator=g), torch.randn(32, 16, 3, 3, generator=g)\n"
            "ref = F.conv2d(x.double(), w.double(), padding=1)\n"
            "with cnnext.emulate_cuda():\n"
            "    y = cnnext.functional.conv2d(x, w, padding=1)\n"
            "print(((y.double() - ref).abs().max() / ref.abs().max()).item())\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert p.returncode == 0, p.stderr
    assert 1e-5 < float(p.stdout.split()[-1]) <= 1e-2
    assert "Warning" not in p.stderr, p.stderr  # reading the switch warns about nothing


# ---- float16 and bfloat16 on the tensor-core kernel ----
HALF_BOUND = {torch.bfloat16: 2.0 ** -8, torch.float16: 2.0 ** -10}


def _half_passes(x, w, b, kw, dtype):
    """cnnext's output and three gradients in dtype, and torch's float64 ones on the same 16-bit values."""
    xh, wh, bh = (t.to(dtype).requires_grad_() for t in (x, w, b))
    y = conv2d(xh, wh, bh, **kw)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(7)).to(dtype)
    ours = (y.detach(), *torch.autograd.grad(y, [xh, wh, bh], gy))
    xd, wd, bd = (t.detach().double().requires_grad_() for t in (xh, wh, bh))
    yd = F.conv2d(xd, wd, bd, **kw)
    ref = (yd.detach(), *torch.autograd.grad(yd, [xd, wd, bd], gy.double()))
    return ours, ref


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("name,xs,ws,kw", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("tf32", [True, False], ids=["tf32_on", "tf32_off"])
def test_half_one_rounding(name, xs, ws, kw, dtype, tf32, allow_tf32):
    allow_tf32(tf32)
    x, w, b = _inputs(xs, ws, kw.get("groups", 1), 11)
    with on("emu"):
        ours, ref = _half_passes(x, w, b, kw, dtype)
    for what, a, e in zip(("output", "grad input", "grad weight", "grad bias"), ours, ref):
        assert a.dtype == dtype, (what, a.dtype)
        assert_rel_close(a.double(), e, HALF_BOUND[dtype], f"{name} {dtype} {what}")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_half_direct_fallback(dtype, monkeypatch):
    """CNNEXT_CONV2D_DIRECT=1: the 64-bit fallback loops (float sums of the 16-bit values), same bound."""
    monkeypatch.setenv("CNNEXT_CONV2D_DIRECT", "1")
    kw = dict(stride=(2, 1), padding=1, groups=2)
    x, w, b = _inputs((2, 6, 9, 8), (8, 3, 3), 2, 5)
    with on("emu"):
        ours, ref = _half_passes(x, w, b, kw, dtype)
    for what, a, e in zip(("output", "grad input", "grad weight", "grad bias"), ours, ref):
        assert_rel_close(a.double(), e, HALF_BOUND[dtype], f"direct {dtype} {what}")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_half_gpu_sized_grid_and_deterministic(dtype):
    x, w, b = _inputs((2, 16, 20, 19), (80, 3, 3), 1, 3)
    with on("emu"), emu_grid_cap(65535):
        a, _ = _half_passes(x, w, b, dict(padding=1), dtype)
    with on("emu"):
        c, _ = _half_passes(x, w, b, dict(padding=1), dtype)
    for u, v in zip(a, c):
        assert torch.equal(u, v)


def test_half_kernels_registered():
    """The emulator (and a CUDA build) runs conv2d's and the pools' own float16 / bfloat16 kernels, not the
    widened path; cnnext.info() says which ops have half kernels on which backend."""
    import cnnext
    info = cnnext.info()
    kernels = info["half_kernels"]
    device_ops = {f"{op}/{dt}" for op in ("conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d")
                  for dt in ("bfloat16", "float16")}
    assert device_ops <= set(kernels["emulator"])
    if info["cuda_kernels_compiled"]:
        assert device_ops <= set(kernels["cuda"])
    assert {"conv2d/bfloat16", "conv2d/float16"} <= set(kernels["cpu"])
