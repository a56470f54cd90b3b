"""max_pool2d: against torch.nn.functional.max_pool2d (values, indices, gradients), ties and NaN,
gradcheck, opcheck, compile, nn.MaxPool2d, bad input; on the CPU kernels and the emulated CUDA kernels."""
import pytest
import torch
import torch.nn.functional as F

import cnnext
from cnnext.functional import max_pool2d
from conftest import assert_rel_close, on

# (input shape, kernel_size, stride, padding, dilation, ceil_mode)
CONFIGS = [
    ((2, 3, 27, 27), 3, 2, 0, 1, False),  # AlexNet / NiN 3x3 s2
    ((2, 4, 12, 12), 3, 1, 1, 1, False),  # GoogLeNet inception branch 3x3 s1 p1
    ((2, 4, 12, 12), 3, 2, 1, 1, False),  # GoogLeNet 3x3 s2 p1
    ((1, 3, 16, 16), 3, 2, 1, 1, False),  # ResNet stem 3x3 s2 p1
    ((2, 2, 14, 14), 2, 2, 0, 1, False),  # LeNet 2x2 s2
    ((1, 2, 6, 6), 3, 3, 1, 1, True),  # ceil_mode: an extra last window, partly in the right padding
    ((1, 2, 5, 5), 2, 2, 1, 1, True),  # ceil_mode: a window starting in the right padding is dropped
    ((1, 2, 9, 9), 4, 2, 2, 1, False),  # padding = kernel / 2
    ((1, 2, 11, 13), 2, 3, 0, 1, False),  # stride > kernel
    ((1, 2, 13, 15), 3, 2, 1, 2, True),  # dilation 2, ceil_mode
    ((2, 3, 17, 19), (3, 2), (2, 1), (1, 1), (1, 2), False),  # odd sizes, non-square everything
    ((1, 1, 5, 5), 5, 1, 0, 1, False),  # kernel = input
    ((1, 1, 3, 4), (3, 4), 1, (1, 2), 1, True),  # kernel = input, padded
    ((1, 2, 5, 70), 3, 2, 1, 1, False),  # wide rows: several 16-lane blocks, edges, overlap
    ((1, 1, 4, 67), 3, 1, 1, 1, True),  # stride 1, wide
    ((1, 2, 6, 80), 3, 3, 1, 1, True),  # stride 3 (gathers), wide
    ((1, 1, 3, 52), (2, 5), (1, 2), (1, 2), (2, 3), True),  # dilation + stride 2 edges, wide
    ((1, 1, 2, 70), (1, 65), 1, (0, 32), 1, False),  # a very wide kernel
    ((2, 5, 3, 3), 3, 1, 1, 1, False),  # GoogLeNet's last 3x3 maps: a whole plane per vector (CPU)
    ((1, 3, 4, 4), 3, 2, 1, 1, True),  # a small plane, ceil_mode
    ((2, 2, 2, 7), (2, 3), 1, 1, (1, 2), False),  # a small plane, dilation and padding
]


def ids(c):
    return "x".join(map(str, c[0])) + f"-k{c[1]}-s{c[2]}-p{c[3]}-d{c[4]}" + ("-ceil" if c[5] else "")


def check_against_torch(x, k, s, p, d, ceil, what=""):
    xa, xb = x.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
    y, i = max_pool2d(xa, k, s, p, d, ceil, return_indices=True)
    y2, i2 = F.max_pool2d(xb, k, s, p, d, ceil, return_indices=True)
    assert y.shape == y2.shape and y.dtype == y2.dtype, what
    assert torch.equal(y.nan_to_num(), y2.nan_to_num()) and torch.equal(y.isnan(), y2.isnan()), f"{what}: output"
    assert i.dtype == torch.int64 and torch.equal(i, i2), f"{what}: indices differ at {(i != i2).sum()} places"
    for t, t2 in ((y, y2), (i, i2)):  # same memory layout as torch's (channels_last stays channels_last)
        assert t.is_contiguous() == t2.is_contiguous(), f"{what}: layout"
        assert t.is_contiguous(memory_format=torch.channels_last) == t2.is_contiguous(
            memory_format=torch.channels_last), f"{what}: layout"
    g = torch.randn_like(y2)
    y.backward(g)
    y2.backward(g)
    assert_rel_close(xa.grad, xb.grad, what=f"{what}: grad input")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cfg", CONFIGS, ids=ids)
def test_matches_torch(backend, cfg, dtype):
    torch.manual_seed(0)
    shape, k, s, p, d, ceil = cfg
    check_against_torch(torch.randn(shape, dtype=dtype), k, s, p, d, ceil, what=ids(cfg))


@pytest.mark.parametrize("cfg", [CONFIGS[i] for i in (0, 3, 5, 9, 13, 16)], ids=ids)
@pytest.mark.parametrize("kind", ["ties", "nan", "-inf", "+inf", "nan+inf"])
def test_ties_nan_inf(backend, cfg, kind):
    """Ties: the first max in scan order; NaN: the last NaN of the window; all -inf: the first valid tap;
    +inf: the first +inf, unless a NaN (the CPU kernels redo windows that reach +inf one by one)."""
    torch.manual_seed(1)
    shape, k, s, p, d, ceil = cfg
    x = torch.randint(0, 3, shape).float()
    if "nan" in kind:
        x[torch.rand(shape) < 0.15] = float("nan")
    if kind == "-inf":
        x[torch.rand(shape) < 0.8] = float("-inf")
    if "+inf" in kind:
        x[torch.rand(shape) < 0.2] = float("inf")
    check_against_torch(x, k, s, p, d, ceil, what=f"{ids(cfg)} {kind}")


def _cpu_variants():
    """The CPU forward variants this build runs (csrc/cpu/max_pool2d_variants.h): name -> float dtypes."""
    out = {"scalar": (torch.float32, torch.float64), "channels": (torch.float32, torch.float64)}
    if cnnext.info()["cpu_isa"] == "avx512":
        out.update(rows=(torch.float32,), planes=(torch.float32,), columns=(torch.float32,))
    return out


def _runs(name, cfg):
    shape, k, s, p, d, ceil = cfg
    small = shape[-1] * shape[-2] <= 16 and torch.Size(F.max_pool2d(torch.empty(shape), k, s, p, d, ceil).shape[-2:]).numel() <= 16
    return small if name == "planes" else True


@pytest.mark.parametrize("name", ["scalar", "rows", "planes", "columns", "channels"])
def test_each_cpu_variant(name, monkeypatch):
    """CNNEXT_MAX_POOL2D=<variant> runs that variant (the planner would pick another on most shapes):
    each against torch on every config it runs on, values and indices, with ties, NaN and +-inf."""
    variants = _cpu_variants()
    if name not in variants:
        pytest.skip(f"{name}: not in this build's {cnnext.info()['cpu_isa']} variant")
    monkeypatch.setenv("CNNEXT_MAX_POOL2D", name)
    nhwc = name.startswith("channels")
    cfgs = [c for c in CONFIGS if _runs(name, c)]
    assert cfgs
    for dtype in variants[name]:
        for i, cfg in enumerate(cfgs):
            shape, k, s, p, d, ceil = cfg
            torch.manual_seed(i)
            for kind in ("randn", "nan+inf"):
                x = torch.randn(shape, dtype=dtype) if kind == "randn" else torch.randint(0, 3, shape).to(dtype)
                if kind != "randn":
                    x[torch.rand(shape) < 0.1] = float("nan")
                    x[torch.rand(shape) < 0.1] = float("inf")
                    x[torch.rand(shape) < 0.2] = float("-inf")
                if nhwc:
                    x = x.contiguous(memory_format=torch.channels_last)
                what = f"{name} {ids(cfg)} {dtype} {kind}"
                if name == "columns":  # values only
                    with torch.no_grad():
                        y, y2 = max_pool2d(x, k, s, p, d, ceil), F.max_pool2d(x, k, s, p, d, ceil)
                    assert torch.equal(y.nan_to_num(), y2.nan_to_num()) and torch.equal(y.isnan(), y2.isnan()), what
                else:
                    check_against_torch(x, k, s, p, d, ceil, what=what)


def test_forced_variant_that_does_not_run():
    """A forced variant that cannot compute the call raises (never silently runs another one)."""
    x = torch.randn(1, 2, 9, 9)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNEXT_MAX_POOL2D", "no_such_variant")
        with pytest.raises(RuntimeError, match="CNNEXT_MAX_POOL2D=no_such_variant names no variant of this op"):
            max_pool2d(x, 3)
        if "planes" in _cpu_variants():
            mp.setenv("CNNEXT_MAX_POOL2D", "planes")  # a 9x9 plane is more than one vector
            with pytest.raises(RuntimeError, match="CNNEXT_MAX_POOL2D=planes does not run on this call"):
                max_pool2d(x, 3)
            mp.setenv("CNNEXT_MAX_POOL2D", "columns")  # values only: calls with indices keep the planner's
            y, i = max_pool2d(x, 3, return_indices=True)
            assert torch.equal(i, F.max_pool2d(x, 3, return_indices=True)[1])


def test_noncontiguous_channels_last_unbatched(backend):
    torch.manual_seed(2)
    base = torch.randn(2, 3, 19, 23, dtype=torch.float64)
    x_t = base.transpose(-1, -2)  # (2, 3, 23, 19), transposed strides
    x_s = base[:, :, 1::2, ::3]  # sliced
    x_cl = base.contiguous(memory_format=torch.channels_last)
    x_u = base[1]  # unbatched (C, H, W)
    for x, what in [(x_t, "transposed"), (x_s, "sliced"), (x_cl, "channels_last"), (x_u, "unbatched")]:
        check_against_torch(x, 3, 2, 1, 1, True, what=what)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["randn", "ties", "nan", "nan+inf"])
@pytest.mark.parametrize("cfg", [((2, 35, 9, 10), 3, 2, 1, 1, True), ((1, 16, 7, 7), (2, 3), 1, (1, 0), (2, 1), False),
                                 ((2, 5, 6, 6), 2, 2, 0, 1, False)], ids=ids)
def test_channels_last(backend, cfg, kind, dtype):
    """channels_last input: vectors across channels (full vectors and the leftover channels)."""
    torch.manual_seed(4)
    shape, k, s, p, d, ceil = cfg
    x = torch.randn(shape, dtype=dtype) if kind == "randn" else torch.randint(0, 3, shape).to(dtype)
    if "nan" in kind:
        x[torch.rand(shape) < 0.15] = float("nan")
    if "inf" in kind:
        x[torch.rand(shape) < 0.2] = float("inf")
    check_against_torch(x.contiguous(memory_format=torch.channels_last), k, s, p, d, ceil, what=f"{ids(cfg)} {kind}")


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=ids)
def test_values_only_inference(backend, cfg, layout):
    """No grad, no return_indices: cnnext::max_pool2d computes the values without indices."""
    torch.manual_seed(5)
    shape, k, s, p, d, ceil = cfg
    x = torch.randint(0, 4, shape).float()
    x[torch.rand(shape) < 0.05] = float("nan")
    x[torch.rand(shape) < 0.3] = float("-inf")
    x[torch.rand(shape) < 0.05] = float("inf")
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        y, y2 = max_pool2d(x, k, s, p, d, ceil), F.max_pool2d(x, k, s, p, d, ceil)
    assert torch.equal(y.nan_to_num(), y2.nan_to_num()) and torch.equal(y.isnan(), y2.isnan())
    assert y.is_contiguous(memory_format=torch.channels_last) == y2.is_contiguous(memory_format=torch.channels_last)


def test_return_indices_not_differentiable(backend):
    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    y, i = max_pool2d(x, 2, return_indices=True)
    assert y.requires_grad and not i.requires_grad
    assert max_pool2d(x, 2).shape == (1, 2, 3, 3)


def test_stride_default_and_forms(backend):
    x = torch.randn(2, 3, 10, 11)
    for kw in [dict(kernel_size=3), dict(kernel_size=(3, 2), stride=None), dict(kernel_size=[2], stride=[]),
               dict(kernel_size=3, stride=(2, 1), padding=(1, 0), dilation=(1, 2))]:
        assert torch.equal(max_pool2d(x, **kw), F.max_pool2d(x, **kw)), kw


def test_d2l_examples(backend):
    # d2l 7.5.1: pool2d(X, (2, 2)) on X = 0..8
    X = torch.arange(9.0).reshape(1, 3, 3)
    assert torch.equal(max_pool2d(X, 2, 1), torch.tensor([[[4.0, 5.0], [7.0, 8.0]]]))
    # d2l 7.5.2: a 3x3 window on 0..15 with default stride, then padding 1 and stride 2
    X = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert torch.equal(cnnext.nn.MaxPool2d(3)(X), torch.tensor([[[[10.0]]]]))
    assert torch.equal(cnnext.nn.MaxPool2d(3, padding=1, stride=2)(X), torch.tensor([[[[5.0, 7.0], [13.0, 15.0]]]]))


def test_gradcheck(backend):
    # distinct values (no ties) spaced far apart compared with gradcheck's eps
    x = (torch.randperm(2 * 2 * 7 * 8, dtype=torch.float64) / 10).reshape(2, 2, 7, 8).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: max_pool2d(t, 3, 2, 1, 1, True), (x,))
    assert torch.autograd.gradcheck(lambda t: max_pool2d(t, (2, 3), 1, (1, 0), (2, 1)), (x,))


def test_opcheck(backend):
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64)
    args = ([3, 3], [2, 2], [1, 1], [1, 1], True)
    y, i = torch.ops.cnnext.max_pool2d_forward(x, *args)
    gy = torch.randn_like(y)
    torch.library.opcheck(torch.ops.cnnext.max_pool2d_forward.default, (x, *args))
    unbatched = (x[0].float(), [2, 3], [], [1, 0], [1, 1], False)
    torch.library.opcheck(torch.ops.cnnext.max_pool2d_forward.default, unbatched)
    torch.library.opcheck(torch.ops.cnnext.max_pool2d_backward.default, (gy, i, list(x.shape), *args))
    x_cl = torch.randn(2, 17, 5, 6).contiguous(memory_format=torch.channels_last)
    torch.library.opcheck(torch.ops.cnnext.max_pool2d_forward.default, (x_cl, [3, 2], [1, 2], [1, 1], [1, 1], True))
    torch.library.opcheck(torch.ops.cnnext.max_pool2d.default, (x, *args))
    torch.library.opcheck(torch.ops.cnnext.max_pool2d.default, (x_cl, [3, 2], [1, 2], [1, 1], [1, 1], True))


@pytest.mark.parametrize("shape, k, s, p", [((64, 64, 10, 10), 2, 2, 0), ((48, 64, 12, 12), 3, 1, 1),
                                             ((16, 64, 8, 40), 3, 3, 1), ((64, 256, 3, 3), 3, 1, 1)],
                         ids=["OW5", "OW12", "W40-OW14-column-first", "3x3-planes"])
def test_short_rows_across_threads(shape, k, s, p):
    """Rows shorter than a vector store 16 lanes over the rows after them (the same thread's): with
    the rows split between threads, every output and index still equals torch's."""
    torch.manual_seed(6)
    x = torch.randn(shape)
    x[torch.rand(shape) < 0.01] = float("nan")
    y2, i2 = F.max_pool2d(x, k, s, p, return_indices=True)
    n = torch.get_num_threads()
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            with torch.no_grad():
                y = max_pool2d(x, k, s, p)  # values only
            yi, i = max_pool2d(x, k, s, p, return_indices=True)
            for a in (y, yi):
                assert torch.equal(a.nan_to_num(), y2.nan_to_num()) and torch.equal(a.isnan(), y2.isnan()), t
            assert torch.equal(i, i2), t
    finally:
        torch.set_num_threads(n)


def test_threads_deterministic():
    """Large enough to be split across threads: same results with 1 and 2 threads, and as torch's."""
    torch.manual_seed(3)
    x = torch.randn(4, 64, 21, 21)
    fwd_args = ([3, 3], [1, 1], [1, 1], [1, 1], False)
    n = torch.get_num_threads()
    out = {}
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            y, i = torch.ops.cnnext.max_pool2d_forward(x, *fwd_args)
            gy = torch.linspace(-1, 1, y.numel()).reshape(y.shape)
            out[t] = (y, i, torch.ops.cnnext.max_pool2d_backward(gy, i, list(x.shape), *fwd_args),
                      torch.ops.cnnext.max_pool2d(x.contiguous(memory_format=torch.channels_last), *fwd_args))
    finally:
        torch.set_num_threads(n)
    for a, b in zip(out[1], out[2]):
        assert torch.equal(a, b)
    y2, i2 = F.max_pool2d(x, 3, 1, 1, return_indices=True)
    assert torch.equal(out[2][0], y2) and torch.equal(out[2][1], i2) and torch.equal(out[2][3], y2)
    with on("emu"):
        gy = torch.linspace(-1, 1, y2.numel()).reshape(y2.shape)
        assert_rel_close(torch.ops.cnnext.max_pool2d_backward(gy, i2, list(x.shape), *fwd_args), out[2][2])


def test_torch_compile_fullgraph():
    def f(x):
        return torch.tanh(max_pool2d(x, 3, 2, 1, ceil_mode=True)).sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 3, 11, 10, requires_grad=True)
    out = compiled(x)
    out.backward()
    x2 = x.detach().clone().requires_grad_()
    ref = torch.tanh(F.max_pool2d(x2, 3, 2, 1, ceil_mode=True)).sum()
    ref.backward()
    assert_rel_close(out, ref)
    assert_rel_close(x.grad, x2.grad)
    with torch.no_grad():  # inference: the values-only op
        assert_rel_close(compiled(x.detach()), ref.detach())


def test_module_drop_in(backend):
    for kw in [dict(kernel_size=3, stride=2), dict(kernel_size=(3, 2), stride=1, padding=1, dilation=(1, 2),
                                                    ceil_mode=True, return_indices=True)]:
        m, ref = cnnext.nn.MaxPool2d(**kw), torch.nn.MaxPool2d(**kw)
        assert isinstance(m, torch.nn.MaxPool2d)
        assert repr(m) == repr(ref)
        assert m.state_dict().keys() == ref.state_dict().keys()
        x = torch.randn(2, 3, 9, 8)
        out, expected = m(x), ref(x)
        if kw.get("return_indices"):
            assert torch.equal(out[0], expected[0]) and torch.equal(out[1], expected[1])
        else:
            assert torch.equal(out, expected)


def test_empty_batch(backend):
    y, i = max_pool2d(torch.randn(0, 3, 6, 6, requires_grad=True), 2, return_indices=True)
    assert y.shape == i.shape == (0, 3, 3, 3)
    y.sum().backward()


@pytest.mark.parametrize(
    "x,kw,match",
    [
        (torch.ones(1, 1, 5, 5), dict(kernel_size=3, padding=2), r"max_pool2d: padding \(2, 2\) is too large"),
        (torch.ones(1, 1, 5, 5), dict(kernel_size=(3, 5), padding=(1, 3)), r"pad should be at most half"),
        (torch.ones(1, 1, 5, 5), dict(kernel_size=6), r"max_pool2d: kernel_size .* does not fit the input"),
        (torch.ones(1, 1, 5, 5), dict(kernel_size=3, dilation=3), r"max_pool2d: .*output size \(-?\d+, -?\d+\) is too"),
        (torch.ones(1, 1, 5, 5), dict(kernel_size=0), r"max_pool2d: kernel_size must be positive"),
        (torch.ones(1, 1, 5, 5), dict(kernel_size=(2, -1)), r"max_pool2d: kernel_size must be positive"),
        (torch.ones(1, 1, 5, 5), dict(kernel_size=2, stride=0), r"max_pool2d: stride must be positive"),
        (torch.ones(1, 1, 5, 5), dict(kernel_size=2, stride=(1, -2)), r"max_pool2d: stride must be positive"),
        (torch.ones(1, 1, 5, 5), dict(kernel_size=2, dilation=0), r"max_pool2d: dilation must be positive"),
        (torch.ones(1, 1, 5, 5), dict(kernel_size=2, padding=-1), r"max_pool2d: padding must be non-negative"),
        (torch.ones(1, 1, 5, 5), dict(kernel_size=(2, 2, 2)), r"max_pool2d: kernel_size must be an int or a pair"),
        (torch.ones(5, 5), dict(kernel_size=2), r"max_pool2d: input must be 3-D \(C, H, W\) or 4-D .* got 2-D"),
        (torch.ones(1, 1, 1, 5, 5), dict(kernel_size=2), r"max_pool2d: input must be 3-D .* got 5-D"),
        (torch.ones(1, 0, 5, 5), dict(kernel_size=2), r"max_pool2d: input must have non-zero C, H and W"),
        (torch.ones(1, 1, 5, 5, dtype=torch.int32), dict(kernel_size=2), r"max_pool2d: input must be float32,"),
        (torch.ones(1, 1, 5, 5, dtype=torch.float8_e5m2), dict(kernel_size=2), r"max_pool2d: input must be float32,"),
    ],
)
def test_bad_input(backend, x, kw, match):
    with pytest.raises((RuntimeError, TypeError, ValueError), match=match):
        max_pool2d(x, **kw)


def test_bad_backward_input(backend):
    x = torch.randn(1, 2, 6, 6)
    args = ([2, 2], [2, 2], [0, 0], [1, 1], False)
    y, i = torch.ops.cnnext.max_pool2d_forward(x, *args)
    bwd = torch.ops.cnnext.max_pool2d_backward
    with pytest.raises(TypeError, match=r"max_pool2d: indices must be int64"):
        bwd(y, i.int(), list(x.shape), *args)
    with pytest.raises(RuntimeError, match=r"max_pool2d: grad_output has shape"):
        bwd(y[:, :, :2], i[:, :, :2], list(x.shape), *args)
    with pytest.raises(RuntimeError, match=r"max_pool2d: indices has shape"):
        bwd(y, i[:1, :1], list(x.shape), *args)
    with pytest.raises(TypeError, match=r"max_pool2d: grad_output must be float32,"):
        bwd(y.to(torch.float8_e4m3fn), i, list(x.shape), *args)


def test_out_of_range_indices_cpu():
    """The CPU backward scatters through the indices, so it refuses ones outside the plane."""
    x = torch.randn(1, 2, 6, 6)
    args = ([2, 2], [2, 2], [0, 0], [1, 1], False)
    y, i = torch.ops.cnnext.max_pool2d_forward(x, *args)
    for bad in (36, -1):
        j = i.clone()
        j[0, 1, 2, 0] = bad
        with pytest.raises(RuntimeError, match=r"max_pool2d: indices must lie in \[0, H\*W\)"):
            torch.ops.cnnext.max_pool2d_backward(y, j, list(x.shape), *args)


@pytest.mark.parametrize(
    "args,kwargs,exc,match",
    [
        ((None, 2), {}, TypeError, r"max_pool2d: input must be a Tensor, got NoneType"),
        (([[1.0, 2.0]], 2), {}, TypeError, r"max_pool2d: input must be a Tensor, got list"),
        ((torch.ones(1, 4, 4), None), {}, TypeError, r"max_pool2d: kernel_size must be an int or a pair"),
        ((torch.ones(1, 4, 4), 2.5), {}, TypeError, r"max_pool2d: kernel_size must be an int or a pair"),
        ((torch.ones(1, 4, 4), True), {}, TypeError, r"max_pool2d: kernel_size must be an int or a pair"),
        ((torch.ones(1, 4, 4), 2), dict(padding=1.5), TypeError, r"max_pool2d: padding must be an int or a pair"),
        ((torch.ones(1, 4, 4), 2), dict(dilation=1.5), TypeError, r"max_pool2d: dilation must be an int or a pair"),
        ((torch.ones(1, 4, 4), 2), dict(stride="2"), TypeError, r"max_pool2d: stride must be an int or a pair"),
        ((torch.ones(1, 4, 4), 2), dict(dilation=(1, 2, 3)), ValueError, r"max_pool2d: dilation must be an int"),
        # in + 2p - d (k - 1) once could wrap around int64
        ((torch.ones(1, 2, 2), 2**63 - 1), {}, RuntimeError, r"max_pool2d: kernel_size must be below 2\^31"),
        ((torch.ones(1, 2, 2), 2), dict(dilation=2**62), RuntimeError, r"max_pool2d: dilation must be below 2\^31"),
        ((torch.ones(1, 2, 2), 3), dict(dilation=(1, 2**63 - 1), padding=1), RuntimeError,
         r"max_pool2d: dilation must be below 2\^31"),
        ((torch.ones(1, 2, 2), 2), dict(dilation=2**31 - 1), RuntimeError, r"max_pool2d: kernel_size .* does not fit"),
    ],
)
def test_bad_argument_values_and_types(args, kwargs, exc, match):
    """Regressions from the robustness fuzzer: every bad argument raises naming the op and the argument."""
    with pytest.raises(exc, match=match):
        max_pool2d(*args, **kwargs)


def test_argument_forms_as_torch():
    np = pytest.importorskip("numpy")
    x = torch.randn(1, 2, 7, 6)
    for kw in (dict(kernel_size=[3]), dict(kernel_size=np.int64(2)), dict(kernel_size=torch.tensor(2)),
               dict(kernel_size=[2, True]), dict(kernel_size=2, stride=[]), dict(kernel_size=3, dilation=(2,))):
        assert_rel_close(max_pool2d(x, **kw), F.max_pool2d(x, **kw))


@pytest.mark.parametrize("shape,kw", [
    ((2, 1, 1, 1), dict(kernel_size=2, padding=1, dilation=(2, 1))),  # every row window in the padding
    ((1, 1, 3, 1), dict(kernel_size=(1, 2), padding=(0, 1), dilation=(1, 2))),  # every column window
    ((3, 1, 4), dict(kernel_size=(2, 3), padding=1, dilation=(2, 1), stride=(1, 2), ceil_mode=True)),
])
def test_windows_entirely_in_padding(backend, shape, kw):
    """With dilation, a window can hold padding only: its output is -inf (as torch) and depends on no
    input, so it sends no gradient anywhere, on every backend (torch's own backward writes into the next
    plane there, so the gradient is checked against the windows that do hold input)."""
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    y = max_pool2d(x, **kw)
    ref = F.max_pool2d(x.detach(), **kw)
    assert torch.equal(torch.isinf(y), torch.isinf(ref)) and torch.isinf(y).any()
    assert_rel_close(y.detach()[~torch.isinf(ref)], ref[~torch.isinf(ref)])
    gy = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, gy)
    # the reference: torch's backward with the all-padding outputs' gradient zeroed (they still
    # write their zero somewhere, harmlessly)
    xr = x.detach().clone().requires_grad_(True)
    (gr,) = torch.autograd.grad(F.max_pool2d(xr, **kw), xr, gy.masked_fill(torch.isinf(ref), 0))
    assert_rel_close(gx, gr)


@pytest.mark.parametrize("name,value", [("stride", 2**62), ("stride", (1, 2**31)), ("kernel_size", 2**31),
                                        ("padding", (0, 2**31)), ("dilation", 2**40)])
def test_int32_arguments(backend, name, value):
    """torch takes the sizes as int32; larger ones are refused, naming the argument (a stride of 2^62 once
    hung the CPU kernel: (ow + l) * stride wrapped into a 2^62-step loop)."""
    x = torch.randn(2, 2, 4, 2)
    kw = {"kernel_size": (2, 1), "padding": (1, 0), "ceil_mode": True, name: value}
    with pytest.raises(RuntimeError, match=rf"max_pool2d: {name} must be below 2\^31"):
        max_pool2d(x, **kw)
    with pytest.raises(RuntimeError, match=rf"max_pool2d: {name} must be below 2\^31"):  # the fake kernel
        max_pool2d(x.to("meta"), **kw)
    assert_rel_close(max_pool2d(x, 2, stride=2**31 - 1, ceil_mode=True),  # the largest torch takes still works
                     F.max_pool2d(x, 2, stride=2**31 - 1, ceil_mode=True))
