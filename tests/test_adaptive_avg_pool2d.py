"""adaptive_avg_pool2d: against F.adaptive_avg_pool2d (outputs and gradients), gradcheck, opcheck, compile,
nn module, bad input."""
import pytest
import torch
import torch.nn.functional as F

import cnnext
from cnnext.functional import adaptive_avg_pool2d
from conftest import assert_rel_close, on

CASES = [  # (input shape, output_size)
    ((2, 16, 3, 3), (1, 1)),  # global average: ResNet / GoogLeNet heads (batch and channels cut down)
    ((2, 10, 5, 5), 1),  # NiN head
    ((2, 8, 7, 7), (1, 1)),  # ResNet head at 224
    ((3, 1, 40, 1), (1, 1)),  # a plane longer than a warp
    ((1, 4, 13, 13), (6, 6)),  # AlexNet-style
    ((1, 4, 14, 14), (7, 7)),  # VGG-style
    ((1, 3, 7, 7), (7, 7)),  # identity
    ((2, 2, 5, 7), (3, 4)),  # non-divisible: 5 -> 3, 7 -> 4, overlapping windows
    ((2, 2, 11, 9), (4, 5)),
    ((1, 2, 3, 2), (7, 5)),  # output larger than input
    ((2, 3, 6, 8), (None, 3)),  # None keeps the input size
    ((2, 3, 6, 8), (2, None)),
    ((4, 9, 10), (3, 3)),  # unbatched
    ((4, 9, 10), 1),
    ((1, 1, 1, 1), (1, 1)),
]


def check_against_torch(x, size):
    x = x.detach().requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    y, y2 = adaptive_avg_pool2d(x, size), F.adaptive_avg_pool2d(x2, size)
    assert_rel_close(y, y2, what="output")
    g = torch.randn_like(y2)
    y.backward(g)
    y2.backward(g)
    assert_rel_close(x.grad, x2.grad, what="grad input")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,size", CASES, ids=[str(i) for i in range(len(CASES))])
def test_matches_torch(backend, shape, size, dtype):
    torch.manual_seed(0)
    check_against_torch(torch.randn(shape, dtype=dtype), size)


def test_noncontiguous_and_channels_last(backend):
    torch.manual_seed(0)
    x = torch.randn(2, 8, 10, 12, dtype=torch.float64)
    check_against_torch(x.to(memory_format=torch.channels_last), (1, 1))
    check_against_torch(x.to(memory_format=torch.channels_last), (4, 5))
    check_against_torch(x.transpose(2, 3), (3, 3))
    check_against_torch(x[:, ::2, 1:, ::3], 1)


def test_family_shapes_cpu():
    """Full batch-32 family shapes on the CPU kernels (the emulator runs the smaller ones above)."""
    torch.manual_seed(0)
    for shape, size in [((32, 512, 3, 3), 1), ((32, 1024, 3, 3), 1), ((32, 248, 3, 3), 1), ((32, 10, 5, 5), 1),
                        ((32, 512, 7, 7), 1), ((32, 33, 2, 2), 1), ((8, 256, 13, 13), (6, 6)),
                        ((8, 512, 14, 14), (7, 7))]:
        check_against_torch(torch.randn(shape), size)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_global_every_plane_size_cpu(dtype):
    """The global CPU path per plane size HW: 0-3 whole vectors plus a masked tail are unrolled per
    case, longer planes loop; sizes 1..70 cover every case, a tail of 0 (HW = 8, 16, 32, 48) and
    plane counts that are not a multiple of the vector (2 x 19 planes)."""
    torch.manual_seed(0)
    for hw in range(1, 71):
        check_against_torch(torch.randn(2, 19, 1, hw, dtype=dtype), 1)


def test_deterministic_across_threads():
    x = torch.randn(4, 64, 11, 13)
    n = torch.get_num_threads()
    outs = []
    for t in (1, 2):
        torch.set_num_threads(t)
        res = []
        for size in [(1, 1), (5, 4)]:
            xg = x.clone().requires_grad_()
            y = adaptive_avg_pool2d(xg, size)
            y.backward(torch.ones_like(y))
            res += [y.detach(), xg.grad]
        outs.append(res)
    torch.set_num_threads(n)
    assert all(torch.equal(a, b) for a, b in zip(*outs))


def test_gradcheck(backend):
    x = torch.randn(2, 2, 7, 6, dtype=torch.float64, requires_grad=True)
    for size in [(1, 1), (3, 4), (9, 2)]:
        assert torch.autograd.gradcheck(lambda t: adaptive_avg_pool2d(t, size), (x,))
    assert torch.autograd.gradgradcheck(lambda t: adaptive_avg_pool2d(t, (4, 3)), (x,))


def test_opcheck(backend):
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    for size in [[1, 1], [3, 4], [8, 2]]:
        y = torch.ops.cnnext.adaptive_avg_pool2d_forward(x, size)
        torch.library.opcheck(torch.ops.cnnext.adaptive_avg_pool2d_forward.default, (x, size))
        torch.library.opcheck(torch.ops.cnnext.adaptive_avg_pool2d_backward.default, (torch.randn_like(y), list(x.shape)))


def test_backends_agree():
    x = torch.randn(3, 4, 11, 13, dtype=torch.float64)
    for size in [(1, 1), (5, 3)]:
        with on("emu"):
            y_emu = adaptive_avg_pool2d(x, size)
        assert_rel_close(adaptive_avg_pool2d(x, size), y_emu)


def test_torch_compile_fullgraph():
    def f(x):
        return torch.sigmoid(adaptive_avg_pool2d(x, (None, 3))).sum() + adaptive_avg_pool2d(x, 1).sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 3, 8, 9, requires_grad=True)
    out = compiled(x)
    out.backward()
    x2 = x.detach().clone().requires_grad_()
    ref = torch.sigmoid(F.adaptive_avg_pool2d(x2, (None, 3))).sum() + F.adaptive_avg_pool2d(x2, 1).sum()
    ref.backward()
    assert_rel_close(out, ref)
    assert_rel_close(x.grad, x2.grad)


def test_module_drop_in(backend):
    for size in [1, (1, 1), (6, 6), (None, 4)]:
        m, ref = cnnext.nn.AdaptiveAvgPool2d(size), torch.nn.AdaptiveAvgPool2d(size)
        assert repr(m) == repr(ref)
        assert isinstance(m, torch.nn.AdaptiveAvgPool2d) and m.state_dict().keys() == ref.state_dict().keys()
        x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
        assert_rel_close(m(x), ref(x))


def test_empty_batch(backend):
    x = torch.randn(0, 3, 6, 6, requires_grad=True)
    y = adaptive_avg_pool2d(x, (2, 3))
    assert y.shape == (0, 3, 2, 3)
    y.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: (torch.ones(1, 4, 4, dtype=torch.int64), 2), r"adaptive_avg_pool2d: input must be float32"),
        (lambda: (torch.ones(1, 4, 4, dtype=torch.float8_e5m2), 2), r"adaptive_avg_pool2d: input must be float32"),
        (lambda: (torch.ones(4, 4), 2), r"adaptive_avg_pool2d: input must be 3-D \(C, H, W\) or 4-D.*got 2-D"),
        (lambda: (torch.ones(4), (None, 2)), r"adaptive_avg_pool2d: input must be 3-D .*got 1-D"),
        (lambda: (torch.ones(1, 1, 1, 4, 4), 2), r"adaptive_avg_pool2d: input must be 3-D .*got 5-D"),
        (lambda: (torch.ones(2, 3, 0, 4), 2), r"adaptive_avg_pool2d: input must have nonzero C, H and W"),
        (lambda: (torch.ones(1, 4, 4), 0), r"adaptive_avg_pool2d: output_size must be positive"),
        (lambda: (torch.ones(1, 4, 4), (3, 0)), r"adaptive_avg_pool2d: output_size must be positive"),
        (lambda: (torch.ones(1, 4, 4), (-1, 2)), r"adaptive_avg_pool2d: output_size must be positive"),
        (lambda: (torch.ones(1, 4, 4), (1, 2, 3)), r"adaptive_avg_pool2d: output_size must be an int or a pair"),
    ],
)
def test_bad_input(backend, make, match):
    x, size = make()
    with pytest.raises((RuntimeError, TypeError, ValueError), match=match):
        adaptive_avg_pool2d(x, size)
    if x.dtype in (torch.float32, torch.float64):  # the fake kernel gives the same message
        with pytest.raises((RuntimeError, TypeError, ValueError), match=match):
            adaptive_avg_pool2d(x.to("meta"), size)


def test_bad_backward_arguments():
    gy = torch.ones(1, 2, 2, 2)
    with pytest.raises(RuntimeError, match=r"adaptive_avg_pool2d: grad_output has shape .* does not match"):
        torch.ops.cnnext.adaptive_avg_pool2d_backward(gy, [1, 3, 6, 6])
    with pytest.raises(RuntimeError, match=r"adaptive_avg_pool2d: grad_output has shape .* does not match"):
        torch.ops.cnnext.adaptive_avg_pool2d_backward(gy, [2, 6, 6])
    with pytest.raises(TypeError, match=r"adaptive_avg_pool2d: grad_output must be float32"):
        torch.ops.cnnext.adaptive_avg_pool2d_backward(gy.int(), [1, 2, 4, 4])


@pytest.mark.parametrize(
    "args,exc,match",
    [
        ((3, 3), TypeError, r"adaptive_avg_pool2d: input must be a Tensor, got int"),
        ((None, 3), TypeError, r"adaptive_avg_pool2d: input must be a Tensor, got NoneType"),
        ((torch.ones(1, 2, 2), 2.5), TypeError, r"adaptive_avg_pool2d: output_size must be an int or a pair"),
        ((torch.ones(1, 2, 2), None), TypeError, r"adaptive_avg_pool2d: output_size must be an int or a pair"),
        ((torch.ones(1, 2, 2), "3"), TypeError, r"adaptive_avg_pool2d: output_size must be an int or a pair"),
        ((torch.ones(1, 2, 2), True), TypeError, r"adaptive_avg_pool2d: output_size must be an int or a pair"),
        ((torch.ones(1, 2, 2), (2, 2.5)), TypeError, r"adaptive_avg_pool2d: output_size must be an int or a pair"),
        ((torch.ones(1, 2, 2), (1, 2, 3)), ValueError, r"adaptive_avg_pool2d: output_size must be an int or a pair"),
        ((torch.ones(1, 2, 2), [2]), ValueError, r"adaptive_avg_pool2d: output_size must be an int or a pair"),
        ((torch.ones(1, 2, 2), __import__("numpy").int64(2)), TypeError,
         r"adaptive_avg_pool2d: output_size must be an int or a pair"),  # as torch
        ((torch.ones(1, 2, 2), ()), ValueError, r"adaptive_avg_pool2d: output_size must be an int or a pair"),
        # 2^62 x 2^62 once wrapped to 0 in the size check and died in the allocator, naming nothing
        ((torch.ones(1, 2, 2), 2**62), RuntimeError, r"adaptive_avg_pool2d: output_size .* below 2\^31"),
        ((torch.ones(1, 2, 2), (1, 2**40)), RuntimeError, r"adaptive_avg_pool2d: output_size .* below 2\^31"),
    ],
)
def test_bad_argument_values_and_types(args, exc, match):
    """Regressions from the robustness fuzzer: every bad argument raises naming the op and the argument."""
    with pytest.raises(exc, match=match):
        adaptive_avg_pool2d(*args)


def test_output_size_forms_as_torch():
    np = pytest.importorskip("numpy")
    x = torch.randn(1, 2, 7, 6)
    for size in (3, (None, 2), [4, None], (np.int64(2), 3), [2, True]):
        assert_rel_close(adaptive_avg_pool2d(x, size), F.adaptive_avg_pool2d(x, size))
