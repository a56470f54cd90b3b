"""conv2d's Winograd F(2x2, 3x3) variants (csrc/cpu/conv2d_winograd.cpp): forward, grad input and grad
weight against torch (CNNEXT_CONV2D_FWD / _GI / _GW=winograd force them), their error against torch's
float64 result relative to torch's own float32 error, the planner's choice and the switch to the direct
algorithm (CNNEXT_CONV2D_WINOGRAD=0), and the shapes the variants refuse."""
import pytest
import torch
import torch.nn.functional as F

import cnnext
from conftest import assert_rel_close


def _make(N, C, K, H, W, seed=0, bias=True, relu=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, C, H, W, generator=g)
    if relu:  # activations after a ReLU: all >= 0, no cancellation in the input transform
        x = x.relu()
    w = torch.randn(K, C, 3, 3, generator=g) / (3 * C ** 0.5)
    b = torch.randn(K, generator=g) if bias else None
    return x, w, b


def _grad_input(gy, x, w, p, torch_op=False):
    if torch_op:
        return torch.ops.aten.convolution_backward(gy, x, w, [w.shape[0]], [1, 1], list(p), [1, 1], False, [0, 0], 1,
                                                   [True, False, False])[0]
    return torch.ops.cnnext.conv2d_backward_input(gy, w, list(x.shape), [1, 1], list(p), [1, 1], 1)


def _grad_weight(gy, x, w, p, torch_op=False):
    if torch_op:
        return torch.ops.aten.convolution_backward(gy, x, w, [w.shape[0]], [1, 1], list(p), [1, 1], False, [0, 0], 1,
                                                   [False, True, False])[1]
    return torch.ops.cnnext.conv2d_backward_weight(gy, x, list(w.shape), [1, 1], list(p), [1, 1], 1, False)[0]


@pytest.fixture
def winograd(monkeypatch):
    for env in ("CNNEXT_CONV2D_FWD", "CNNEXT_CONV2D_GI", "CNNEXT_CONV2D_GW"):
        monkeypatch.setenv(env, "winograd")


# (N, C, K, H, W, padding): odd and even outputs (the last tile row / column half outside), padding 0, 1, 2 and
# unequal, channel counts off the vector and panel widths, more than one 64-channel block and one 256-channel
# pack block, one-tile and one-pixel images, more tiles than one 64-tile block per image row, rows the AVX-512 split
# deinterleaves in vectors (>= 32 columns inside the row) at every padding
SHAPES = [
    (2, 8, 8, 6, 6, 1),
    (1, 3, 5, 5, 7, 1),
    (2, 33, 17, 7, 9, 1),
    (3, 32, 40, 11, 13, 0),
    (2, 16, 24, 9, 10, 2),
    (2, 65, 9, 8, 8, (0, 2)),
    (1, 130, 70, 5, 6, (2, 1)),
    (1, 300, 12, 4, 4, 1),
    (2, 5, 3, 1, 1, 1),
    (1, 4, 6, 2, 3, 1),
    (1, 6, 7, 3, 150, 1),
    (1, 4, 5, 3, 70, 0),       # rows wide enough for the vectorised even / odd split, padding 0 and (1, 2)
    (1, 3, 4, 4, 67, (1, 2)),  # (grad input: padding 2 and (1, 0)), an odd width
]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("N,C,K,H,W,p", SHAPES)
def test_matches_torch(winograd, N, C, K, H, W, p, threads):
    """Output, grad input (the Winograd forward of gy with the flipped kernel), grad weight (16 GEMMs over
    the tiles) and grad bias vs F.conv2d, every thread count (the tile blocks, per-thread scratch, the
    threads' shares of the 16 GEMMs)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for bias in (True, False):
            x, w, b = _make(N, C, K, H, W, seed=threads, bias=bias)
            leaves = [t.clone().requires_grad_() for t in (x, w, b) if t is not None]
            refs = [t.clone().requires_grad_() for t in (x, w, b) if t is not None]
            y = cnnext.functional.conv2d(leaves[0], leaves[1], leaves[2] if bias else None, 1, p)
            y2 = F.conv2d(refs[0], refs[1], refs[2] if bias else None, 1, p)
            assert_rel_close(y, y2, what="output")
            gy = torch.randn(y2.shape, generator=torch.Generator().manual_seed(7))
            for name, a, e in zip(("grad input", "grad weight", "grad bias"), torch.autograd.grad(y, leaves, gy),
                                  torch.autograd.grad(y2, refs, gy)):
                assert_rel_close(a, e, what=name)
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("N,C,K,H", [(4, 64, 64, 24), (4, 128, 128, 12), (2, 256, 256, 12), (2, 512, 64, 12),
                                     (4, 32, 32, 30), (4, 160, 32, 24), (2, 16, 32, 56)])
def test_error_against_float64(winograd, N, C, K, H, relu):
    """The issue's accuracy bar: the Winograd float32 result's error against torch's float64 result is within
    2x torch's own float32 error (norm-wise), forward, grad input and grad weight, on family-sized layers.  Measured here
    (Intel Xeon, 2026-12-04): 0.9-1.4x (the channel sum in fresh 64-channel partials: one chain over all
    channels reached 2.3-2.7x at C >= 256)."""
    x, w, b = _make(N, C, K, H, H, relu=relu)
    ref = F.conv2d(x.double(), w.double(), b.double(), padding=1)
    err = lambda y, r: ((y.double() - r).norm() / r.norm()).item()
    e_ours, e_torch = err(cnnext.functional.conv2d(x, w, b, 1, 1), ref), err(F.conv2d(x, w, b, padding=1), ref)
    assert e_ours <= 2 * e_torch, f"forward: error {e_ours:.3g} > 2 x torch's {e_torch:.3g}"
    gy = torch.randn(ref.shape, generator=torch.Generator().manual_seed(3))
    gref = _grad_input(gy.double(), x.double(), w.double(), (1, 1), torch_op=True)
    g_ours = err(_grad_input(gy, x, w, (1, 1)), gref)
    g_torch = err(_grad_input(gy, x, w, (1, 1), torch_op=True), gref)
    assert g_ours <= 2 * g_torch, f"grad input: error {g_ours:.3g} > 2 x torch's {g_torch:.3g}"
    wref = _grad_weight(gy.double(), x.double(), w.double(), (1, 1), torch_op=True)
    w_ours = err(_grad_weight(gy, x, w, (1, 1)), wref)
    w_torch = err(_grad_weight(gy, x, w, (1, 1), torch_op=True), wref)
    assert w_ours <= 2 * w_torch, f"grad weight: error {w_ours:.3g} > 2 x torch's {w_torch:.3g}"


def test_planner_and_switch(monkeypatch):
    """On a 3x3 layer with 96 channels in and out at 12x12 the planner's forward, grad input and grad weight
    are Winograd's, bit for bit; CNNEXT_CONV2D_WINOGRAD=0 gives other results, its forward and grad input
    the direct algorithm's (im2col / transposed); float64 and a 16-channel layer do not use Winograd."""
    x, w, b = _make(2, 96, 96, 12, 12)
    gy = torch.randn(2, 96, 12, 12)
    small = dict(xx=x[:, :16], ww=w[:16, :16], bb=b[:16], g=gy[:, :16])

    def run(dtype=torch.float32, xx=x, ww=w, bb=b, g=gy):
        xx, ww, bb, g = (t.to(dtype) for t in (xx, ww, bb, g))
        return cnnext.functional.conv2d(xx, ww, bb, 1, 1), _grad_input(g, xx, ww, (1, 1)), _grad_weight(g, xx, ww, (1, 1))

    def same(a, e):
        return [torch.equal(u, v) for u, v in zip(a, e)]

    auto, auto64, auto_small = run(), run(torch.float64), run(**small)
    envs = ("CNNEXT_CONV2D_FWD", "CNNEXT_CONV2D_GI", "CNNEXT_CONV2D_GW")
    for env in envs:
        monkeypatch.setenv(env, "winograd")
    forced_wino = run()
    monkeypatch.setenv("CNNEXT_CONV2D_FWD", "im2col")
    monkeypatch.setenv("CNNEXT_CONV2D_GI", "transposed")
    monkeypatch.delenv("CNNEXT_CONV2D_GW")
    forced_direct = run()[:2]
    monkeypatch.delenv("CNNEXT_CONV2D_FWD")
    monkeypatch.delenv("CNNEXT_CONV2D_GI")
    monkeypatch.setenv("CNNEXT_CONV2D_WINOGRAD", "0")
    off, off64, off_small = run(), run(torch.float64), run(**small)
    assert same(auto, forced_wino) == [True] * 3
    assert same(auto, off) == [False] * 3
    assert same(off[:2], forced_direct) == [True] * 2
    assert same(auto64, off64) == [True] * 3 and same(auto_small, off_small) == [True] * 3


@pytest.mark.parametrize("dtype,kw,ks", [
    (torch.float64, {}, 3),                      # float64: the exact-order GEMM only
    (torch.float32, dict(stride=2), 3),          # stride 2
    (torch.float32, dict(dilation=2, padding=2), 3),
    (torch.float32, dict(groups=2), 3),
    (torch.float32, {}, 5),                      # 5x5
    (torch.float32, dict(padding=3), 3),         # grad input's padding 2 - p < 0
])
def test_refuses_other_shapes(monkeypatch, dtype, kw, ks):
    """Forcing Winograd where it does not compute raises, naming the variable and the variants."""
    x = torch.randn(1, 4, 8, 8, dtype=dtype)
    w = torch.randn(4, 4 // kw.get("groups", 1), ks, ks, dtype=dtype)
    monkeypatch.setenv("CNNEXT_CONV2D_FWD", "winograd")
    with pytest.raises(RuntimeError, match=r"conv2d: CNNEXT_CONV2D_FWD=winograd does not run on this call"):
        cnnext.functional.conv2d(x, w, None, **{"padding": 1, **kw})
    monkeypatch.delenv("CNNEXT_CONV2D_FWD")
    monkeypatch.setenv("CNNEXT_CONV2D_GW", "winograd")
    x.requires_grad_()
    y = cnnext.functional.conv2d(x, w.requires_grad_(), None, **{"padding": 1, **kw})
    with pytest.raises(RuntimeError, match=r"conv2d: CNNEXT_CONV2D_GW=winograd does not run on this call"):
        y.sum().backward()


def test_opcheck_on_winograd_shapes(winograd):
    """torch.library.opcheck (schema, fake kernel, autograd registration) of the three conv2d ops on a float32
    shape the Winograd variants compute (forced, so that the check runs them)."""
    x, w, b = _make(2, 32, 32, 12, 12)
    gy = torch.randn(2, 32, 12, 12)
    conv = ([1, 1], [1, 1], [1, 1], 1)
    torch.library.opcheck(torch.ops.cnnext.conv2d_forward.default, (x, w, b, *conv))
    torch.library.opcheck(torch.ops.cnnext.conv2d_backward_input.default, (gy, w, list(x.shape), *conv))
    torch.library.opcheck(torch.ops.cnnext.conv2d_backward_weight.default, (gy, x, list(w.shape), *conv, True))


def test_tile_size_accuracy_script():
    """bench/winograd_tiles.py, which states the float32 error per tile size (README): its float32 F(2x2)
    simulation is within 20% of the library's F(2x2) kernel's error on the same layer, and F(3x3) and
    F(4x4) are beyond the issue's 2x of torch's own float32 error (which is why the kernel is F(2x2))."""
    from bench import winograd_tiles
    x, w, _ = _make(4, 64, 64, 24, 24)
    ref = F.conv2d(x.double(), w.double(), padding=1)
    err = lambda y: ((y.double() - ref).norm() / ref.norm()).item()
    e_torch = err(F.conv2d(x, w, padding=1))
    with pytest.MonkeyPatch.context() as m:
        m.setenv("CNNEXT_CONV2D_FWD", "winograd")
        e_kernel = err(cnnext.functional.conv2d(x, w, None, 1, 1))
    assert abs(err(winograd_tiles.winograd(x, w, 2)) / e_kernel - 1) < 0.2
    assert err(winograd_tiles.winograd(x, w, 3)) > 2 * e_torch and err(winograd_tiles.winograd(x, w, 4)) > 2 * e_torch


@pytest.mark.parametrize("N,C,K,H", [(3, 20, 24, 13), (2, 64, 10, 9), (2, 160, 40, 7), (1, 300, 17, 6)])
def test_grad_weight_same_for_any_thread_count(winograd, N, C, K, H):
    """The Winograd grad weight's work items (row of the transformed tile x tile split x channel panel) and its
    partial sums are fixed by the shape, so 1 to 4 threads give the same bits: one channel panel (two tile
    splits), runs of panels longer and shorter than a thread's share, a last A panel half filled (K = 24, 40)."""
    x, w, _ = _make(N, C, K, H, H)
    gy = torch.randn(N, K, H, H, generator=torch.Generator().manual_seed(5))
    old = torch.get_num_threads()
    try:
        outs = []
        for n in (1, 2, 3, 4):
            torch.set_num_threads(n)
            outs.append(_grad_weight(gy, x, w, (1, 1)))
    finally:
        torch.set_num_threads(old)
    assert all(torch.equal(o, outs[0]) for o in outs[1:])
    assert_rel_close(outs[0], _grad_weight(gy, x, w, (1, 1), torch_op=True), what="grad weight")
