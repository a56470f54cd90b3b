"""conv2d: against torch.nn.functional.conv2d (outputs, all three gradients), gradcheck, opcheck,
every conv of the d2l model family (scaled down), 'same'/'valid', unbatched, layouts, nn.Conv2d,
torch.compile, bad input."""
import random

import pytest
import torch
import torch.nn.functional as F

import cnnext
from cnnext.functional import conv2d
from conftest import assert_rel_close, on

# (name, (N, C, H, W), (K, kh, kw), stride, padding, dilation, groups)
D2L_CASES = [
    ("lenet_c1_5x5_pad2", (2, 1, 12, 12), (3, 5, 5), 1, 2, 1, 1),
    ("lenet_c2_5x5", (2, 3, 9, 9), (4, 5, 5), 1, 0, 1, 1),
    ("alexnet_11x11_s4", (1, 1, 27, 27), (4, 11, 11), 4, 1, 1, 1),
    ("alexnet_5x5_pad2", (1, 4, 6, 6), (6, 5, 5), 1, 2, 1, 1),
    ("vgg_resnet_3x3_pad1", (2, 3, 8, 8), (5, 3, 3), 1, 1, 1, 1),
    ("resnet_3x3_s2", (1, 4, 9, 9), (4, 3, 3), 2, 1, 1, 1),
    ("resnet_1x1_s2_downsample", (2, 4, 7, 7), (6, 1, 1), 2, 0, 1, 1),
    ("nin_googlenet_1x1", (2, 6, 5, 5), (4, 1, 1), 1, 0, 1, 1),
    ("nin_11x11_s4", (1, 1, 23, 23), (3, 11, 11), 4, 0, 1, 1),
    ("googlenet_7x7_s2_pad3", (1, 3, 16, 16), (4, 7, 7), 2, 3, 1, 1),
    ("googlenet_5x5_pad2", (1, 3, 7, 7), (2, 5, 5), 1, 2, 1, 1),
    ("5x5_s2", (1, 3, 11, 11), (4, 5, 5), 2, 2, 1, 1),
    ("densenet_3x3", (2, 5, 6, 6), (3, 3, 3), 1, 1, 1, 1),
    ("densenet_1x1_transition", (2, 7, 6, 6), (3, 1, 1), 1, 0, 1, 1),
    ("groups2", (2, 4, 6, 7), (6, 3, 3), 1, 1, 1, 2),
    ("groups3_1x1", (1, 6, 5, 4), (9, 1, 1), 1, 0, 1, 3),
    ("depthwise", (1, 5, 7, 6), (5, 3, 3), 1, 1, 1, 5),
    ("depthwise_x2", (2, 3, 6, 6), (6, 3, 3), (2, 1), 1, 1, 3),
    ("dilation2", (1, 3, 9, 10), (4, 3, 3), 1, 2, 2, 1),
    ("dilation_2x3", (1, 2, 11, 12), (3, 3, 2), 1, (1, 2), (2, 3), 1),
    ("pad_gt_half_kernel", (1, 2, 4, 5), (3, 3, 3), 1, (3, 2), 1, 1),
    ("kernel_eq_padded_input", (1, 2, 3, 4), (3, 5, 6), 1, 1, 1, 1),
    ("stride_gt_kernel", (1, 2, 9, 10), (3, 2, 2), 3, 0, 1, 1),
    ("asym_1x3", (2, 3, 6, 9), (4, 1, 3), 1, (0, 1), 1, 1),
    ("asym_5x1_s2x1", (1, 2, 8, 5), (3, 5, 1), (2, 1), (2, 0), 1, 1),
    ("c1_k1", (1, 1, 5, 5), (1, 3, 3), 1, 1, 1, 1),
    ("batch1_1x1_1x1", (1, 1, 1, 1), (1, 1, 1), 1, 0, 1, 1),
    ("1x1_over_tiles", (2, 40, 9, 9), (70, 1, 1), 1, 0, 1, 1),
    ("3x3_over_tiles", (1, 9, 10, 9), (67, 3, 3), 1, 1, 1, 1),
    ("grid_stride_columns", (1, 1, 66, 66), (1, 1, 1), 1, 0, 1, 1),  # > 64 column tiles: the emulator's grid cap
]


def _random_cases(n, seed=0):
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        groups = rng.choice([1, 1, 2, 3])
        C, K = groups * rng.randint(1, 3), groups * rng.randint(1, 3)
        kh, kw = rng.randint(1, 5), rng.randint(1, 5)
        sh, sw = rng.randint(1, 3), rng.randint(1, 3)
        dh, dw = rng.randint(1, 2), rng.randint(1, 2)
        ph, pw = rng.randint(0, 3), rng.randint(0, 3)
        H = max(1, dh * (kh - 1) + 1 - 2 * ph) + rng.randint(0, 6)
        W = max(1, dw * (kw - 1) + 1 - 2 * pw) + rng.randint(0, 6)
        N = rng.randint(1, 3)
        cases.append((f"random{i}", (N, C, H, W), (K, kh, kw), (sh, sw), (ph, pw), (dh, dw), groups))
    return cases


CASES = D2L_CASES + _random_cases(10)


def _make(xs, ws, groups, dtype, seed=0, bias=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(xs, dtype=dtype, generator=g)
    K, kh, kw = ws
    w = torch.randn(K, xs[-3] // groups, kh, kw, dtype=dtype, generator=g)
    b = torch.randn(K, dtype=dtype, generator=g) if bias else None
    return x, w, b


def _check_against_torch(x, w, b, grad_seed=1, **kw):
    """Output and the gradients of input, weight and bias of conv2d vs F.conv2d."""
    leaves = [t.detach().clone().requires_grad_() for t in (x, w, b) if t is not None]
    refs = [t.detach().clone().requires_grad_() for t in (x, w, b) if t is not None]
    y = conv2d(*leaves, **kw) if b is not None else conv2d(*leaves, None, **kw)
    y2 = F.conv2d(*refs, **kw) if b is not None else F.conv2d(*refs, None, **kw)
    assert_rel_close(y, y2, what="output")
    gy = torch.randn(y2.shape, dtype=y2.dtype, generator=torch.Generator().manual_seed(grad_seed))
    grads = torch.autograd.grad(y, leaves, gy)
    grads2 = torch.autograd.grad(y2, refs, gy)
    for name, a, e in zip(["grad input", "grad weight", "grad bias"], grads, grads2):
        assert_rel_close(a, e, what=name)
    return y


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name,xs,ws,stride,padding,dilation,groups", CASES, ids=[c[0] for c in CASES])
def test_matches_torch(backend, name, xs, ws, stride, padding, dilation, groups, dtype):
    x, w, b = _make(xs, ws, groups, dtype, seed=sum(map(ord, name)))
    _check_against_torch(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)


def test_many_groups(backend):
    # > 64 groups: the emulator's grid cap, so the kernels' grid-stride loop over groups really loops.
    # (float32 only: torch's own float64 depthwise conv on the CPU takes seconds here)
    x, w, b = _make((1, 65, 3, 3), (65, 3, 3), 65, torch.float32)
    _check_against_torch(x, w, b, padding=1, groups=65)


@pytest.mark.parametrize("name", ["lenet_c1_5x5_pad2", "alexnet_11x11_s4", "groups2", "dilation_2x3", "asym_5x1_s2x1",
                                  "depthwise_x2", "nin_googlenet_1x1"])
def test_direct_fallback_kernels(name, monkeypatch):
    """The CUDA launchers fall back to 64-bit direct kernels for images over 2^31 elements; run them here."""
    _, xs, ws, stride, padding, dilation, groups = next(c for c in CASES if c[0] == name)
    monkeypatch.setenv("CNNEXT_CONV2D_DIRECT", "1")
    x, w, b = _make(xs, ws, groups, torch.float64)
    with on("emu"):
        _check_against_torch(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)


@pytest.mark.parametrize(
    "xs,ws,kw",
    [
        ((1, 6, 7, 9), (130, 3, 3), dict(padding=1)),  # 130 rows: a full and a partial 128-row tile
        ((2, 130, 5, 4), (3, 1, 1), dict()),  # 1x1 (plain GEMM); grad input has 130 rows
        ((1, 20, 9, 8), (132, 2, 3), dict(stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=2)),
    ],
)
def test_128_tiles(xs, ws, kw, monkeypatch):
    """float GEMMs with enough rows and columns run 128x128 tiles on a GPU; force them for small shapes."""
    monkeypatch.setenv("CNNEXT_CONV2D_TILE", "128")
    x, w, b = _make(xs, ws, kw.get("groups", 1), torch.float32)
    with on("emu"):
        _check_against_torch(x, w, b, **kw)


@pytest.mark.parametrize("mode", ["planes", "auto", "im2col"])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize(
    "xs,ws,kw",
    [
        ((2, 3, 40, 40), (5, 3, 3), dict(padding=1)),  # planes, one image's row cut into segments
        ((5, 20, 12, 12), (9, 3, 3), dict(padding=1)),  # planes or im2col rows, several images per chunk
        ((6, 9, 6, 6), (7, 3, 3), dict(padding=1)),  # im2col rows (small image)
        ((3, 6, 3, 3), (70, 3, 3), dict(padding=1)),  # im2col rows, gW large next to the batch: split over k
        ((1, 4, 9, 9), (10, 3, 3), dict(padding=1)),  # batch smaller than the threads: split over k
        ((4, 5, 13, 11), (6, 3, 3), dict(stride=2, padding=1)),  # stride phases
        ((2, 3, 29, 31), (4, 7, 7), dict(stride=2, padding=3)),
        ((3, 6, 25, 27), (4, 11, 11), dict(stride=4, padding=1)),
        ((4, 17, 7, 7), (19, 1, 1), dict()),  # 1x1: no padding columns
        ((4, 8, 9, 9), (6, 1, 1), dict(stride=2)),
        ((3, 8, 10, 7), (6, 3, 2), dict(stride=(1, 3), padding=(2, 0), groups=2)),
        ((2, 4, 5, 5), (4, 2, 2), dict(stride=3, padding=2)),  # stride > kernel: unused phases
    ],
)
def test_grad_weight_paths(xs, ws, kw, threads, mode, monkeypatch):
    """grad weight on the CPU (csrc/cpu/conv2d_grad_weight.cpp): padded phase planes or im2col rows
    (CNNEXT_CONV2D_GW forces a variant), images per chunk, row segments, partial sums per thread or rows of gW
    per thread, strides, groups; float32 and float64."""
    if mode != "auto":
        monkeypatch.setenv("CNNEXT_CONV2D_GW", mode)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for dtype in (torch.float32, torch.float64):
            x, w, b = _make(xs, ws, kw.get("groups", 1), dtype, seed=threads)
            _check_against_torch(x, w, b, **kw)
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("xs,ws,kw", [((2, 8, 3, 3), (70, 3, 3), dict(padding=1)),  # rows split, partial panel
                                      ((3, 16, 4, 4), (64, 1, 1), dict()),
                                      ((2, 32, 6, 5), (96, 3, 3), dict(stride=2, padding=1))])
def test_few_columns_many_rows(xs, ws, kw, threads):
    """Small images with many output channels: the im2col forward (and the transposed grad input) split the
    rows of their one block of columns among the threads."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for dtype in (torch.float32, torch.float64):
            x, w, b = _make(xs, ws, 1, dtype, seed=threads)
            _check_against_torch(x, w, b, **kw)
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("xs,ws,kw", [((4, 64, 30, 30), (20, 3, 3), dict(padding=1, groups=2)),  # 2 kc blocks
                                      ((2, 24, 45, 41), (13, 5, 5), dict(padding=2))])
def test_many_columns_packed_weights(xs, ws, kw):
    """Batches of > 3072 output pixels: the im2col forward and the transposed grad input pack the weights,
    write panels inside one image straight into the output (the bias first) and the rest through the C
    buffer; partial panels of rows, groups, several blocks of the reduction."""
    for dtype in (torch.float32, torch.float64):
        x, w, b = _make(xs, ws, kw.get("groups", 1), dtype, seed=5)
        _check_against_torch(x, w, b, **kw)


def test_forward_bit_identical_across_threads():
    """The im2col forward (and the transposed grad input) sums every output in one order, bias first, whichever
    thread, block of columns or path (straight into y, or through the C buffer) computes it."""
    old = torch.get_num_threads()
    try:
        for xs, ws, kw in [((4, 64, 30, 30), (20, 3, 3), dict(padding=1, groups=2)), ((3, 16, 7, 9), (70, 3, 3), dict(padding=1)),
                           ((2, 8, 3, 3), (72, 3, 3), dict(padding=1)), ((5, 24, 13, 11), (33, 1, 1), dict())]:
            x, w, b = _make(xs, ws, kw.get("groups", 1), torch.float32, seed=3)
            gy = torch.randn(F.conv2d(x, w, b, **kw).shape)
            outs = []
            for n in (1, 2, 3):
                torch.set_num_threads(n)
                xg = x.clone().requires_grad_()
                y = conv2d(xg, w, b, **kw)
                outs.append((y.detach(), torch.autograd.grad(y, xg, gy)[0]))
            for y, gx in outs[1:]:
                assert torch.equal(y, outs[0][0]) and torch.equal(gx, outs[0][1]), (xs, ws, kw)
    finally:
        torch.set_num_threads(old)


GW_VARIANTS = ["direct", "pointwise", "im2col_nhwc", "im2col", "planes", "winograd"]
# channel counts that are multiples of the vector width (the channels-last variant) with padding, strides,
# dilation and groups; 10 output channels leave a partial panel of MR rows
GW_SHAPES = [
    ((3, 32, 6, 5), (10, 3, 3), dict(padding=1)),
    ((2, 48, 9, 7), (20, 3, 3), dict(stride=2, padding=(1, 2), dilation=(2, 1))),
    ((2, 64, 5, 6), (18, 2, 3), dict(padding=(0, 2), groups=2)),
    ((1, 16, 11, 11), (5, 5, 5), dict(padding=2)),
    ((5, 32, 4, 4), (40, 1, 1), dict()),
    ((2, 16, 7, 9), (8, 1, 1), dict(stride=2)),
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("mode", GW_VARIANTS)
def test_grad_weight_variants(mode, threads, monkeypatch):
    """Every grad-weight variant, forced by name, on the shapes of GW_SHAPES it runs on (a variant that
    does not run on a shape raises, and is skipped there; each runs on at least one)."""
    monkeypatch.setenv("CNNEXT_CONV2D_GW", mode)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    ran = 0
    try:
        for i, (xs, ws, kw) in enumerate(GW_SHAPES):
            for dtype in (torch.float32, torch.float64):
                x, w, b = _make(xs, ws, kw.get("groups", 1), dtype, seed=i)
                try:
                    _check_against_torch(x, w, b, **kw)
                except RuntimeError as e:
                    assert "does not run" in str(e), e
                    continue
                ran += 1
    finally:
        torch.set_num_threads(old)
    assert ran > 0, f"{mode} ran on none of the shapes"


def test_no_bias_and_partial_grads(backend):
    x, w, b = _make((2, 4, 7, 6), (6, 3, 3), 2, torch.float64)
    _check_against_torch(x, w, None, padding=1, groups=2)
    # only the weight (and bias) need a gradient; then only the bias
    w_ = w.clone().requires_grad_()
    b_ = b.clone().requires_grad_()
    conv2d(x, w_, b_, padding=1, groups=2).sum().backward()
    w2, b2 = w.clone().requires_grad_(), b.clone().requires_grad_()
    F.conv2d(x, w2, b2, padding=1, groups=2).sum().backward()
    assert_rel_close(w_.grad, w2.grad)
    assert_rel_close(b_.grad, b2.grad)
    b_ = b.clone().requires_grad_()
    (gb,) = torch.autograd.grad(conv2d(x, w, b_, padding=1, groups=2).sum(), [b_])
    assert_rel_close(gb, b2.grad)


@pytest.mark.parametrize(
    "xs,ws,kw",
    [
        ((1, 4, 5, 4), (4, 3, 2), dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)),
        ((2, 3, 4, 3), (2, 1, 1), dict(stride=2)),
        ((2, 4, 5), (3, 2, 2), dict(padding="same")),
    ],
)
def test_gradcheck(backend, xs, ws, kw):
    x, w, b = _make(xs, ws, kw.get("groups", 1), torch.float64)
    args = [t.requires_grad_() for t in (x, w, b)]
    assert torch.autograd.gradcheck(lambda x, w, b: conv2d(x, w, b, **kw), args)


@pytest.mark.parametrize(
    "xs,ws,kw",
    [
        ((1, 4, 4, 3), (2, 2, 2), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)),
        ((2, 3, 3), (2, 1, 2), dict(padding="same")),
    ],
)
def test_gradgradcheck(backend, xs, ws, kw):
    x, w, b = _make(xs, ws, kw.get("groups", 1), torch.float64)
    args = [t.requires_grad_() for t in (x, w, b)]
    assert torch.autograd.gradgradcheck(lambda x, w, b: conv2d(x, w, b, **kw), args)


def test_opcheck(backend):
    cfgs = [  # (input shape, weight shape, bias, stride, padding, dilation, groups)
        ((2, 4, 7, 6), (6, 2, 3, 2), True, [2, 1], [1, 2], [1, 2], 2),
        ((3, 5, 5), (2, 3, 1, 1), False, [1, 1], [0, 0], [1, 1], 1),
    ]
    for xs, wsh, has_b, stride, padding, dilation, groups in cfgs:
        x = torch.randn(xs, dtype=torch.float64)
        w = torch.randn(wsh, dtype=torch.float64)
        b = torch.randn(wsh[0], dtype=torch.float64) if has_b else None
        y = F.conv2d(x, w, b, stride, padding, dilation, groups)
        gy = torch.randn_like(y)
        conv = (stride, padding, dilation, groups)
        torch.library.opcheck(torch.ops.cnnext.conv2d_forward.default, (x, w, b, *conv))
        torch.library.opcheck(torch.ops.cnnext.conv2d_backward_input.default, (gy, w, list(xs), *conv))
        torch.library.opcheck(torch.ops.cnnext.conv2d_backward_weight.default, (gy, x, list(wsh), *conv, has_b))


def test_noncontiguous_and_channels_last(backend):
    x, w, b = _make((2, 6, 7, 9), (4, 3, 3), 2, torch.float32)
    xt = x.transpose(2, 3).contiguous().transpose(2, 3)  # same values, H/W strides swapped
    assert not xt.is_contiguous()
    _check_against_torch(xt, w, b, padding=1, groups=2)
    xs = torch.randn(2, 6, 14, 9)[:, :, ::2, :]  # strided view
    _check_against_torch(xs, w, b, padding=(0, 1), groups=2)
    x_cl = x.to(memory_format=torch.channels_last)
    w_cl = w.to(memory_format=torch.channels_last)
    assert not x_cl.is_contiguous()
    _check_against_torch(x_cl, w_cl, b, stride=2, groups=2)
    w_nc = torch.randn(3, 4, 3, 3).transpose(0, 1)  # (4, 3, 3, 3), non-contiguous weight
    _check_against_torch(x, w_nc, b, groups=2)


@pytest.mark.parametrize(
    "ws,dilation",
    [((3, 3), 1), ((2, 2), 1), ((4, 3), 1), ((2, 5), (1, 2)), ((3, 2), 2), ((1, 1), 1)],
)
def test_same_and_valid(backend, ws, dilation):
    x, w, b = _make((2, 3, 7, 10), (4, *ws), 1, torch.float64)
    y = _check_against_torch(x, w, b, padding="same", dilation=dilation)
    assert y.shape[-2:] == x.shape[-2:]
    _check_against_torch(x, w, b, padding="valid", dilation=dilation)


def test_unbatched(backend):
    x, w, b = _make((3, 7, 6), (4, 3, 3), 1, torch.float64)
    y = _check_against_torch(x, w, b, padding=1, stride=(1, 2))
    assert y.shape == (4, 7, 3)
    _check_against_torch(x, w, b, padding="same")


def test_argument_forms(backend):
    x, w, b = _make((2, 2, 9, 8), (3, 3, 3), 1, torch.float64)
    ref = F.conv2d(x, w, b, stride=2, padding=1, dilation=1)
    for kw in [dict(stride=(2, 2), padding=(1, 1)), dict(stride=[2], padding=[1], dilation=(1,)),
               dict(stride=2, padding=1, dilation=[1, 1])]:
        assert_rel_close(conv2d(x, w, b, **kw), ref)
    assert_rel_close(conv2d(x, w, b, 2, 1, 1, 1), ref)  # positional, as F.conv2d


def test_empty_batch(backend):
    x = torch.randn(0, 3, 6, 6, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    y = conv2d(x, w, b, padding=1)
    assert y.shape == F.conv2d(x, w, b, padding=1).shape == (0, 4, 6, 6)
    y.sum().backward()
    assert x.grad.shape == x.shape
    assert torch.equal(w.grad, torch.zeros_like(w)) and torch.equal(b.grad, torch.zeros_like(b))


def test_deterministic_and_backends_agree():
    x, w, b = _make((2, 6, 9, 8), (5, 3, 3), 1, torch.float32)
    gy = torch.randn(2, 5, 9, 8)
    results = {}
    for be in ["cpu", "emu", "emu"]:
        with on(be):
            xs, ws, bs = (t.clone().requires_grad_() for t in (x, w, b))
            y = conv2d(xs, ws, bs, padding=1)
            grads = torch.autograd.grad(y, (xs, ws, bs), gy)
            if be in results:  # the second emulated run: bit-identical
                for a, e in zip((y, *grads), results[be]):
                    assert torch.equal(a, e)
            results[be] = (y, *grads)
    for a, e in zip(results["cpu"], results["emu"]):
        assert_rel_close(a, e)


def test_nn_conv2d_drop_in(backend):
    torch.manual_seed(0)
    for kwargs in [
        dict(in_channels=4, out_channels=6, kernel_size=3, padding=1),
        dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2),
             groups=2, bias=False),
        dict(in_channels=4, out_channels=4, kernel_size=3, padding="same", groups=4),
        dict(in_channels=4, out_channels=2, kernel_size=3, padding=2, padding_mode="reflect"),
        dict(in_channels=4, out_channels=2, kernel_size=(3, 5), padding=(1, 2), padding_mode="circular"),
        dict(in_channels=4, out_channels=2, kernel_size=2, padding=1, padding_mode="replicate", stride=2),
    ]:
        ref = torch.nn.Conv2d(**kwargs, dtype=torch.float64)
        mine = cnnext.nn.Conv2d(**kwargs, dtype=torch.float64)
        assert isinstance(mine, torch.nn.Conv2d)
        assert repr(mine) == repr(ref)
        assert mine.state_dict().keys() == ref.state_dict().keys()
        mine.load_state_dict(ref.state_dict())
        x = torch.randn(2, 4, 7, 8, dtype=torch.float64, requires_grad=True)
        x2 = x.detach().clone().requires_grad_()
        y, y2 = mine(x), ref(x2)
        assert_rel_close(y, y2, what=str(kwargs))
        y.sum().backward()
        y2.sum().backward()
        assert_rel_close(x.grad, x2.grad)
        assert_rel_close(mine.weight.grad, ref.weight.grad)
        if ref.bias is not None:
            assert_rel_close(mine.bias.grad, ref.bias.grad)
    # same initialisation as torch.nn.Conv2d from the same seed
    torch.manual_seed(3)
    a = cnnext.nn.Conv2d(3, 5, 3)
    torch.manual_seed(3)
    r = torch.nn.Conv2d(3, 5, 3)
    assert torch.equal(a.weight, r.weight) and torch.equal(a.bias, r.bias)


def test_torch_compile_fullgraph():
    def f(x, w, b):
        return torch.relu(conv2d(x, w, b, stride=2, padding=1)).sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    x, w, b = (t.requires_grad_() for t in _make((2, 3, 9, 9), (4, 3, 3), 1, torch.float32))
    out = compiled(x, w, b)
    out.backward()
    refs = [t.detach().clone().requires_grad_() for t in (x, w, b)]
    ref = torch.relu(F.conv2d(*refs, stride=2, padding=1)).sum()
    ref.backward()
    assert_rel_close(out, ref)
    for a, e in zip((x, w, b), refs):
        assert_rel_close(a.grad, e.grad)


def _bad(xs, ws, bs=None, dtype=torch.float32, wdtype=None, bdtype=None, wdevice="cpu", **kw):
    def make():
        x = torch.ones(xs, dtype=dtype)
        w = torch.ones(ws, dtype=wdtype or dtype, device=wdevice)
        b = None if bs is None else torch.ones(bs, dtype=bdtype or dtype)
        return x, w, b, kw

    return make


@pytest.mark.parametrize(
    "make,match",
    [
        (_bad((1, 2, 5, 5), (4, 2, 3)), r"conv2d: weight must be 4-D \(out, in/groups, kh, kw\), got 3-D"),
        (_bad((2, 5, 5), (4, 2, 3, 3, 1)), r"conv2d: weight must be 4-D"),
        (_bad((5, 5), (4, 2, 3, 3)), r"conv2d: input must be 3-D \(C, H, W\) or 4-D"),
        (_bad((1, 1, 2, 5, 5), (4, 2, 3, 3)), r"conv2d: input must be 3-D"),
        (_bad((1, 3, 5, 5), (4, 1, 3, 3), groups=2), r"conv2d: input channels \(3\) must be divisible by groups"),
        (_bad((1, 4, 5, 5), (3, 2, 3, 3), groups=2), r"conv2d: weight out channels \(3\) must be divisible by groups"),
        (_bad((1, 3, 5, 5), (4, 2, 3, 3)), r"conv2d: weight must have shape \(out, in/groups, kh, kw\)"),
        (_bad((1, 2, 5, 5), (4, 2, 3, 3), stride=0), r"conv2d: stride must be positive"),
        (_bad((1, 2, 5, 5), (4, 2, 3, 3), stride=(1, -1)), r"conv2d: stride must be positive"),
        (_bad((1, 2, 5, 5), (4, 2, 3, 3), dilation=0), r"conv2d: dilation must be positive"),
        # padding='same' derives the padding from the dilation: a negative one must still be named
        (_bad((2, 1, 2, 5), (2, 1, 1, 3), padding="same", dilation=-1), r"conv2d: dilation must be positive"),
        (_bad((2, 1, 5, 5), (2, 1, 2, 3), padding="same", dilation=(1, 0)), r"conv2d: dilation must be positive"),
        (_bad((1, 2, 5, 5), (4, 2, 3, 3), padding=-1), r"conv2d: padding must be non-negative"),
        (_bad((1, 2, 5, 5), (4, 2, 3, 3), groups=0), r"conv2d: groups must be positive"),
        (_bad((1, 2, 5, 5), (4, 2, 3, 3), stride=(1, 2, 3)), r"conv2d: stride must be an int or a pair"),
        (_bad((1, 2, 3, 3), (4, 2, 5, 5)), r"conv2d: weight's kernel size .* larger than the padded input"),
        (_bad((1, 2, 3, 6), (4, 2, 2, 2), dilation=3), r"conv2d: weight's kernel size .* larger than the padded"),
        (_bad((1, 2, 5, 5), (4, 2, 3, 3), stride=2, padding="same"), r"conv2d: padding='same' is not supported"),
        (_bad((1, 2, 5, 5), (4, 2, 3, 3), padding="full"), r"conv2d: padding must be 'valid', 'same'"),
        (_bad((1, 2, 5, 5), (4, 2, 3, 3), dtype=torch.int32), r"conv2d: input must be float32, float64, bfloat16 or"),
        (_bad((1, 2, 5, 5), (4, 2, 3, 3), dtype=torch.float8_e5m2), r"conv2d: input must be float32, float64, bfloat16"),
        (_bad((1, 2, 5, 5), (4, 2, 3, 3), wdtype=torch.float64), r"conv2d: weight has dtype"),
        (_bad((1, 2, 5, 5), (4, 2, 3, 3), (4,), bdtype=torch.float64), r"conv2d: bias has dtype"),
        (_bad((1, 2, 5, 5), (4, 2, 3, 3), (3,)), r"conv2d: bias must be 1-D of size out_channels \(4\)"),
        (_bad((1, 2, 5, 5), (4, 2, 3, 3), (4, 1)), r"conv2d: bias must be 1-D"),
        (_bad((1, 2, 5, 5), (4, 2, 3, 3), wdevice="meta"), r"conv2d: weight is on meta"),
        (_bad((1, 0, 5, 5), (4, 0, 3, 3)), r"conv2d: input must have at least one channel"),
        (_bad((1, 2, 0, 5), (4, 2, 3, 3), padding=2), r"conv2d: input must have non-zero height and width"),
        (_bad((1, 2, 5, 5), (0, 2, 3, 3)), r"conv2d: weight must have at least one output channel"),
    ],
)
def test_bad_input(backend, make, match):
    x, w, b, kw = make()
    with pytest.raises((RuntimeError, TypeError, ValueError), match=match):
        conv2d(x, w, b, **kw)


def test_bad_backward_args():
    w = torch.randn(4, 2, 3, 3)
    gy = torch.randn(1, 4, 3, 3)
    with pytest.raises(RuntimeError, match=r"conv2d: grad_output has shape"):
        torch.ops.cnnext.conv2d_backward_input(gy, w, [1, 2, 6, 5], [1, 1], [0, 0], [1, 1], 1)
    with pytest.raises(RuntimeError, match=r"conv2d: grad_output has shape"):
        torch.ops.cnnext.conv2d_backward_weight(gy, torch.randn(1, 2, 5, 6), [4, 2, 3, 3], [1, 1], [0, 0], [1, 1], 1,
                                                True)


@pytest.mark.parametrize(
    "args,kwargs,exc,match",
    [
        ((None, torch.ones(1, 1, 1, 1)), {}, TypeError, r"conv2d: input must be a Tensor, got NoneType"),
        ((torch.ones(1, 1, 2, 2), [[1.0]]), {}, TypeError, r"conv2d: weight must be a Tensor, got list"),
        ((torch.ones(1, 1, 2, 2), torch.ones(1, 1, 1, 1), 2.5), {}, TypeError, r"conv2d: bias must be a Tensor"),
        ((torch.ones(1, 1, 2, 2), torch.ones(1, 1, 1, 1)), dict(padding=1.5), TypeError,
         r"conv2d: padding must be an int or a pair"),
        ((torch.ones(1, 1, 2, 2), torch.ones(1, 1, 1, 1)), dict(dilation=1.5), TypeError,
         r"conv2d: dilation must be an int or a pair"),
        ((torch.ones(1, 1, 2, 2), torch.ones(1, 1, 1, 1)), dict(stride=None), TypeError,
         r"conv2d: stride must be an int or a pair"),
        ((torch.ones(1, 1, 2, 2), torch.ones(1, 1, 1, 1)), dict(stride=(1, 2, 3)), ValueError,
         r"conv2d: stride must be an int or a pair"),
        ((torch.ones(1, 1, 2, 2), torch.ones(1, 1, 1, 1)), dict(groups=1.5), TypeError, r"conv2d: groups must be an int"),
        ((torch.ones(1, 1, 2, 2), torch.ones(1, 1, 1, 1)), dict(groups=True), TypeError, r"conv2d: groups must be an int"),
        # dilation * (k - 1) and H + 2 * padding once could wrap around int64
        ((torch.ones(1, 1, 2, 2), torch.ones(1, 1, 3, 3)), dict(dilation=2**62, padding=1), RuntimeError,
         r"conv2d: weight's kernel size .* with dilation .* larger than the padded input"),
        ((torch.ones(1, 1, 2, 2), torch.ones(1, 1, 3, 3)), dict(dilation=(1, 2**63 - 1), padding=1), RuntimeError,
         r"conv2d: weight's kernel size .* with dilation"),
        ((torch.ones(1, 1, 2, 2), torch.ones(1, 1, 3, 3)), dict(padding=2**62), RuntimeError,
         r"conv2d: padding .* too large"),
        ((torch.ones(1, 1, 2, 2), torch.ones(1, 1, 3, 3)), dict(padding=2**63 - 1), RuntimeError,
         r"conv2d: padding .* too large"),
    ],
)
def test_bad_argument_values_and_types(args, kwargs, exc, match):
    """Regressions from the robustness fuzzer: every bad argument raises naming the op and the argument."""
    with pytest.raises(exc, match=match):
        conv2d(*args, **kwargs)


def test_argument_forms_as_torch():
    """numpy / 0-d tensor ints and bools inside a list pass, as in F.conv2d."""
    np = pytest.importorskip("numpy")
    x, w, b = _make((1, 2, 7, 6), (3, 3, 3), 1, torch.float64)
    for kw in (dict(stride=np.int64(2)), dict(padding=torch.tensor(1)), dict(dilation=[2, True]),
               dict(groups=np.int64(1), stride=(np.int64(1), 2))):
        assert_rel_close(conv2d(x, w, b, **kw), F.conv2d(x, w, b, **kw))


# The bias grad is two-stage on the CUDA backend (csrc/cuda/conv2d.cu, reduce.h): each channel's N*P*Q
# values in fixed chunks of >= 2048.  (4, 2, 32, 32) padded 3x3: 4096 per channel, 2 splits, 4-wide
# vectors (P*Q = 1024); (3, 2, 37, 41): 4551, 3 splits, scalar (P*Q odd); stride 2 runs the strided
# grad input too.
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("xs,ws,stride", [((4, 2, 32, 32), (3, 3, 3), 1), ((3, 2, 37, 41), (2, 3, 3), 1),
                                          ((2, 3, 95, 97), (2, 3, 3), 2)])
def test_split_bias_grad(backend, xs, ws, stride, dtype):
    x, w, b = _make(xs, ws, 1, dtype)
    _check_against_torch(x, w, b, stride=stride, padding=1)


def test_split_bias_grad_deterministic():
    x, w, b = _make((3, 2, 37, 41), (2, 3, 3), 1, torch.float32)
    gy = torch.randn(3, 2, 37, 41, generator=torch.Generator().manual_seed(2))
    with on("emu"):
        runs = [torch.ops.cnnext.conv2d_backward_weight(gy, x, list(w.shape), [1, 1], [1, 1], [1, 1], 1, True)
                for _ in range(2)]
    for a, e in zip(*runs):
        assert torch.equal(a, e)


# Strided grad input by phase decomposition (csrc/cuda/conv2d.cu, kBwdInS; conv2d_igemm.h phase_dim):
# sh*sw dense stride-1 sub-GEMMs, one per phase (h + pad) % sh, (w + pad) % sw, over that phase's taps
# only.  Odd sizes; dilation sharing a factor with the stride (gcd > 1: some phases have no taps, their
# rows of grad input are 0); a kernel smaller than the stride (phases without taps); an input smaller
# than the stride (phases without rows); padding above the stride; groups, depthwise; 1x1.
# (name, (N, C, H, W), (K, kh, kw), stride, padding, dilation, groups)
STRIDED_CASES = [
    ("s2_3x3_odd", (2, 3, 11, 13), (4, 3, 3), 2, 1, 1, 1),
    ("s3_5x5_odd", (1, 2, 17, 14), (3, 5, 5), 3, 2, 1, 1),
    ("s2_dil2_gcd2", (1, 3, 13, 12), (2, 3, 3), 2, 2, 2, 1),
    ("s3_dil2_groups2", (2, 4, 14, 16), (6, 3, 3), 3, (1, 2), 2, 2),
    ("s2x3_dil1x2_groups2", (1, 4, 15, 19), (4, 3, 4), (2, 3), (2, 1), (1, 2), 2),
    ("s3_k2_phase_without_taps", (1, 2, 10, 11), (3, 2, 2), 3, 0, 1, 1),
    ("s2_1x1", (2, 4, 9, 7), (5, 1, 1), 2, 0, 1, 1),
    ("s3_depthwise", (1, 3, 13, 10), (3, 3, 3), 3, 1, 1, 3),
    ("s3_h_below_stride", (1, 2, 2, 8), (2, 1, 3), 3, 0, 1, 1),
    ("s2_pad_above_stride", (1, 2, 9, 9), (3, 5, 5), 2, 4, 1, 1),
    ("s3_dil3_gcd3", (1, 2, 16, 17), (2, 3, 2), 3, 3, 3, 1),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name,xs,ws,stride,padding,dilation,groups", STRIDED_CASES, ids=[c[0] for c in STRIDED_CASES])
def test_strided_grad_input_phases(backend, name, xs, ws, stride, padding, dilation, groups, dtype):
    x, w, b = _make(xs, ws, groups, dtype)
    _check_against_torch(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)


@pytest.mark.parametrize("tile", ["64", "128"])
@pytest.mark.parametrize("name", ["s3_dil2_groups2", "s2x3_dil1x2_groups2", "s3_k2_phase_without_taps"])
def test_strided_grad_input_phases_tiles(name, tile, monkeypatch):
    """Both SIMT tiles (the GEMM rows are few: the 128 tile runs only when forced)."""
    _, xs, ws, stride, padding, dilation, groups = next(c for c in STRIDED_CASES if c[0] == name)
    x, w, b = _make(xs, ws, groups, torch.float64)
    monkeypatch.setenv("CNNEXT_CONV2D_TILE", tile)
    with on("emu"):
        _check_against_torch(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)


def test_strided_grad_input_gpu_grid():
    """Stride 2 with more than 64 column tiles per phase, on the GPU's grid (one block per tile), and
    the same bits as the emulator's capped grid (grid-stride loops over tiles and phases)."""
    from conftest import emu_grid_cap
    x, w, b = _make((2, 3, 161, 163), (4, 3, 3), 1, torch.float32)
    gy = torch.randn(2, 4, 81, 82, generator=torch.Generator().manual_seed(4))
    args = (gy, w, list(x.shape), [2, 2], [1, 1], [1, 1], 1)
    with on("emu"), emu_grid_cap(65535):
        big = torch.ops.cnnext.conv2d_backward_input(*args)
    with on("emu"):
        capped = torch.ops.cnnext.conv2d_backward_input(*args)
    ref = torch.nn.grad.conv2d_input(x.shape, w, gy, stride=2, padding=1)
    assert_rel_close(big, ref)
    assert torch.equal(big, capped)
