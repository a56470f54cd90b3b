"""batch_norm / batch_norm_relu and the BatchNorm modules against torch: outputs, running statistics,
gradients, gradcheck, opcheck, modules over several steps, layouts, numerics, bad input."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnext
from cnnext.functional import batch_norm, batch_norm_relu
from conftest import assert_rel_close, on

DTYPES = [torch.float32, torch.float64]

# (N, C), (N, C, L), (N, C, H, W): batch 1, C = 1, odd sizes, H*W below and above the vector width
SHAPES = [(7, 5), (3, 1), (40, 37), (3, 4, 9), (1, 3, 2, 3), (4, 1, 5, 5), (2, 3, 17, 19), (5, 6, 3, 3)]
# ResNet-18 / DenseNet BN layers, scaled down (channels, spatial) so the emulator stays fast
NET_SHAPES = [(2, 64, 6, 6), (2, 128, 3, 3), (2, 512, 1, 1), (3, 96, 4, 4)]


def make(shape, dtype, affine=True, stats=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    C = shape[1]
    x = torch.randn(shape, dtype=dtype, generator=g) * 2 + 0.5
    w = torch.randn(C, dtype=dtype, generator=g) if affine else None
    b = torch.randn(C, dtype=dtype, generator=g) if affine else None
    rm = torch.randn(C, dtype=dtype, generator=g) if stats else None
    rv = torch.rand(C, dtype=dtype, generator=g) + 0.5 if stats else None
    return x, w, b, rm, rv


def clone(t, grad=False):
    if t is None:
        return None
    t = t.detach().clone()
    return t.requires_grad_() if grad else t


def run_pair(fn, ref, x, w, b, rm, rv, training, momentum=0.1, eps=1e-5):
    """Forward + backward of cnnext's fn and torch's ref on copies of the same tensors; returns both sides."""
    sides = []
    for f in (fn, ref):
        xs, ws, bs, rms, rvs = clone(x, True), clone(w, w is not None), clone(b, b is not None), clone(rm), clone(rv)
        y = f(xs, rms, rvs, ws, bs, training, momentum, eps)
        gy = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(1))
        y.backward(gy)
        sides.append((y, rms, rvs, xs.grad, None if ws is None else ws.grad, None if bs is None else bs.grad))
    return sides


def torch_bn_relu(x, rm, rv, w, b, training, momentum, eps):
    return F.relu(F.batch_norm(x, rm, rv, w, b, training, momentum, eps))


def check_pair(sides):
    names = ["output", "running_mean", "running_var", "grad input", "grad weight", "grad bias"]
    for what, a, e in zip(names, *sides):
        if e is None:
            assert a is None, what
        else:
            assert_rel_close(a, e, what=what)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES + NET_SHAPES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("relu", [False, True])
def test_matches_torch(backend, shape, dtype, training, relu):
    x, w, b, rm, rv = make(shape, dtype)
    fn, ref = (batch_norm_relu, torch_bn_relu) if relu else (batch_norm, F.batch_norm)
    check_pair(run_pair(fn, ref, x, w, b, rm, rv, training, momentum=0.3, eps=1e-3))


@pytest.mark.parametrize("affine,stats", [(False, True), (True, False), (False, False)])
def test_affine_and_stats_optional(backend, affine, stats):
    x, w, b, rm, rv = make((4, 3, 5, 6), torch.float64, affine=affine, stats=stats)
    check_pair(run_pair(batch_norm, F.batch_norm, x, w, b, rm, rv, True))
    check_pair(run_pair(batch_norm_relu, torch_bn_relu, x, w, b, rm, rv, True))


def test_running_stats_several_steps(backend):
    rm, rv = torch.zeros(6), torch.ones(6)
    rm2, rv2 = rm.clone(), rv.clone()
    for step in range(4):
        x = torch.randn(3, 6, 4, 5) * (step + 1) + step
        assert_rel_close(batch_norm(x, rm, rv, training=True, momentum=0.2),
                         F.batch_norm(x, rm2, rv2, training=True, momentum=0.2))
        assert_rel_close(rm, rm2, what="running_mean")
        assert_rel_close(rv, rv2, what="running_var")
    x = torch.randn(3, 6, 4, 5)
    assert_rel_close(batch_norm(x, rm, rv), F.batch_norm(x, rm2, rv2), what="eval output")


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("training", [True, False])
def test_gradcheck(backend, relu, training):
    x, w, b, rm, rv = make((3, 2, 3, 2), torch.float64)
    fn = batch_norm_relu if relu else batch_norm
    args = (x.requires_grad_(), w.requires_grad_(), b.requires_grad_())
    assert torch.autograd.gradcheck(lambda x, w, b: fn(x, rm.clone(), rv.clone(), w, b, training), args)


def test_gradcheck_rows_layout(backend):
    x, w, b, rm, rv = make((5, 3), torch.float64)
    args = (x.requires_grad_(), w.requires_grad_(), b.requires_grad_())
    assert torch.autograd.gradcheck(lambda x, w, b: batch_norm_relu(x, None, None, w, b, True), args)


def test_opcheck(backend):
    x, w, b, rm, rv = make((3, 4, 3, 5), torch.float64)
    fwd, bwd = torch.ops.cnnext.batch_norm_forward.default, torch.ops.cnnext.batch_norm_backward.default
    for training, relu in [(True, False), (False, True)]:
        torch.library.opcheck(fwd, (x, w, b, rm.clone(), rv.clone(), training, 0.1, 1e-5, relu))
    torch.library.opcheck(fwd, (x, None, None, None, None, True, 0.1, 1e-5, False))
    _, mean, invstd = fwd(x, w, b, None, None, True, 0.1, 1e-5, True)
    gy = torch.randn_like(x)
    torch.library.opcheck(bwd, (gy, x, w, b, mean, invstd, True, True))
    torch.library.opcheck(bwd, (gy, x, None, None, mean, invstd, False, False))
    xc = x.to(memory_format=torch.channels_last)
    torch.library.opcheck(fwd, (xc, w, b, rm.clone(), rv.clone(), True, 0.1, 1e-5, False))
    torch.library.opcheck(bwd, (gy, xc, w, b, mean, invstd, True, False))


def test_forward_returns_saved_stats():
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    _, mean, invstd = torch.ops.cnnext.batch_norm_forward(x, None, None, None, None, True, 0.1, 1e-5, False)
    assert_rel_close(mean, x.mean((0, 2, 3)))
    assert_rel_close(invstd, (x.var((0, 2, 3), unbiased=False) + 1e-5).rsqrt())


@pytest.mark.parametrize("relu", [False, True])
def test_large_offset_float32(backend, relu):
    """1e4 + randn in float32: the statistics are shifted sums / shifted Welford, so nothing cancels.
    The reference is torch in float64 on the same data. The mean itself is a float32 (as in torch),
    whose rounding (half an ulp of 1e4 = 5e-4) bounds the output's accuracy; torch's float32 kernel
    loses more (it folds the mean into a bias), so cnnext must be at least as close as torch."""
    torch.manual_seed(0)
    x = 1e4 + torch.randn(4, 3, 7, 7)
    rm, rv = torch.zeros(3), torch.ones(3)
    rm64, rv64 = rm.double(), rv.double()
    fn = batch_norm_relu if relu else batch_norm
    y = fn(x, rm, rv, training=True)
    y64 = F.batch_norm(x.double(), rm64, rv64, training=True)
    y64 = F.relu(y64) if relu else y64
    assert_rel_close(y, y64.float(), rtol=2e-4, what="output")
    assert_rel_close(rm, rm64.float(), what="running_mean")
    assert_rel_close(rv, rv64.float(), what="running_var")
    y32 = F.batch_norm(x, None, None, training=True)
    y32 = F.relu(y32) if relu else y32
    assert (y.double() - y64).abs().max() <= (y32.double() - y64).abs().max()
    assert_rel_close(y, y32, rtol=5e-4, what="output vs torch float32")
    _, mean, invstd = torch.ops.cnnext.batch_norm_forward(x, None, None, None, None, True, 0.1, 1e-5, relu)
    assert_rel_close(mean, x.double().mean((0, 2, 3)).float(), what="mean")
    assert_rel_close(invstd, (x.double().var((0, 2, 3), unbiased=False) + 1e-5).rsqrt().float(), what="invstd")


@pytest.mark.parametrize("relu", [False, True])
def test_channels_last(backend, relu):
    x, w, b, rm, rv = make((3, 5, 4, 6), torch.float64)
    xc = x.to(memory_format=torch.channels_last)
    fn, ref = (batch_norm_relu, torch_bn_relu) if relu else (batch_norm, F.batch_norm)
    y = fn(xc, rm.clone(), rv.clone(), w, b, True)
    assert y.is_contiguous(memory_format=torch.channels_last)
    check_pair(run_pair(fn, ref, xc, w, b, rm, rv, True))
    # channels_last input, contiguous grad_output (and the reverse)
    xg = clone(xc, True)
    y = fn(xg, None, None, w, b, True)
    gy = torch.randn(y.shape, dtype=y.dtype)
    y.backward(gy)
    x2 = clone(x, True)
    ref(x2, None, None, w, b, True, 0.1, 1e-5).backward(gy.to(memory_format=torch.channels_last))
    assert_rel_close(xg.grad, x2.grad)


def test_noncontiguous(backend):
    x, w, b, rm, rv = make((4, 6, 5, 7), torch.float64)
    xt = x.transpose(2, 3)  # (4, 6, 7, 5), neither contiguous nor channels_last
    assert not xt.is_contiguous() and not xt.is_contiguous(memory_format=torch.channels_last)
    check_pair(run_pair(batch_norm, F.batch_norm, xt, w, b, rm, rv, True))
    x3 = torch.randn(8, 5, dtype=torch.float64)[::2]  # strided rows
    check_pair(run_pair(batch_norm_relu, torch_bn_relu, x3, w[:5], b[:5], rm[:5], rv[:5], True))
    ws = torch.randn(12, dtype=torch.float64)[::2]  # strided weight, running stats written through a copy
    rms, rms2 = torch.zeros(12, dtype=torch.float64), torch.zeros(12, dtype=torch.float64)
    assert_rel_close(batch_norm(x, rms[::2], rv.clone(), ws, b, True), F.batch_norm(x, rms2[::2], rv.clone(), ws, b, True))
    assert_rel_close(rms, rms2)


def test_backends_agree():
    x, w, b, rm, rv = make((3, 5, 6, 7), torch.float32)
    y_cpu = batch_norm_relu(x, rm.clone(), rv.clone(), w, b, True)
    with on("emu"):
        y_emu = batch_norm_relu(x, rm.clone(), rv.clone(), w, b, True)
    assert_rel_close(y_cpu, y_emu)


@pytest.mark.parametrize("shape", [(32, 3, 10, 10), (64, 40, 3, 3), (3000, 7)])
def test_cpu_deterministic_across_threads(shape):
    """Fixed partitions: bit-identical results for 1 and 2 threads (few channels split the batch)."""
    x = torch.randn(shape) * 3 + 1
    gy = torch.randn(shape)
    fwd, bwd = torch.ops.cnnext.batch_norm_forward, torch.ops.cnnext.batch_norm_backward
    C = shape[1]
    outs = []
    n0 = torch.get_num_threads()
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            rm, rv = torch.zeros(C), torch.ones(C)
            y, m, i = fwd(x, None, None, rm, rv, True, 0.1, 1e-5, True)
            outs.append((y, m, i, rm, rv, *bwd(gy, x, None, None, m, i, True, True)))
    finally:
        torch.set_num_threads(n0)
    for a, e in zip(*outs):
        assert torch.equal(a, e)


def test_batch_one_pixel_one_raises_like_torch(backend):
    x = torch.randn(1, 3, 1, 1)
    with pytest.raises(ValueError) as ours:
        batch_norm(x, torch.zeros(3), torch.ones(3), training=True)
    with pytest.raises(ValueError) as theirs:
        F.batch_norm(x, torch.zeros(3), torch.ones(3), training=True)
    assert str(ours.value) == "batch_norm: " + str(theirs.value)  # torch's text, naming the op
    assert "Expected more than 1 value per channel when training" in str(ours.value)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        batch_norm_relu(torch.randn(1, 4), None, None, training=True)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        cnnext.nn.BatchNorm2d(3)(x)
    cnnext.nn.BatchNorm2d(3).eval()(x)  # eval mode: fine, as in torch


def test_empty_batch(backend):
    x = torch.randn(0, 3, 4, 4)
    rm, rv = torch.zeros(3), torch.ones(3)
    assert batch_norm(x, rm, rv, training=True).shape == x.shape
    assert torch.equal(rm, torch.zeros(3)) and torch.equal(rv, torch.ones(3))


# ---------------------------------------------------------------- modules


def module_pair(cls, ref_cls, *args, **kw):
    torch.manual_seed(0)
    m, r = cls(*args, **kw), ref_cls(*args, **kw)
    if getattr(r, "weight", None) is not None:
        with torch.no_grad():
            r.weight.uniform_(0.5, 1.5)
            r.bias.uniform_(-0.5, 0.5)
    m.load_state_dict(r.state_dict())
    return m, r


def check_modules(m, r, shape, steps=3):
    for step in range(steps):
        x = torch.randn(shape) * (1 + step) + step
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        y1, y2 = m(x1), r(x2)
        assert_rel_close(y1, y2, what=f"output step {step}")
        gy = torch.randn(shape)
        y1.backward(gy)
        y2.backward(gy)
        assert_rel_close(x1.grad, x2.grad, what="grad input")
        for (n, p1), p2 in zip(m.named_parameters(), r.parameters()):
            assert_rel_close(p1.grad, p2.grad, what=f"grad {n}")
        for (n, b1), b2 in zip(m.named_buffers(), r.buffers()):
            assert (b1 == b2).all() if b1.dtype == torch.long else True, n
            if b1.dtype != torch.long:
                assert_rel_close(b1, b2, what=n)


@pytest.mark.parametrize("kw", [{}, {"momentum": None}, {"affine": False}, {"track_running_stats": False},
                                {"momentum": 0.5, "eps": 1e-3}])
def test_batchnorm2d_module(backend, kw):
    m, r = module_pair(cnnext.nn.BatchNorm2d, nn.BatchNorm2d, 5, **kw)
    assert isinstance(m, nn.BatchNorm2d)
    assert repr(m) == repr(r)
    assert list(m.state_dict()) == list(r.state_dict())
    check_modules(m, r, (4, 5, 3, 3))
    m.eval(), r.eval()
    check_modules(m, r, (2, 5, 3, 3), steps=1)


def test_batchnorm1d_module(backend):
    for shape in [(6, 4), (3, 4, 7)]:
        m, r = module_pair(cnnext.nn.BatchNorm1d, nn.BatchNorm1d, 4, momentum=None)
        check_modules(m, r, shape)
        m.eval(), r.eval()
        check_modules(m, r, shape, steps=1)
    with pytest.raises(ValueError, match="expected 2D or 3D input"):
        cnnext.nn.BatchNorm1d(4)(torch.randn(2, 4, 3, 3))


@pytest.mark.parametrize("cls,ref_bn,shape", [(cnnext.nn.BatchNormReLU2d, nn.BatchNorm2d, (3, 6, 4, 4)),
                                              (cnnext.nn.BatchNormReLU1d, nn.BatchNorm1d, (5, 6))])
def test_batchnorm_relu_module(backend, cls, ref_bn, shape):
    m, r = module_pair(cls, ref_bn, 6)
    assert list(m.state_dict()) == list(r.state_dict())
    seq = nn.Sequential(r, nn.ReLU())

    class Ref(nn.Module):  # parameters/buffers in BN's order
        def __init__(self):
            super().__init__()
            self.bn = r

        def forward(self, x):
            return seq(x)

    check_modules(m, Ref(), shape)
    m.eval(), r.eval()
    check_modules(m, Ref(), shape, steps=1)


def test_module_state_dict_roundtrip():
    r = nn.BatchNorm2d(3)
    r(torch.randn(4, 3, 2, 2))
    m = cnnext.nn.BatchNormReLU2d(3)
    m.load_state_dict(r.state_dict())
    assert int(m.num_batches_tracked) == 1
    r2 = nn.BatchNorm2d(3)
    r2.load_state_dict(m.state_dict())
    m.reset_running_stats()
    assert torch.equal(m.running_mean, torch.zeros(3)) and int(m.num_batches_tracked) == 0


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "make_args,match",
    [
        (lambda: (torch.ones(4, 3, dtype=torch.int32), None, None), r"batch_norm: input must be float32, float64, bf"),
        (lambda: (torch.ones(4), None, None), r"batch_norm: input must have at least 2 dims"),
        (lambda: (torch.randn(4, 3), torch.zeros(3, device="meta"), torch.ones(3)),
         r"batch_norm: running_mean is on meta but input is on cpu"),
        (lambda: (torch.randn(4, 3), torch.zeros(4), torch.ones(3)),
         r"batch_norm: running_mean must have shape \(C,\) = \(3,\)"),
        (lambda: (torch.randn(4, 3), torch.zeros(3), torch.ones(3, 1)),
         r"batch_norm: running_var must have shape \(C,\)"),
        (lambda: (torch.randn(4, 3), torch.zeros(3, dtype=torch.float64), torch.ones(3)),
         r"batch_norm: running_mean has dtype"),
        (lambda: (torch.randn(4, 3), torch.zeros(3), None), r"batch_norm: running_mean and running_var must both"),
    ],
)
def test_bad_input(backend, make_args, match):
    x, rm, rv = make_args()
    with pytest.raises((RuntimeError, TypeError, ValueError), match=match):
        batch_norm(x, rm, rv, training=True)


def test_bad_weight_and_eval_without_stats(backend):
    x = torch.randn(4, 3, 2, 2)
    with pytest.raises(RuntimeError, match=r"batch_norm: weight must have shape \(C,\) = \(3,\)"):
        batch_norm(x, None, None, torch.ones(2), None, True)
    with pytest.raises(RuntimeError, match=r"batch_norm: bias is on meta"):
        batch_norm(x, None, None, None, torch.ones(3, device="meta"), True)
    with pytest.raises(RuntimeError, match=r"batch_norm: running_mean and running_var must be given in evaluation"):
        batch_norm(x, None, None, training=False)


def test_torch_compile_fullgraph():
    def f(x, rm, rv, w, b):
        return torch.sigmoid(batch_norm_relu(x, rm, rv, w, b, True)).sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    x, w, b, rm, rv = make((3, 4, 5, 5), torch.float32)
    xs, ws, bs = clone(x, True), clone(w, True), clone(b, True)
    rm1, rv1 = rm.clone(), rv.clone()
    compiled(xs, rm1, rv1, ws, bs).backward()
    x2, w2, b2 = clone(x, True), clone(w, True), clone(b, True)
    rm2, rv2 = rm.clone(), rv.clone()
    torch.sigmoid(torch_bn_relu(x2, rm2, rv2, w2, b2, True, 0.1, 1e-5)).sum().backward()
    for a, e in [(xs.grad, x2.grad), (ws.grad, w2.grad), (bs.grad, b2.grad), (rm1, rm2), (rv1, rv2)]:
        assert_rel_close(a, e)


def test_double_backward_is_refused():
    x = torch.randn(4, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    (gx,) = torch.autograd.grad(batch_norm(x, None, None, training=True).pow(3).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|does not require grad"):
        gx.sum().backward()


# ---------------------------------------------------------------- regressions (robustness fuzzer)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,layout", [((4, 3), "rows"), ((3, 2, 3, 3), "planes"), ((2, 3, 2, 3), "channels_last"),
                                          ((2, 2, 20), "planes")])
@pytest.mark.parametrize("training", [False, True])
def test_relu_keeps_nan_like_torch(backend, dtype, shape, layout, training):
    """relu(NaN) = NaN as torch.relu (the fused ReLU used to give 0); the backward masks NaN outputs
    with 0 like torch's threshold_backward, so every gradient matches the composite's, NaN for NaN."""
    x, w, b, rm, rv = make(shape, dtype, seed=3)
    x.view(-1)[[1, x.numel() // 2]] = float("nan")  # two channels hit (all NaN when training)
    rv[-1] = -1.0  # a NaN channel in evaluation mode (invstd = NaN)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    sides = run_pair(batch_norm_relu, torch_bn_relu, x, w, b, rm, rv, training)
    assert torch.isnan(sides[1][0]).any() and torch.isnan(sides[0][0]).any()
    check_pair(sides)


def test_relu_keeps_nan_issue_repro(backend):
    x = torch.tensor([[1.0, float("nan")], [2.0, 3.0]])
    y = batch_norm_relu(x, torch.zeros(2), torch.ones(2), training=False)
    e = F.relu(F.batch_norm(x, torch.zeros(2), torch.ones(2), training=False))
    assert torch.isnan(y[0, 1]) and torch.isnan(e[0, 1])
    assert_rel_close(y, e)


@pytest.mark.parametrize("fn", [batch_norm, batch_norm_relu])
def test_eps_like_torch(backend, fn):
    x, w, b, rm, rv = make((3, 2, 4), torch.float64)
    for training, eps in [(True, 0.0), (True, -1.0), (False, -1e-5)]:
        with pytest.raises(ValueError) as theirs:
            F.batch_norm(x, rm.clone(), rv.clone(), w, b, training, 0.1, eps)
        with pytest.raises(ValueError, match=r"^batch_norm: eps must be") as ours:
            fn(x, rm.clone(), rv.clone(), w, b, training, 0.1, eps)
        assert str(ours.value).replace("batch_norm: ", "batch_norm ") == str(theirs.value)
        with pytest.raises(RuntimeError, match=r"batch_norm: eps must be"):  # the op itself checks too
            torch.ops.cnnext.batch_norm_forward(x, w, b, rm.clone(), rv.clone(), training, 0.1, eps, False)
    ref = F.batch_norm if fn is batch_norm else torch_bn_relu
    # accepted by torch: eps = 0 in evaluation, NaN (a NaN output), inf (0 * w + b)
    for training, eps in [(False, 0.0), (False, float("nan")), (True, float("nan")), (True, float("inf"))]:
        check_pair(run_pair(fn, ref, x, w, b, rm, rv, training, eps=eps))


@pytest.mark.parametrize("fn", [batch_norm, batch_norm_relu])
def test_non_bool_training_and_bad_momentum_raise(backend, fn):
    x, w, b, rm, rv = make((3, 2, 4), torch.float32)
    for training in [2.5, "yes", 1, 0.0, None]:
        with pytest.raises(TypeError):  # torch's argument parser rejects these
            F.batch_norm(x, rm.clone(), rv.clone(), w, b, training)
        with pytest.raises(TypeError, match=r"^batch_norm: training must be a bool"):
            fn(x, rm.clone(), rv.clone(), w, b, training)
    for momentum in [None, "0.1", torch.tensor([0.1])]:
        with pytest.raises(TypeError, match=r"^batch_norm: momentum must be a float"):
            fn(x, rm.clone(), rv.clone(), w, b, True, momentum)
    ref = F.batch_norm if fn is batch_norm else torch_bn_relu
    check_pair(run_pair(fn, ref, x, w, b, rm, rv, True, momentum=float("nan")))  # NaN running stats, as torch
    check_pair(run_pair(fn, ref, x, w, b, rm, rv, True, momentum=1))  # an int is a float argument
    check_pair(run_pair(fn, ref, x, w, b, rm, rv, True, momentum=torch.tensor(0.3, dtype=torch.float64)))  # 0-D


@pytest.mark.parametrize("fn", [batch_norm, batch_norm_relu])
@pytest.mark.parametrize("arg", ["input", "running_mean", "running_var", "weight", "bias"])
@pytest.mark.parametrize("value", [[[1.0, 2.0], [3.0, 4.0]], 2.5, 3, "abc", None])
def test_non_tensor_arguments(backend, fn, arg, value):
    x, w, b, rm, rv = make((4, 2), torch.float32)
    kw = dict(input=x, running_mean=rm, running_var=rv, weight=w, bias=b)
    kw[arg] = value
    a = [kw.pop(k) for k in ("input", "running_mean", "running_var")]
    if value is None and arg != "input":
        if arg in ("weight", "bias"):  # optional: fine
            fn(*a, **kw, training=True)
            return
        with pytest.raises(RuntimeError, match=r"batch_norm: running_mean and running_var must both"):
            fn(*a, **kw, training=True)
        return
    with pytest.raises(TypeError, match=rf"^batch_norm: {arg} must be a Tensor"):
        fn(*a, **kw, training=True)
    with pytest.raises((TypeError, AttributeError)):  # torch: AttributeError from input.size() on a non-tensor
        F.batch_norm(*a, **kw, training=True)


@pytest.mark.parametrize("shape", [(), (1,), (3,)])
def test_low_rank_input_names_the_op(backend, shape):
    for training in (True, False):
        with pytest.raises((RuntimeError, ValueError), match=r"batch_norm: input must have at least 2 dims"):
            batch_norm_relu(torch.randn(shape), None, None, training=training)


def assert_same_nonfinite(a, e):
    assert torch.equal(torch.isnan(a), torch.isnan(e)), "NaN positions differ"
    inf = torch.isinf(e)
    assert torch.equal(torch.isinf(a), inf) and torch.equal(a[inf], e[inf]), "Inf positions differ"
    fin = torch.isfinite(e)
    if fin.any():
        assert_rel_close(a[fin], e[fin])


@pytest.mark.parametrize("fn", [batch_norm, batch_norm_relu])
@pytest.mark.parametrize("shape", [(5, 3), (3, 3, 2, 1), (2, 3, 4, 5)])
@pytest.mark.parametrize("training", [False, True])
def test_infinite_scale_like_torch(backend, fn, shape, training):
    """w = +-inf (or invstd = inf): torch computes x * scale + (b - mean * scale), whose inf - inf is NaN;
    (x - mean) * scale would be +-inf there, which the fused relu turned into 0."""
    ref = F.batch_norm if fn is batch_norm else torch_bn_relu
    for dtype in DTYPES:
        x, w, b, rm, rv = make(shape, dtype, seed=5)
        w[0], w[1] = float("inf"), -float("inf")
        eps = 1e-5 if training else 0.0
        if not training:
            rv[2] = 0.0  # invstd = 1/sqrt(rv + eps) = inf
        e = ref(x, rm.clone(), rv.clone(), w, b, training, 0.1, eps)
        assert torch.isnan(e).any()
        assert_same_nonfinite(fn(x, rm.clone(), rv.clone(), w, b, training, 0.1, eps), e)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(64, 5), (4, 3, 5, 7), (4, 3, 5, 7, "channels_last")])
@pytest.mark.parametrize("training", [False, True])
def test_relu_mask_is_the_forward_outputs(backend, dtype, shape, training):
    """The backward recomputes the ReLU mask from x; it must be exactly the forward output's (y > 0),
    also where the pre-activation is within rounding of 0 (the kernels pin that computation to one
    FMA, so no compiler contraction can make the forward and the recompute disagree). With gy = 1:
    grad bias = the number of outputs > 0 per channel, and (eval) grad input != 0 exactly there."""
    cl = shape[-1] == "channels_last"
    shape = shape[:-1] if cl else shape
    g = torch.Generator().manual_seed(11)
    C = shape[1]
    levels = torch.tensor([-1.5, -0.3, 0.1, 0.7, 2.2], dtype=dtype)
    x = levels[torch.randint(0, 5, shape, generator=g)]  # a few values, so every level recurs
    w = torch.randn(C, dtype=dtype, generator=g)
    rm = torch.randn(C, dtype=dtype, generator=g) * 0.1
    rv = torch.rand(C, dtype=dtype, generator=g) + 0.5
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    # the bias puts level 0.1's pre-activation at 0 up to rounding (eval: exactly; training: the batch mean)
    mean = x.transpose(0, 1).reshape(C, -1).mean(1) if training else rm
    var = x.transpose(0, 1).reshape(C, -1).var(1, unbiased=False) if training else rv
    b = (-(0.1 - mean) / torch.sqrt(var + 1e-5) * w).to(dtype)
    xs, bs = x.clone().requires_grad_(), b.clone().requires_grad_()
    y = batch_norm_relu(xs, rm.clone(), rv.clone(), w, bs, training)
    y.backward(torch.ones_like(y))
    pos = y > 0
    per_channel = pos.transpose(0, 1).reshape(C, -1).sum(1).to(dtype)
    assert torch.equal(bs.grad, per_channel), (bs.grad, per_channel)
    if not training:
        assert torch.equal(xs.grad != 0, pos)
    # the level sits on the threshold: some of its outputs are 0 and some (rounding) may be positive
    assert (y == 0).any()


@pytest.mark.parametrize("name", ["blocks", "chunks", "normalize", "rows"])
def test_each_cpu_variant(name, monkeypatch):
    """CNNEXT_BATCH_NORM=<variant> (csrc/cpu/batch_norm_variants.h) runs that variant: against torch
    (outputs, running statistics, gradients; with and without ReLU) on every shape and mode it runs
    on, including the ones the planner gives another (blocks with few channels, chunks with many);
    the others raise 'does not run on this call'."""
    monkeypatch.setenv("CNNEXT_BATCH_NORM", name)
    ran = set()
    for dtype in DTYPES:
        for shape in SHAPES + NET_SHAPES + [(6, 40, 5, 5)]:
            for training in (True, False):
                for relu in (False, True):
                    x, w, b, rm, rv = make(shape, dtype)
                    fn, ref = (batch_norm_relu, torch_bn_relu) if relu else (batch_norm, F.batch_norm)
                    try:
                        check_pair(run_pair(fn, ref, x, w, b, rm, rv, training, momentum=0.3, eps=1e-3))
                    except RuntimeError as e:
                        if f"CNNEXT_BATCH_NORM={name} does not run on this call" not in str(e):
                            raise
                        continue
                    ran.add((shape, training))
    planes = [s for s in SHAPES + NET_SHAPES + [(6, 40, 5, 5)] if len(s) > 2]
    # the forward decides: blocks and chunks compute statistics (training), normalize uses the
    # running ones (eval), rows needs S == 1 ((N, C) inputs here)
    expect = {"blocks": {(s, True) for s in SHAPES + NET_SHAPES + [(6, 40, 5, 5)]},
              "chunks": {(s, True) for s in SHAPES + NET_SHAPES + [(6, 40, 5, 5)]},
              "normalize": {(s, False) for s in SHAPES + NET_SHAPES + [(6, 40, 5, 5)]},
              "rows": {(s, t) for s in SHAPES + NET_SHAPES + [(6, 40, 5, 5)] if s not in planes or s[2:] == (1, 1)
                       for t in (True, False)}}[name]
    assert ran == expect


# The two-stage reductions of the CUDA kernels (csrc/cuda/batch_norm.cu, reduce.h split_plan): each
# channel's values are cut into fixed chunks of >= 2048 values (planes) or >= 64 rows (rows layout),
# up to 1024 blocks in all.  These shapes run several splits per channel, and the stage-1 grid
# (splits, channels) is not a grid-stride grid, so the emulator runs every split:
#   (8, 2, 32, 32)    M = 8192 per channel: 4 splits, 4-wide vectors (S = 1024)
#   (6, 3, 25, 27)    M = 4050: 2 splits, S = 675 odd: scalar values
#   (3000, 4)         rows: 47 splits of 64 rows
#   (16, 2, 16, 16)   channels_last, rows (R = 4096, C = 2): 64 splits, 2-wide rows (float 2 < 4: scalar)
#   (2, 200, 8, 8)    C = 200 > 64: the stage-1 grid strides over channels on the emulator, 4-wide
SPLIT_SHAPES = [(8, 2, 32, 32), (6, 3, 25, 27), (3000, 4), (16, 2, 16, 16, "channels_last"), (2, 200, 8, 8)]


def _split_case(shape, dtype, seed=0):
    cl = shape[-1] == "channels_last"
    shape = shape[:-1] if cl else shape
    x, w, b, rm, rv = make(shape, dtype, seed=seed)
    if cl:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, w, b, rm, rv


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SPLIT_SHAPES, ids=str)
@pytest.mark.parametrize("relu", [False, True])
def test_split_reductions_match_torch(backend, shape, dtype, relu):
    x, w, b, rm, rv = _split_case(shape, dtype)
    fn, ref = (batch_norm_relu, torch_bn_relu) if relu else (batch_norm, F.batch_norm)
    check_pair(run_pair(fn, ref, x, w, b, rm, rv, True))
    check_pair(run_pair(fn, ref, x, w, b, rm, rv, False))


def _all_outputs(x, w, b, rm, rv, relu):
    fn = batch_norm_relu if relu else batch_norm
    xs, ws, bs, rms, rvs = clone(x, True), clone(w, True), clone(b, True), clone(rm), clone(rv)
    y = fn(xs, rms, rvs, ws, bs, True, 0.1, 1e-5)
    y.backward(torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(1)))
    return [y, rms, rvs, xs.grad, ws.grad, bs.grad]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SPLIT_SHAPES, ids=str)
def test_split_reductions_deterministic(shape, dtype):
    """Two runs give the same bits (fixed splits, fixed merge order, no atomics); so does an input at
    an odd storage offset, which the kernels read with scalar instead of 16-byte loads (the grouping of
    the values is the shape's, not the alignment's)."""
    x, w, b, rm, rv = _split_case(shape, dtype)
    with on("emu"):
        first = _all_outputs(x, w, b, rm, rv, True)
        second = _all_outputs(x, w, b, rm, rv, True)
        buf = torch.empty(x.numel() + 1, dtype=dtype)
        xo = buf[1:].view(x.shape) if x.is_contiguous() else buf[1:].view(
            x.permute(0, 2, 3, 1).shape).permute(0, 3, 1, 2)
        xo.copy_(x)
        assert xo.data_ptr() % 16 != 0 and xo.stride() == x.stride()
        shifted = _all_outputs(xo, w, b, rm, rv, True)
    for i, (a, c, d) in enumerate(zip(first, second, shifted)):
        assert torch.equal(a, c), f"output {i} differs between two runs"
        assert torch.equal(a, d), f"output {i} differs for a misaligned input"
