"""cat: against torch.cat (values, strides, grads), gradcheck, opcheck, compile, bad input."""
import pytest
import torch

from cnnext.functional import cat
from conftest import assert_rel_close

DTYPES = [torch.float32, torch.float64]


def check_against_torch(tensors, dim, grads=True):
    """cat(tensors, dim) == torch.cat(tensors, dim): values, shape, strides, and the gradients."""
    xs = [t.detach().clone().requires_grad_(grads and t.is_floating_point()) for t in tensors]
    refs = [t.detach().clone().requires_grad_(grads and t.is_floating_point()) for t in tensors]
    y, y_ref = cat(xs, dim), torch.cat(refs, dim)
    assert torch.equal(y, y_ref), "output"  # a copy: bit-exact
    assert y.stride() == y_ref.stride() or y.numel() <= 1, f"strides {y.stride()} != {y_ref.stride()}"
    if grads and y.requires_grad:
        g = torch.randn(y.shape, dtype=y.dtype)
        y.backward(g)
        y_ref.backward(g)
        for i, (x, r) in enumerate(zip(xs, refs)):
            if r.grad is None:
                assert x.grad is None or not x.grad.any(), f"grad {i}"
            else:
                assert torch.equal(x.grad, r.grad), f"grad {i}"
    return y


@pytest.mark.parametrize("dtype", DTYPES)
def test_inception_4way_channels(backend, dtype):
    # GoogLeNet: 1x1, 3x3, 5x5 and pool branches, concatenated along C
    torch.manual_seed(0)
    xs = [torch.randn(2, c, 5, 5, dtype=dtype) for c in (8, 12, 4, 4)]
    check_against_torch(xs, 1)


def test_inception_odd_sizes(backend):
    # odd channel counts and planes: the CUDA kernel copies 4-byte units, no 16-byte path
    torch.manual_seed(0)
    check_against_torch([torch.randn(1, c, 3, 3) for c in (3, 5, 1, 2)], 1)


def test_densenet_growing(backend):
    # DenseNet dense block: X = cat([X, conv_block(X)], 1), step by step, with gradients through all
    torch.manual_seed(0)
    x0 = torch.randn(2, 6, 4, 4, dtype=torch.float64, requires_grad=True)
    ys = [torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True) for _ in range(4)]
    x, x_ref = x0, x0
    for y in ys:
        x, x_ref = cat([x, y], 1), torch.cat([x_ref, y], 1)
        assert torch.equal(x, x_ref)
    g = torch.randn_like(x)
    got = torch.autograd.grad(x, [x0, *ys], g)
    want = torch.autograd.grad(x_ref, [x0, *ys], g)
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    # the same block as one cat of the growing list
    check_against_torch([x0, *ys], 1)


def test_one_input(backend):
    x = torch.randn(3, 4)
    y = check_against_torch([x], 1)
    assert y.data_ptr() != x.data_ptr()  # a new tensor, as torch.cat


@pytest.mark.parametrize("dim", [0, 1, 2, 3, -1, -2, -3, -4])
def test_every_dim_4d(backend, dim):
    torch.manual_seed(0)
    base = [2, 3, 4, 5]
    xs = []
    for k in (1, 3, 2):
        s = list(base)
        s[dim] = k
        xs.append(torch.randn(s, dtype=torch.float64))
    check_against_torch(xs, dim)


@pytest.mark.parametrize("shapes,dim", [
    ([(3,), (5,), (1,)], 0),
    ([(3,), (5,)], -1),
    ([(2, 3), (2, 5)], 1),
    ([(2, 3), (4, 3)], 0),
    ([(2, 3), (4, 3)], -2),
    ([(2, 1, 3, 2, 3), (2, 4, 3, 2, 3)], 1),
    ([(2, 1, 3, 2, 3), (2, 1, 3, 2, 1), (2, 1, 3, 2, 2)], 4),
    ([(1, 2, 3, 2, 3), (2, 2, 3, 2, 3)], 0),
    ([(2, 2, 1, 2, 3), (2, 2, 2, 2, 3)], -3),
])
def test_ranks(backend, shapes, dim):
    torch.manual_seed(0)
    check_against_torch([torch.randn(s) for s in shapes], dim)


def test_zero_size_inputs(backend):
    a, b = torch.randn(2, 3, 4), torch.randn(2, 2, 4)
    check_against_torch([a, torch.randn(2, 0, 4), b], 1)          # empty along dim: skipped
    check_against_torch([torch.randn(2, 0, 4), torch.randn(2, 0, 4)], 1)  # empty output
    check_against_torch([torch.randn(0, 3, 4), torch.randn(0, 2, 4)], 1)  # empty off the dim
    check_against_torch([torch.randn(0, 3), torch.randn(2, 3)], 0)


def test_legacy_empty_skipped(backend):
    # torch.cat skips 1-D tensors of shape (0,) whatever the others' rank; so does cat
    a, b = torch.randn(2, 3), torch.randn(2, 4)
    y = check_against_torch([torch.empty(0), a, torch.empty(0), b], 1)
    assert y.shape == (2, 7)
    check_against_torch([a, torch.empty(0)], -1)
    assert cat([torch.empty(0), torch.empty(0)]).shape == torch.cat([torch.empty(0), torch.empty(0)]).shape


def test_noncontiguous_inputs(backend):
    torch.manual_seed(0)
    a = torch.randn(4, 3, 5).transpose(0, 2)          # (5, 3, 4), transposed
    b = torch.randn(5, 6, 8)[:, ::2, ::2]             # (5, 3, 4), strided slice
    c = torch.randn(1, 3, 4).expand(5, 3, 4)          # broadcast view
    for dim in (0, 1, 2):
        check_against_torch([a, b, c], dim)


def copies(fn):
    """Names of the aten copy ops fn() runs (the ops layer's .contiguous() pass shows up as one)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return [e.name for e in prof.events() if e.name in ("aten::copy_", "aten::clone", "aten::contiguous")]


def test_row_strided_inputs_read_in_place(backend):
    # dense rows, spaced out or repeated: the kernels take a row stride, no .contiguous() pass
    torch.manual_seed(0)
    big = torch.randn(4, 10, 3, 5)
    views = [big[:, 2:5], big[:, 7:8], torch.randn(1, 2, 3, 5).expand(4, 2, 3, 5), big[::2].repeat(2, 1, 1, 1)[:, :4]]
    check_against_torch(views, 1)
    assert copies(lambda: cat(views, 1)) == []
    cl = big.to(memory_format=torch.channels_last)
    check_against_torch([cl[:, 1:4], cl[:, 6:7], cl[:, :2]], 1)
    assert copies(lambda: cat([cl[:, 1:4], cl[:, 6:7]], 1)) == []
    check_against_torch([big[1:3], big[::3]], 0)  # dim 0: one row each; big[::3] is made dense first
    check_against_torch([big[:, :, 1:], big[:, :, :1]], 2)
    g = torch.randn(3, 9, 4)[:, 1:8]  # a sliced grad_output: rows spaced out
    parts = torch.ops.cnnext.cat_backward(g, 1, [3, 4])
    assert all(torch.equal(p, r) for p, r in zip(parts, g.split([3, 4], 1)))
    assert copies(lambda: torch.ops.cnnext.cat_backward(g, 1, [3, 4])) == []


def test_transposed_input_copied_once(backend):
    x = torch.randn(3, 4).t()  # (4, 3), not dense by rows
    check_against_torch([x, torch.randn(4, 2)], 1)
    assert len(copies(lambda: cat([x, torch.randn(4, 2)], 1))) >= 1  # the documented extra pass


@pytest.mark.parametrize("dim", [0, 1, 2, 3])
def test_channels_last(backend, dim):
    torch.manual_seed(0)
    cl = torch.channels_last
    shapes = []
    for k in (2, 3):
        s = [2, 4, 3, 5]
        s[dim] = k
        shapes.append(s)
    xs = [torch.randn(s).to(memory_format=cl) for s in shapes]
    y = check_against_torch(xs, dim)
    assert y.is_contiguous(memory_format=cl)
    # one contiguous input: torch.cat's output is contiguous, and so is ours
    y = check_against_torch([xs[0], xs[1].contiguous()], dim)
    assert y.is_contiguous()


def test_channels_last_3d(backend):
    torch.manual_seed(0)
    xs = [torch.randn(2, c, 2, 3, 2).to(memory_format=torch.channels_last_3d) for c in (3, 1, 4)]
    y = check_against_torch(xs, 1)
    assert y.is_contiguous(memory_format=torch.channels_last_3d)


def test_many_inputs(backend):
    # more than one CUDA launch's table of 64 inputs, with zero-size ones in between
    torch.manual_seed(0)
    xs = [torch.randn(2, 1 + i % 3, 3) if i % 17 else torch.randn(2, 0, 3) for i in range(150)]
    check_against_torch(xs, 1)
    check_against_torch([torch.randn(1, 2) for _ in range(70)], 0)


def test_grid_stride_loops(backend):
    # 64 inputs share one emulated CUDA launch of a single block per input: the grid-stride loop
    # wraps rows (narrow rows: stride > row) and columns (wide rows: stride < row) with a carry
    torch.manual_seed(0)
    check_against_torch([torch.randn(300, 1 + i % 5) for i in range(66)], 1)
    check_against_torch([torch.randn(3, 401 + 2 * (i % 3)) for i in range(64)], 1)


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.int64, torch.float16, torch.bfloat16,
                                   torch.complex64, torch.bool])
def test_any_dtype(backend, dtype):
    # the kernels copy bytes: every copy unit (1, 2, 4, 8, 16 bytes) appears across these
    a = (torch.arange(2 * 3 * 5) % 7).reshape(2, 3, 5).to(dtype)
    b = (torch.arange(2 * 2 * 5) % 5).reshape(2, 2, 5).to(dtype)
    c = (torch.arange(2 * 3 * 1) % 3).reshape(2, 3, 1).to(dtype)
    check_against_torch([a, b], 1, grads=False)
    check_against_torch([a, c], 2, grads=False)


def test_unaligned_offsets(backend):
    # views starting at odd element offsets: the copy unit must drop to the element size
    base = torch.randn(200, dtype=torch.float64)
    a = base[1:25].view(2, 3, 4)
    b = base[27:35].view(2, 1, 4)
    check_against_torch([a, b], 1)
    check_against_torch([b, a], 1)


def test_gradcheck(backend):
    torch.manual_seed(0)
    xs = [torch.randn(2, c, 3, dtype=torch.float64, requires_grad=True) for c in (1, 3, 2)]
    assert torch.autograd.gradcheck(lambda *t: cat(t, 1), xs)
    assert torch.autograd.gradcheck(lambda *t: cat(t, -1), [x.transpose(1, 2).detach().requires_grad_() for x in xs])
    ys = [torch.randn(k, 3, dtype=torch.float64, requires_grad=True) for k in (2, 1)]
    assert torch.autograd.gradcheck(lambda *t: cat(t, 0), ys)


def test_partial_requires_grad(backend):
    a = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 4, dtype=torch.float64)
    g = torch.randn(2, 7, dtype=torch.float64)
    cat([a, b], 1).backward(g)
    assert torch.equal(a.grad, g[:, :3])


def test_opcheck(backend):
    torch.manual_seed(0)
    xs = [torch.randn(2, c, 3, 2, dtype=torch.float64) for c in (1, 3, 2)]
    cl = [x.to(memory_format=torch.channels_last) for x in xs]
    fwd, bwd = torch.ops.cnnext.cat_forward.default, torch.ops.cnnext.cat_backward.default
    torch.library.opcheck(fwd, (xs, 1))
    torch.library.opcheck(fwd, (cl, -3))
    torch.library.opcheck(fwd, ([torch.empty(0, dtype=torch.float64), xs[0]], 0))
    g = torch.randn(2, 6, 3, 2, dtype=torch.float64)
    torch.library.opcheck(bwd, (g, 1, [1, 3, 2]))
    torch.library.opcheck(bwd, (g.to(memory_format=torch.channels_last), 1, [1, 0, 5]))
    torch.library.opcheck(bwd, (g, -1, [2]))


def test_backward_op_slices(backend):
    g = torch.randn(3, 7, 2)
    parts = torch.ops.cnnext.cat_backward(g, 1, [2, 0, 5])
    for p, r in zip(parts, g.split([2, 0, 5], 1)):
        assert torch.equal(p, r) and p.is_contiguous()


def test_backward_of_unaligned_and_expanded_grads(backend):
    base = torch.randn(100)
    g = base[1:43].view(2, 7, 3)  # odd storage offset: the big tensor is not 16-byte aligned
    for p, r in zip(torch.ops.cnnext.cat_backward(g, 1, [3, 4]), g.split([3, 4], 1)):
        assert torch.equal(p, r)
    xs = [torch.randn(2, c, 3, requires_grad=True) for c in (2, 5)]
    cat(xs, 1).sum().backward()  # grad_output is an expanded tensor of ones
    assert all(torch.equal(x.grad, torch.ones_like(x)) for x in xs)


def test_torch_compile_fullgraph():
    def f(a, b, c):
        return torch.sigmoid(cat([a, b, c], 1)).sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    xs = [torch.randn(2, c, 3, requires_grad=True) for c in (1, 2, 3)]
    out = compiled(*xs)
    out.backward()
    refs = [x.detach().clone().requires_grad_() for x in xs]
    torch.sigmoid(torch.cat(refs, 1)).sum().backward()
    for x, r in zip(xs, refs):
        assert_rel_close(x.grad, r.grad)


@pytest.mark.parametrize("make,exc,match", [
    (lambda: ([], 0), ValueError, r"cat: tensors must be a non-empty list"),
    (lambda: (torch.ones(2, 3), 0), TypeError, r"cat: tensors must be a list or tuple"),
    (lambda: ([torch.ones(2, 3), torch.ones(2, 3, 1)], 0), RuntimeError, r"cat: tensors\[1\] is 3-D but tensors\[0\] is 2-D"),
    (lambda: ([torch.ones(2, 3), torch.ones(2, 4), torch.ones(3, 4)], 1), RuntimeError,
     r"cat: sizes of tensors must match except in dim 1: tensors\[2\] has size 3 in dim 0 but tensors\[0\] has size 2"),
    (lambda: ([torch.ones(2, 3), torch.ones(2, 3, dtype=torch.float64)], 0), TypeError,
     r"cat: tensors\[1\] has dtype Double but tensors\[0\] has dtype Float"),
    (lambda: ([torch.ones(2, 3), torch.ones(2, 3, device="meta")], 0), RuntimeError, r"cat: tensors\[1\] is on meta"),
    (lambda: ([torch.ones(2, 3), torch.ones(2, 3)], 2), IndexError, r"cat: dim must be in \[-2, 1\] .* got 2"),
    (lambda: ([torch.ones(2, 3)], -3), IndexError, r"cat: dim must be in \[-2, 1\] .* got -3"),
    (lambda: ([torch.ones(2), torch.tensor(1.0)], 0), RuntimeError, r"cat: tensors\[1\] is zero-dimensional"),
    (lambda: ([torch.ones(2, 2).to_sparse(), torch.ones(2, 2)], 0), RuntimeError,
     r"cat: tensors\[0\] must be a dense \(strided\) tensor"),
    (lambda: ([torch.ones(2), [1.0, 2.0]], 0), TypeError, r"cat: tensors\[1\] must be a Tensor, got list"),
])
def test_bad_input(backend, make, exc, match):
    tensors, dim = make()
    with pytest.raises(exc, match=match):
        cat(tensors, dim)


def test_bad_backward_args(backend):
    g = torch.randn(2, 5)
    with pytest.raises(RuntimeError, match=r"cat: split_sizes \[2, 2\] sum to 4 but grad_output has size 5 in dim 1"):
        torch.ops.cnnext.cat_backward(g, 1, [2, 2])
    with pytest.raises(RuntimeError, match=r"cat: split_sizes\[1\] must be >= 0"):
        torch.ops.cnnext.cat_backward(g, 1, [6, -1])
    with pytest.raises(IndexError, match=r"cat: dim must be in \[-2, 1\] for grad_output"):
        torch.ops.cnnext.cat_backward(g, 2, [5])
