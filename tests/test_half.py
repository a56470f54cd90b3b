"""bfloat16 and float16 through every op, on the CPU kernels and the emulated CUDA kernels; torch.autocast; swap.

Tolerance (issue #13's bar): output and gradients within 2e-2 relative (the largest error over the largest
reference magnitude) of torch's result in the same dtype, and, for bfloat16, of torch's float32 result on
the same (bfloat16-valued) inputs as well. Output and gradient dtypes equal torch's. Every op computes a
half call in float32 and rounds each output once (csrc/ops/dispatch.h), so cnnext's error against the
float32 result is one rounding: <= 2^-8 relative for bfloat16, 2^-11 for float16, of each element.
max_pool2d picks an element: its values and indices equal torch's exactly.
Where torch's own half result is farther than 2e-2 from its float32 result (its bfloat16 batch norm backward
with bfloat16 parameters: 9% on a ReLU case here; its conv bias gradient under autocast: 11%), cnnext is held
to the float32 result instead, at least as close to it as torch is (`_close_torch`).
"""
import contextlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnext
import cnnext.functional as C

from conftest import assert_rel_close, on

HALF = [torch.bfloat16, torch.float16]
TOL = 2e-2


def _close(actual, expected, what):
    assert_rel_close(actual, expected, TOL, what)


def _close_torch(a, b, c, what):
    """a (cnnext) within TOL of b (torch, same dtype); or, where b itself is farther than TOL from the float32
    result c, a no farther from c than b is."""
    if c is None or _err(b, c) <= TOL:
        return _close(a, b, f"{what} vs torch")
    assert _err(a, c) <= _err(b, c), f"{what}: cnnext {_err(a, c):.3g} from float32, torch {_err(b, c):.3g}"


def _err(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


def _check(fn_c, fn_t, inputs, dtype, grads=True, seed=0):
    """fn_c(*inputs) against fn_t(*inputs) in dtype, and (bfloat16) against fn_t on float32 copies; with
    grads, the gradients of every input that requires grad too (gradient dtypes as torch's)."""
    torch.manual_seed(seed)
    y = fn_c(*inputs)
    yt = fn_t(*inputs)
    assert y.dtype == yt.dtype == dtype
    _close(y, yt, "output vs torch")
    wide = [t.detach().float().requires_grad_(t.requires_grad) if isinstance(t, torch.Tensor) and t.is_floating_point()
            else t for t in inputs]
    y32 = fn_t(*wide)
    if dtype == torch.bfloat16:
        _close(y, y32.to(dtype), "output vs torch float32")
    if not grads:
        return
    leaves = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    gy = torch.randn(y.shape).to(dtype)
    g = torch.autograd.grad(y, leaves, gy)
    gt = torch.autograd.grad(yt, leaves, gy)
    wleaves = [t for t in wide if isinstance(t, torch.Tensor) and t.requires_grad]
    g32 = torch.autograd.grad(y32, wleaves, gy.float())
    for i, (a, b, c) in enumerate(zip(g, gt, g32)):
        assert a.dtype == b.dtype, f"grad {i}: {a.dtype} vs torch {b.dtype}"
        _close_torch(a, b, c, f"grad {i}")
        if dtype == torch.bfloat16:
            _close(a, c.to(a.dtype), f"grad {i} vs torch float32")


def _rand(*shape, dtype, grad=True):
    return torch.randn(*shape).to(dtype).requires_grad_(grad)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("case", [
    dict(x=(2, 6, 11, 9), w=(8, 6, 3, 3), padding=1),
    dict(x=(3, 4, 10, 10), w=(6, 2, 3, 3), stride=2, padding=1, groups=2),
    dict(x=(2, 16, 7, 7), w=(8, 16, 1, 1)),
    dict(x=(1, 3, 14, 13), w=(5, 3, 5, 5), stride=(2, 1), padding=2, dilation=(1, 2)),
])
def test_conv2d(backend, dtype, case):
    case = dict(case)
    x, w = _rand(*case.pop("x"), dtype=dtype), _rand(*case.pop("w"), dtype=dtype)
    b = _rand(w.shape[0], dtype=dtype)
    _check(lambda x, w, b: C.conv2d(x, w, b, **case), lambda x, w, b: F.conv2d(x, w, b, **case), (x, w, b), dtype)


def _corr2d_torch(x, k):  # a one-channel valid convolution
    return F.conv2d(x.unsqueeze(-3), k[None, None]).squeeze(-3)


@pytest.mark.parametrize("dtype", HALF)
def test_corr2d(backend, dtype):
    _check(C.corr2d, _corr2d_torch, (_rand(3, 12, 10, dtype=dtype), _rand(3, 2, dtype=dtype)), dtype)


@pytest.mark.parametrize("dtype", HALF)
def test_corr2d_one_rounding(backend, dtype):
    """A half corr2d runs the backend's half conv2d kernels (one channel in, one out): output, grad input and
    grad kernel within one rounding of the float64 result on the same 16-bit values."""
    torch.manual_seed(4)
    x, k = torch.randn(3, 12, 10).to(dtype).requires_grad_(), torch.randn(3, 2).to(dtype).requires_grad_()
    y = C.corr2d(x, k)
    gy = torch.randn(y.shape).to(dtype)
    gx, gk = torch.autograd.grad(y, [x, k], gy)
    xd, kd = (t.detach().double().requires_grad_() for t in (x, k))
    yd = _corr2d_torch(xd, kd)
    gxd, gkd = torch.autograd.grad(yd, [xd, kd], gy.double())
    for what, a, e in (("output", y, yd), ("grad input", gx, gxd), ("grad kernel", gk, gkd)):
        assert a.dtype == dtype
        assert_rel_close(a.double(), e, ONE_ROUNDING[dtype], what)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("args", [(2,), (3, 2, 1), (3, 1, 1, 2, True)])
def test_max_pool2d(backend, dtype, channels_last, args):
    x = torch.randn(2, 5, 11, 12).to(dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_()
    _check(lambda x: C.max_pool2d(x, *args), lambda x: F.max_pool2d(x, *args), (x,), dtype)
    y, i = C.max_pool2d(x, *args, return_indices=True)
    yt, it = F.max_pool2d(x, *args, return_indices=True)
    assert torch.equal(y, yt) and torch.equal(i, it) and y.is_contiguous(memory_format=torch.channels_last) == \
        yt.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("args", [(2,), (3, 2, 1, True, False), (3, 1, 1, False, True, 4)])
def test_avg_pool2d(backend, dtype, args):
    _check(lambda x: C.avg_pool2d(x, *args), lambda x: F.avg_pool2d(x, *args), (_rand(2, 3, 11, 12, dtype=dtype),),
           dtype)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("size", [1, (5, 3), (4, 6)])
def test_adaptive_avg_pool2d(backend, dtype, size):
    _check(lambda x: C.adaptive_avg_pool2d(x, size), lambda x: F.adaptive_avg_pool2d(x, size),
           (_rand(2, 3, 11, 12, dtype=dtype),), dtype)


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("param_dtype", ["input", torch.float32])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_batch_norm(backend, dtype, param_dtype, training, relu, channels_last):
    pdt = dtype if param_dtype == "input" else param_dtype
    x = (torch.randn(4, 6, 7, 5) * 3 + 1).to(dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_()
    w, b = _rand(6, dtype=pdt), _rand(6, dtype=pdt)
    rm, rv = torch.randn(6).to(pdt), torch.rand(6).add(0.5).to(pdt)
    rm_t, rv_t = rm.clone(), rv.clone()
    fc = C.batch_norm_relu if relu else C.batch_norm
    post = F.relu if relu else (lambda y: y)
    calls = iter([(rm, rv), (rm_t, rv_t)])  # cnnext's call updates rm/rv, torch's rm_t/rv_t (float32 refs: copies)

    def ours(x, w, b):
        return fc(x, *next(calls), w, b, training)

    def torchs(x, w, b):
        stats = next(calls, None) or (rm_t.clone().to(w.dtype), rv_t.clone().to(w.dtype))
        return post(F.batch_norm(x, *stats, w, b, training))

    _check(ours, torchs, (x, w, b), dtype)
    assert rm.dtype == pdt
    _close(rm, rm_t, "running_mean")
    _close(rv, rv_t, "running_var")


@pytest.mark.parametrize("dtype", HALF)
def test_cat(backend, dtype):
    xs = [_rand(2, c, 3, 4, dtype=dtype) for c in (3, 1, 4)]
    _check(lambda *xs: C.cat(xs, 1), lambda *xs: torch.cat(xs, 1), xs, dtype)


ONE_ROUNDING = {torch.bfloat16: 2.0 ** -8, torch.float16: 2.0 ** -10}


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("op", ["max", "max_channels_last", "avg", "adaptive", "global"])
def test_pooling_one_rounding(backend, dtype, op):
    """Pooling in the input dtype (the emulated / CUDA kernels of their own, the CPU widened): max_pool2d's
    output and gradient equal the float64 result on the same values rounded once (a max is exact; its
    gradient a sum in float); the average pools and their gradients are within one rounding of it."""
    torch.manual_seed(3)
    x = torch.randn(2, 5, 13, 11).to(dtype)
    if op == "max_channels_last":  # the CPU's (N, H, W, C) kernel
        x, op = x.contiguous(memory_format=torch.channels_last), "max"
    x.requires_grad_()
    fns = {"max": (lambda t: C.max_pool2d(t, 3, 2, 1), lambda t: F.max_pool2d(t, 3, 2, 1)),
           "avg": (lambda t: C.avg_pool2d(t, 3, 2, 1), lambda t: F.avg_pool2d(t, 3, 2, 1)),
           "adaptive": (lambda t: C.adaptive_avg_pool2d(t, (4, 3)), lambda t: F.adaptive_avg_pool2d(t, (4, 3))),
           "global": (lambda t: C.adaptive_avg_pool2d(t, 1), lambda t: F.adaptive_avg_pool2d(t, 1))}
    ours, ref = fns[op]
    y = ours(x)
    gy = torch.randn(y.shape).to(dtype)
    (gx,) = torch.autograd.grad(y, x, gy)
    xd = x.detach().double().requires_grad_()
    yd = ref(xd)
    (gxd,) = torch.autograd.grad(yd, xd, gy.double())
    assert y.dtype == gx.dtype == dtype
    if op == "max":
        assert torch.equal(y, yd.to(dtype)) and torch.equal(gx, gxd.to(dtype))
    else:
        assert_rel_close(y.double(), yd, ONE_ROUNDING[dtype], f"{op} output")
        assert_rel_close(gx.double(), gxd, ONE_ROUNDING[dtype], f"{op} grad input")


@pytest.mark.parametrize("dtype", HALF)
@pytest.mark.parametrize("variant", ["lanes16", "widened", "emulated"])
@pytest.mark.parametrize("training,relu", [(True, False), (True, True), (False, False)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_batch_norm_half_variants(dtype, variant, training, relu, channels_last, monkeypatch):
    """batch_norm's CPU variants for half activations (float32 parameters), forced by name, and the emulated
    CUDA kernels on the half types: output and the three gradients within one rounding (plus float32
    statistics) of torch's float32 result on the same 16-bit values; lanes16 exists in AVX-512 builds only and
    takes no rows (channels_last is (N*H*W, C, 1) rows: the planner sends it to widened)."""
    if variant == "emulated":
        ctx = on("emu")
    else:
        monkeypatch.setenv("CNNEXT_BATCH_NORM", variant)
        ctx = contextlib.nullcontext()
    if channels_last and variant == "lanes16":
        pytest.skip("lanes16 takes planes, not rows")
    with ctx:
        _bn_half_case(dtype, variant, training, relu, channels_last)


def _bn_half_case(dtype, variant, training, relu, channels_last):
    torch.manual_seed(5)
    x = (torch.randn(4, 6, 7, 9) * 2 + 1).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    w, b = torch.rand(6).requires_grad_(), torch.randn(6).requires_grad_()
    rm, rv = torch.randn(6), torch.rand(6) + 0.5
    try:
        y = C.batch_norm_relu(x, rm.clone(), rv.clone(), w, b, training, 0.1, 1e-5) if relu else \
            C.batch_norm(x, rm.clone(), rv.clone(), w, b, training, 0.1, 1e-5)
    except RuntimeError as e:
        if "names no variant" in str(e):
            pytest.skip(f"{variant} is not built into this CPU variant")
        raise
    gy = torch.randn(y.shape).to(dtype)
    g = torch.autograd.grad(y, [x, w, b], gy)
    xf = x.detach().float().requires_grad_()
    yf = F.batch_norm(xf, rm.clone(), rv.clone(), w, b, training, 0.1, 1e-5)
    yf = F.relu(yf) if relu else yf
    gf = torch.autograd.grad(yf, [xf, w, b], gy.float())
    assert y.dtype == g[0].dtype == dtype and g[1].dtype == g[2].dtype == torch.float32
    if channels_last:  # channels_last in, channels_last out, as torch
        assert y.is_contiguous(memory_format=torch.channels_last) and g[0].is_contiguous(memory_format=torch.channels_last)
    bound = ONE_ROUNDING[dtype] + 1e-5
    assert_rel_close(y.float(), yf, bound, f"{variant} output")
    for i, (a, e) in enumerate(zip(g, gf)):
        assert_rel_close(a.float(), e, bound if i == 0 else 1e-4, f"{variant} grad {i}")


def test_batch_norm_parameters_share_a_dtype():
    x, f, h = torch.randn(2, 3, 4).bfloat16(), torch.ones(3), torch.ones(3).bfloat16()
    with pytest.raises(TypeError, match=r"batch_norm: running_mean has dtype Float but weight has dtype BFloat16"):
        C.batch_norm(x, f, f, h, h, True)
    with pytest.raises(TypeError, match=r"batch_norm: weight has dtype Double but input has dtype BFloat16"):
        C.batch_norm(x, None, None, f.double(), None, True)
    with pytest.raises(TypeError, match=r"batch_norm: weight has dtype Float but input has dtype Double"):
        C.batch_norm(x.double(), None, None, f, None, True)


@pytest.mark.parametrize("dtype", HALF)
def test_opcheck(backend, dtype):
    ops = torch.ops.cnnext
    x, w, b = torch.randn(2, 4, 7, 6).to(dtype), torch.randn(5, 4, 3, 3).to(dtype), torch.randn(5).to(dtype)
    conv = ([1, 2], [1, 0], [1, 1], 1)
    y = ops.conv2d_forward(x, w, b, *conv)
    gy = torch.randn(y.shape).to(dtype)
    torch.library.opcheck(ops.conv2d_forward.default, (x, w, b, *conv))
    torch.library.opcheck(ops.conv2d_backward_input.default, (gy, w, list(x.shape), *conv))
    torch.library.opcheck(ops.conv2d_backward_weight.default, (gy, x, list(w.shape), *conv, True))
    k = torch.randn(2, 3).to(dtype)
    yc = ops.corr2d_forward(x, k)
    torch.library.opcheck(ops.corr2d_forward.default, (x, k))
    torch.library.opcheck(ops.corr2d_backward_input.default, (torch.randn(yc.shape).to(dtype), k, list(x.shape)))
    torch.library.opcheck(ops.corr2d_backward_kernel.default, (torch.randn(yc.shape).to(dtype), x, [2, 3]))
    pool = ([3, 3], [2, 2], [1, 1])
    ym, ind = ops.max_pool2d_forward(x, *pool)
    torch.library.opcheck(ops.max_pool2d_forward.default, (x, *pool))
    torch.library.opcheck(ops.max_pool2d_backward.default, (torch.randn(ym.shape).to(dtype), ind, list(x.shape),
                                                             *pool))
    avg = (*pool, True, False, None)
    ya = ops.avg_pool2d_forward(x, *avg)
    torch.library.opcheck(ops.avg_pool2d_forward.default, (x, *avg))
    torch.library.opcheck(ops.avg_pool2d_backward.default, (torch.randn(ya.shape).to(dtype), list(x.shape), *avg))
    torch.library.opcheck(ops.adaptive_avg_pool2d_forward.default, (x, [3, 2]))
    torch.library.opcheck(ops.adaptive_avg_pool2d_backward.default, (torch.randn(2, 4, 3, 2).to(dtype),
                                                                      list(x.shape)))
    for pdt in (dtype, torch.float32):
        p = [torch.randn(4).to(pdt), torch.randn(4).to(pdt), torch.zeros(4).to(pdt), torch.ones(4).to(pdt)]
        _, m, inv = ops.batch_norm_forward(x, *p, True, 0.1, 1e-5, True)
        assert m.dtype == inv.dtype == torch.float32
        torch.library.opcheck(ops.batch_norm_forward.default, (x, *p, True, 0.1, 1e-5, True))
        torch.library.opcheck(ops.batch_norm_backward.default, (torch.randn(x.shape).to(dtype), x, p[0], p[1], m, inv,
                                                                 True, True))


# ---- torch.autocast: cnnext's layers cast as torch's own layers do ----
class Net(nn.Module):
    """conv -> BN -> ReLU -> max pool, a 1x1 branch cat'ed on, avg pool, adaptive pool: every op once."""

    def __init__(self, nn):
        super().__init__()
        self.conv, self.bn, self.pool = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.MaxPool2d(2)
        self.branch, self.avg, self.head = nn.Conv2d(8, 4, 1), nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1)

    def forward(self, x, cat):
        y = self.pool(torch.relu(self.bn(self.conv(x))))
        y = cat([y, self.branch(y).float()], 1)  # a float32 and a bfloat16 tensor: autocast promotes
        return self.head(self.avg(y)).flatten(1)


@pytest.mark.parametrize("dtype", HALF)
def test_autocast_matches_torch_layers(backend, dtype):
    torch.manual_seed(0)
    ref = Net(nn)
    ours = Net(cnnext.nn)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(4, 3, 12, 12)
    ref32 = Net(nn)
    ref32.load_state_dict(ref.state_dict())
    outs = []
    for net, cat, amp in ((ours, C.cat, True), (ref, torch.cat, True), (ref32, torch.cat, False)):
        with torch.autocast("cpu", dtype=dtype, enabled=amp):
            inner = net.conv(x)
            y = net(x, cat)
        y.float().square().sum().backward()
        outs.append((inner, y, [p.grad for p in net.parameters()]))
    (ci, cy, cg), (ti, ty, tg), (_, y32, g32) = outs
    assert ci.dtype == ti.dtype == dtype and cy.dtype == ty.dtype
    _close(ci, ti, "conv under autocast")
    _close_torch(cy, ty, y32, "net under autocast")
    for i, (a, b, c) in enumerate(zip(cg, tg, g32)):
        assert a.dtype == b.dtype == torch.float32
        _close_torch(a, b, c, f"grad of parameter {i}")


def test_autocast_casts_as_torch():
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert cnnext.nn.Conv2d(2, 3, 3)(x).dtype == torch.bfloat16  # the bar
        assert C.conv2d(x.double(), w.double()).dtype == torch.float64  # float64 is not cast
        assert C.conv2d(x.half(), w).dtype == F.conv2d(x.half(), w).dtype == torch.bfloat16
        assert C.corr2d(x, w[0, 0]).dtype == torch.bfloat16
        for f, t in ((C.max_pool2d, F.max_pool2d), (C.avg_pool2d, F.avg_pool2d)):
            assert f(x, 2).dtype == t(x, 2).dtype == torch.float32
        assert C.adaptive_avg_pool2d(x, 2).dtype == F.adaptive_avg_pool2d(x, 2).dtype == torch.float32
        assert C.batch_norm(x, None, None, training=True).dtype == torch.float32
        assert C.cat([x.bfloat16(), x], 1).dtype == torch.cat([x.bfloat16(), x], 1).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=False):
        assert C.conv2d(x, w).dtype == torch.float32
    with pytest.raises(TypeError, match=r"cat: tensors\[1\] has dtype Float but tensors\[0\] has dtype BFloat16"):
        C.cat([x.bfloat16(), x], 1)  # outside autocast: no type promotion


def test_swap_replaces_bfloat16_resnet18_layers():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10).to(torch.bfloat16).eval()
    x = torch.randn(2, 3, 64, 64).to(torch.bfloat16)
    with torch.no_grad():
        ref = net(x)
    n_conv = sum(type(m) is nn.Conv2d for m in net.modules())
    net, rep = cnnext.nn.swap(net, report=True)
    assert sum(type(m) is cnnext.nn.Conv2d for m in net.modules()) == n_conv == 20
    assert not [why for _, c, why in rep.left if "dtype" in why or "bfloat16" in why], rep
    with torch.no_grad():
        y = net(x)
    assert y.dtype == torch.bfloat16
    # bfloat16 activations rounded at every layer in both: 20 layers of one rounding each, 2^-8 apiece
    assert_rel_close(y, ref, 0.1, "swapped resnet18 in bfloat16")


# ---- the CPU's bfloat16 conv2d variants (csrc/cpu/conv2d_bf16.h), each forced by name ----
BF16_CASES = [((2, 3, 9, 9), (5, 3, 3, 3), 1, 1, 1, 1), ((2, 6, 11, 13), (8, 6, 3, 3), 2, 1, 1, 1),
              ((2, 6, 11, 13), (8, 3, 3, 3), 1, 1, 1, 2), ((1, 4, 14, 14), (6, 4, 3, 3), 1, 2, 2, 1),
              ((3, 16, 7, 7), (10, 16, 1, 1), 1, 0, 1, 1), ((2, 300, 6, 6), (17, 300, 3, 3), 1, 1, 1, 1),
              ((2, 7, 20, 21), (9, 7, 5, 5), 2, 2, 1, 1), ((2, 1, 28, 28), (6, 1, 5, 5), 1, 2, 1, 1),
              ((2, 8, 9, 9), (8, 8, 1, 1), 2, 0, 1, 1), ((1, 3, 40, 40), (4, 3, 7, 7), 2, 3, 1, 1),
              ((2, 5, 8, 8), (4, 5, 2, 2), 3, 0, 1, 1), ((1, 40, 24, 24), (36, 40, 3, 3), 1, 1, 1, 1)]


def _bf16_variants():
    info = cnnext.info()
    return ["float"] + [v for v in ("amx", "dot") if v in info.get("conv2d_bf16", [])]


@pytest.mark.parametrize("variant", ["float", "amx", "dot"])
def test_conv2d_bf16_variants(variant, monkeypatch):
    """Every bfloat16 variant this CPU runs, forward, grad input and grad weight, against torch's float32 result on the same
    bfloat16 values: one rounding apart (<= 2^-8 of the largest output), on the shapes it takes; a strided grad
    input is refused by the packed variants (the planner sends it to float)."""
    if variant not in _bf16_variants():
        pytest.skip(f"this CPU (or build) does not run the {variant} variant")
    monkeypatch.setenv("CNNEXT_CONV2D_BF16", variant)
    ops = torch.ops.cnnext
    torch.manual_seed(0)
    for xs, ws, st, pad, dil, g in BF16_CASES:
        x, w, b = torch.randn(xs).bfloat16(), torch.randn(ws).bfloat16(), torch.randn(ws[0]).bfloat16()
        conv = ([st, st], [pad, pad], [dil, dil], g)
        y = ops.conv2d_forward(x, w, b, *conv)
        assert_rel_close(y.float(), F.conv2d(x.float(), w.float(), b.float(), st, pad, dil, g), 2 ** -8,
                         f"{variant} forward {xs} {ws}")
        gy = torch.randn(y.shape).bfloat16()
        gw, gb = ops.conv2d_backward_weight(gy, x, list(ws), *conv, True)  # dot has none: its planner's pick
        rw, rb = torch.ops.aten.convolution_backward(gy.float(), x.float(), w.float(), [ws[0]], *conv[:3], False,
                                                     [0, 0], g, [False, True, True])[1:]
        assert gw.dtype == gb.dtype == torch.bfloat16
        assert_rel_close(gw.float(), rw, 2 ** -8, f"{variant} grad weight {xs} {ws}")
        assert_rel_close(gb.float(), rb, 2 ** -8, f"{variant} grad bias {xs} {ws}")
        if st > 1 and variant != "float":
            with pytest.raises(RuntimeError, match=f"CNNEXT_CONV2D_BF16={variant} does not run on this call"):
                ops.conv2d_backward_input(gy, w, list(xs), *conv)
            continue
        gx = ops.conv2d_backward_input(gy, w, list(xs), *conv)
        ref = torch.ops.aten.convolution_backward(gy.float(), x.float(), w.float(), None, *conv[:3], False, [0, 0],
                                                  g, [True, False, False])[0]
        assert_rel_close(gx.float(), ref, 2 ** -8, f"{variant} grad input {xs} {ws}")
