"""corr2d: d2l's example, against F.conv2d, gradients, gradcheck, opcheck, compile, bad input."""
import pytest
import torch
import torch.nn.functional as F

import cnnext
from cnnext.functional import corr2d
from conftest import assert_rel_close, on


def reference(x, k):
    lead = x.shape[:-2]
    y = F.conv2d(x.reshape(-1, 1, *x.shape[-2:]), k[None, None])
    return y.reshape(*lead, *y.shape[-2:])


def test_d2l_example(backend):
    X = torch.tensor([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0, 7.0, 8.0]])
    K = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    assert torch.equal(corr2d(X, K), torch.tensor([[19.0, 25.0], [37.0, 43.0]]))


def test_d2l_edge_detection(backend):
    # d2l 6.2.3: a 6x8 image, black in the middle, kernel [1, -1] finds the vertical edges.
    X = torch.ones(6, 8)
    X[:, 2:6] = 0
    Y = corr2d(X, torch.tensor([[1.0, -1.0]]))
    expected = torch.zeros(6, 7)
    expected[:, 1], expected[:, 5] = 1, -1
    assert torch.equal(Y, expected)
    assert torch.equal(corr2d(X.t(), torch.tensor([[1.0, -1.0]])), torch.zeros(8, 5))


SHAPES = [  # (input shape, kernel shape)
    ((3, 3), (2, 2)),
    ((1, 1), (1, 1)),
    ((5, 7), (5, 7)),  # kernel = input
    ((2, 3, 17, 19), (4, 5)),
    ((1, 33, 65), (3, 1)),
    ((4, 9, 40), (1, 9)),
    ((2, 28, 28), (5, 5)),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("xs,ks", SHAPES)
def test_matches_conv2d_with_grads(backend, xs, ks, dtype):
    torch.manual_seed(0)
    x = torch.randn(xs, dtype=dtype, requires_grad=True)
    k = torch.randn(ks, dtype=dtype, requires_grad=True)
    y = corr2d(x, k)
    x2, k2 = x.detach().clone().requires_grad_(), k.detach().clone().requires_grad_()
    y2 = reference(x2, k2)
    assert_rel_close(y, y2, what="output")
    g = torch.randn_like(y)
    y.backward(g)
    y2.backward(g)
    assert_rel_close(x.grad, x2.grad, what="grad input")
    assert_rel_close(k.grad, k2.grad, what="grad kernel")


def test_noncontiguous_input(backend):
    x = torch.randn(12, 10, dtype=torch.float64).t()  # (10, 12), transposed strides
    k = torch.randn(3, 2, dtype=torch.float64)[:, :]
    assert not x.is_contiguous()
    assert_rel_close(corr2d(x, k), reference(x, k))


def test_gradcheck(backend):
    x = torch.randn(2, 6, 7, dtype=torch.float64, requires_grad=True)
    k = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(corr2d, (x, k))


def test_opcheck(backend):
    x = torch.randn(2, 6, 7, dtype=torch.float64)
    k = torch.randn(3, 2, dtype=torch.float64)
    gy = torch.randn(2, 4, 6, dtype=torch.float64)
    torch.library.opcheck(torch.ops.cnnext.corr2d_forward.default, (x, k))
    torch.library.opcheck(torch.ops.cnnext.corr2d_backward_input.default, (gy, k, list(x.shape)))
    torch.library.opcheck(torch.ops.cnnext.corr2d_backward_kernel.default, (gy, x, list(k.shape)))


def test_backends_agree():
    x = torch.randn(3, 20, 21, dtype=torch.float64)
    k = torch.randn(4, 3, dtype=torch.float64)
    with on("emu"):
        y_emu = corr2d(x, k)
    assert_rel_close(corr2d(x, k), y_emu)


def test_emulate_cuda_block_restores():
    assert not cnnext.emulating_cuda()
    with cnnext.emulate_cuda():
        assert cnnext.emulating_cuda()
        with cnnext.emulate_cuda(False):
            assert not cnnext.emulating_cuda()
        assert cnnext.emulating_cuda()
    assert not cnnext.emulating_cuda()


def test_torch_compile_fullgraph():
    def f(x, k):
        return torch.sigmoid(corr2d(x, k)).sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 9, 9, requires_grad=True)
    k = torch.randn(3, 3, requires_grad=True)
    out = compiled(x, k)
    out.backward()
    x2, k2 = x.detach().clone().requires_grad_(), k.detach().clone().requires_grad_()
    f(x2, k2).backward()
    assert_rel_close(out, f(x2.detach(), k2.detach()))
    assert_rel_close(x.grad, x2.grad)
    assert_rel_close(k.grad, k2.grad)


def test_learn_edge_kernel(backend):
    """d2l 6.2.4: learn K ~ [1, -1] from X and Y = corr2d(X, [1, -1]) with plain SGD."""
    torch.manual_seed(0)
    X = torch.ones(6, 8)
    X[:, 2:6] = 0
    Y = corr2d(X, torch.tensor([[1.0, -1.0]]))
    layer = cnnext.nn.Corr2d((1, 2))
    lr = 1e-2
    for _ in range(60):
        loss = ((layer(X) - Y) ** 2).sum()
        layer.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in layer.parameters():
                p -= lr * p.grad
    assert loss.item() < 1e-2
    assert torch.allclose(layer.weight.detach(), torch.tensor([[1.0, -1.0]]), atol=0.1)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: (torch.ones(4, 4, dtype=torch.int32), torch.ones(2, 2)), r"corr2d: input must be float32, float64, bfloat"),
        (lambda: (torch.ones(4, 4, dtype=torch.float8_e4m3fn), torch.ones(2, 2)), r"corr2d: input must be float32"),
        (lambda: (torch.ones(4, 4), torch.ones(2, 2, dtype=torch.float64)), r"corr2d: kernel has dtype"),
        (lambda: (torch.ones(4, 4), torch.ones(5, 2)), r"corr2d: kernel of size .* is larger than the input"),
        (lambda: (torch.ones(4, 4), torch.ones(2, 5)), r"corr2d: kernel of size .* is larger than the input"),
        (lambda: (torch.ones(4), torch.ones(2, 2)), r"corr2d: input must have at least 2 dims"),
        (lambda: (torch.ones(4, 4), torch.ones(2, 2, 2)), r"corr2d: kernel must be 2-D"),
        (lambda: (torch.ones(4, 4), torch.ones(0, 2)), r"corr2d: kernel must not be empty"),
        (lambda: (torch.ones(4, 4), torch.ones(2, 2, device="meta")), r"corr2d: kernel is on meta"),
    ],
)
def test_bad_input(backend, make, match):
    x, k = make()
    with pytest.raises((RuntimeError, TypeError, ValueError), match=match):
        corr2d(x, k)


def test_empty_batch(backend):
    x = torch.randn(0, 5, 5)
    assert corr2d(x, torch.ones(2, 2)).shape == (0, 4, 4)


# The grad kernel is two-stage on the CUDA backend (csrc/cuda/corr2d.cu): each tap's B*OH*OW products
# are cut into fixed chunks of >= 2048.  (3, 50, 41) with a 2x3 kernel: 5733 products per tap, 3
# splits; (2, 70, 70) with 3x3: 9248, 5 splits.
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("xs,ks", [((3, 50, 41), (2, 3)), ((2, 70, 70), (3, 3))])
def test_split_grad_kernel(backend, xs, ks, dtype):
    test_matches_conv2d_with_grads(backend, xs, ks, dtype)


def test_split_grad_kernel_deterministic():
    g = torch.Generator().manual_seed(5)
    x, k = torch.randn(3, 50, 41, generator=g), torch.randn(2, 3, generator=g)
    gy = torch.randn(3, 49, 39, generator=g)
    with on("emu"):
        runs = [torch.ops.cnnext.corr2d_backward_kernel(gy, x, [2, 3]) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
