"""avg_pool2d: against F.avg_pool2d (outputs and gradients), gradcheck, opcheck, compile, nn module, bad input."""
import pytest
import torch
import torch.nn.functional as F

import cnnext
from cnnext.functional import avg_pool2d
from conftest import assert_rel_close, on

# (input shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
CASES = [
    ((2, 6, 28, 28), 2, 2, 0, False, True, None),  # LeNet (d2l 7.6, avg pooling)
    ((2, 16, 10, 10), 2, None, 0, False, True, None),  # LeNet pool2, stride defaults to kernel
    ((2, 24, 12, 12), 2, 2, 0, False, True, None),  # DenseNet transition
    ((1, 3, 7, 7), 2, 2, 0, False, True, None),  # odd size, floor mode: last row/column dropped
    ((1, 3, 7, 9), 2, 2, 0, True, True, None),  # odd size, ceil mode: clipped last window
    ((2, 3, 7, 7), 3, 2, 1, True, True, None),  # ceil mode + padding = kernel/2
    ((2, 3, 7, 7), 3, 2, 1, True, False, None),
    ((2, 2, 6, 5), 2, 2, 1, True, True, None),  # ceil-mode window that starts in the padding
    ((2, 2, 6, 5), 2, 2, 1, True, False, None),
    ((1, 2, 5, 5), (3, 2), (2, 1), (1, 1), False, True, None),  # rectangular everything
    ((1, 2, 5, 5), (3, 2), (2, 1), (1, 1), False, False, None),
    ((2, 3, 9, 8), 2, 3, 0, False, True, None),  # stride > kernel: gaps
    ((2, 3, 9, 8), (1, 2), (4, 3), 0, True, True, None),
    ((2, 3, 8, 8), 3, 1, 1, False, False, None),  # overlapping windows
    ((2, 3, 8, 8), 4, 2, 2, False, True, 3),  # divisor_override
    ((1, 2, 6, 6), 3, 3, 1, True, False, 5),
    ((1, 2, 6, 6), 2, 2, 0, False, True, -2),  # a negative divisor, as torch allows
    ((1, 1, 5, 7), (5, 7), None, 0, False, True, None),  # kernel = input
    ((1, 1, 3, 3), 4, 2, 0, True, True, None),  # kernel > input, ceil mode still gives one window
    ((3, 6, 6), 2, 2, 0, False, True, None),  # unbatched
    ((4, 5, 5), (3, 1), 2, (1, 0), True, False, None),
    ((1, 1, 1, 1), 1, 1, 0, False, True, None),
]


def reference_args(case):
    shape, k, s, p, cm, cip, d = case
    return dict(kernel_size=k, stride=s, padding=p, ceil_mode=cm, count_include_pad=cip, divisor_override=d)


def check_against_torch(x, kwargs):
    x = x.detach().requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    y, y2 = avg_pool2d(x, **kwargs), F.avg_pool2d(x2, **kwargs)
    assert_rel_close(y, y2, what="output")
    g = torch.randn_like(y2)
    y.backward(g)
    y2.backward(g)
    assert_rel_close(x.grad, x2.grad, what="grad input")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(CASES))])
def test_matches_torch(backend, case, dtype):
    torch.manual_seed(0)
    check_against_torch(torch.randn(case[0], dtype=dtype), reference_args(case))


def test_positional_arguments_and_pairs(backend):
    x = torch.randn(2, 3, 9, 10, dtype=torch.float64)
    assert_rel_close(avg_pool2d(x, [3, 2], [2], (1,), True, False, 2), F.avg_pool2d(x, [3, 2], [2], (1,), True, False, 2))
    assert_rel_close(avg_pool2d(x, (3,), stride=()), F.avg_pool2d(x, (3,), stride=()))


def test_noncontiguous_and_channels_last(backend):
    torch.manual_seed(0)
    x = torch.randn(2, 8, 10, 12, dtype=torch.float64)
    check_against_torch(x.to(memory_format=torch.channels_last), dict(kernel_size=2, stride=2))
    check_against_torch(x.transpose(2, 3), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True))
    check_against_torch(x[:, ::2, 1:, ::3], dict(kernel_size=2))


def test_family_shapes_cpu():
    """Full batch-32 family shapes on the CPU kernels (the emulator runs the smaller ones above)."""
    torch.manual_seed(0)
    for shape in [(32, 6, 28, 28), (32, 96, 24, 24), (32, 192, 12, 12), (5, 7, 31, 33)]:
        check_against_torch(torch.randn(shape), dict(kernel_size=2, stride=2))


def test_deterministic_across_threads():
    x = torch.randn(4, 16, 24, 24)
    n = torch.get_num_threads()
    outs = []
    for t in (1, 2):
        torch.set_num_threads(t)
        xg = x.clone().requires_grad_()
        y = avg_pool2d(xg, 3, 2, 1, True, False)
        y.backward(torch.ones_like(y))
        outs.append((y.detach(), xg.grad))
    torch.set_num_threads(n)
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


def test_gradcheck(backend):
    x = torch.randn(2, 2, 7, 6, dtype=torch.float64, requires_grad=True)
    for args in [(2, 2, 0), (3, 2, 1, True, False), (3, 1, 1, False, True, 4)]:
        assert torch.autograd.gradcheck(lambda t: avg_pool2d(t, *args), (x,))
    assert torch.autograd.gradgradcheck(lambda t: avg_pool2d(t, 3, 2, 1, True, False), (x,))


def test_opcheck(backend):
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    for args in [([2], [], [0], False, True, None), ([3, 2], [2, 1], [1, 1], True, False, None),
                 ([3, 3], [2, 2], [1, 0], True, True, 5)]:
        y = torch.ops.cnnext.avg_pool2d_forward(x, *args)
        torch.library.opcheck(torch.ops.cnnext.avg_pool2d_forward.default, (x, *args))
        torch.library.opcheck(torch.ops.cnnext.avg_pool2d_backward.default,
                              (torch.randn_like(y), list(x.shape), *args))


def test_backends_agree():
    x = torch.randn(3, 4, 11, 13, dtype=torch.float64)
    with on("emu"):
        y_emu = avg_pool2d(x, 3, 2, 1, True, False)
    assert_rel_close(avg_pool2d(x, 3, 2, 1, True, False), y_emu)


def test_torch_compile_fullgraph():
    def f(x):
        return torch.sigmoid(avg_pool2d(x, 2, 2)).sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 3, 8, 9, requires_grad=True)
    out = compiled(x)
    out.backward()
    x2 = x.detach().clone().requires_grad_()
    ref = torch.sigmoid(F.avg_pool2d(x2, 2, 2)).sum()
    ref.backward()
    assert_rel_close(out, ref)
    assert_rel_close(x.grad, x2.grad)


def test_module_drop_in(backend):
    for kwargs in [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                                              count_include_pad=False, divisor_override=None),
                   dict(kernel_size=(2, 3), stride=(1, 2), divisor_override=4)]:
        m, ref = cnnext.nn.AvgPool2d(**kwargs), torch.nn.AvgPool2d(**kwargs)
        assert repr(m) == repr(ref)
        assert isinstance(m, torch.nn.AvgPool2d) and m.state_dict().keys() == ref.state_dict().keys()
        x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
        assert_rel_close(m(x), ref(x))


def test_empty_batch(backend):
    x = torch.randn(0, 3, 6, 6, requires_grad=True)
    y = avg_pool2d(x, 2)
    assert y.shape == (0, 3, 3, 3)
    y.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: (torch.ones(1, 4, 4, dtype=torch.int32), dict(kernel_size=2)), r"avg_pool2d: input must be float32"),
        (lambda: (torch.ones(1, 4, 4, dtype=torch.float8_e4m3fn), dict(kernel_size=2)), r"avg_pool2d: input must be float32"),
        (lambda: (torch.ones(4, 4), dict(kernel_size=2)), r"avg_pool2d: input must be 3-D \(C, H, W\) or 4-D.*got 2-D"),
        (lambda: (torch.ones(1, 1, 1, 4, 4), dict(kernel_size=2)), r"avg_pool2d: input must be 3-D .*got 5-D"),
        (lambda: (torch.ones(1, 0, 4, 4), dict(kernel_size=2)), r"avg_pool2d: input must have nonzero C, H and W"),
        (lambda: (torch.ones(1, 4, 4), dict(kernel_size=0)), r"avg_pool2d: kernel_size must be positive"),
        (lambda: (torch.ones(1, 4, 4), dict(kernel_size=(2, -1))), r"avg_pool2d: kernel_size must be positive"),
        (lambda: (torch.ones(1, 4, 4), dict(kernel_size=2, stride=0)), r"avg_pool2d: stride must be positive"),
        (lambda: (torch.ones(1, 4, 4), dict(kernel_size=2, stride=(1, -2))), r"avg_pool2d: stride must be positive"),
        (lambda: (torch.ones(1, 4, 4), dict(kernel_size=2, padding=-1)), r"avg_pool2d: padding must be non-negative"),
        (lambda: (torch.ones(1, 6, 6), dict(kernel_size=3, padding=2)),
         r"avg_pool2d: padding .* should be at most half of kernel_size .*pad should be at most half"),
        (lambda: (torch.ones(1, 6, 6), dict(kernel_size=(4, 2), padding=(2, 2))), r"avg_pool2d: padding .* at most half"),
        (lambda: (torch.ones(1, 4, 4), dict(kernel_size=5)), r"avg_pool2d: kernel_size .* larger than the padded input"),
        (lambda: (torch.ones(1, 4, 4), dict(kernel_size=(2, 7), padding=1)),
         r"avg_pool2d: kernel_size .* larger than the padded input"),
        (lambda: (torch.ones(1, 4, 4), dict(kernel_size=2, divisor_override=0)),
         r"avg_pool2d: divisor_override must not be zero"),
        (lambda: (torch.ones(1, 4, 4), dict(kernel_size=(2, 2, 2))), r"avg_pool2d: kernel_size must be an int or a pair"),
        (lambda: (torch.ones(1, 4, 4), dict(kernel_size=2, stride=(1, 1, 1))),
         r"avg_pool2d: stride must be an int or a pair"),
    ],
)
def test_bad_input(backend, make, match):
    x, kwargs = make()
    with pytest.raises((RuntimeError, TypeError, ValueError), match=match):
        avg_pool2d(x, **kwargs)
    if x.dtype in (torch.float32, torch.float64):  # the fake kernel gives the same message
        with pytest.raises((RuntimeError, TypeError, ValueError), match=match):
            avg_pool2d(x.to("meta"), **kwargs)


def test_bad_backward_arguments():
    gy = torch.ones(1, 2, 2, 2)
    with pytest.raises(RuntimeError, match=r"avg_pool2d: grad_output has shape .* but the output"):
        torch.ops.cnnext.avg_pool2d_backward(gy, [1, 2, 6, 6], [2], [], [0], False, True, None)
    with pytest.raises(RuntimeError, match=r"avg_pool2d: input_shape must be 3-D"):
        torch.ops.cnnext.avg_pool2d_backward(gy, [4, 4], [2], [], [0], False, True, None)
    with pytest.raises(TypeError, match=r"avg_pool2d: grad_output must be float32"):
        torch.ops.cnnext.avg_pool2d_backward(gy.int(), [1, 2, 4, 4], [2], [], [0], False, True, None)


@pytest.mark.parametrize(
    "args,kwargs,exc,match",
    [
        # a kernel of 2^63 - 1 once wrapped (in + 2p - k) around int64 into a valid-looking (1, 1) output
        ((torch.ones(1, 1, 2, 2),), dict(kernel_size=2**63 - 1), RuntimeError, r"avg_pool2d: kernel_size .* larger"),
        ((torch.ones(1, 1, 2, 2),), dict(kernel_size=(2**63 - 1, 1)), RuntimeError, r"avg_pool2d: kernel_size"),
        ((torch.ones(1, 1, 2, 2),), dict(kernel_size=2**64), ValueError, r"avg_pool2d: kernel_size must fit in int64"),
        ((torch.ones(1, 1, 2, 2),), dict(kernel_size=2**62, padding=2**61), RuntimeError, r"avg_pool2d: .*padding"),
        ((None, 2), {}, TypeError, r"avg_pool2d: input must be a Tensor, got NoneType"),
        (([[1.0, 2.0], [3.0, 4.0]], 2), {}, TypeError, r"avg_pool2d: input must be a Tensor, got list"),
        ((2.5, 2), {}, TypeError, r"avg_pool2d: input must be a Tensor, got float"),
        ((torch.ones(1, 4, 4),), dict(kernel_size=None), TypeError, r"avg_pool2d: kernel_size must be an int or a pair"),
        ((torch.ones(1, 4, 4),), dict(kernel_size=2.5), TypeError, r"avg_pool2d: kernel_size must be an int or a pair"),
        ((torch.ones(1, 4, 4),), dict(kernel_size=True), TypeError, r"avg_pool2d: kernel_size must be an int or a pair"),
        ((torch.ones(1, 4, 4),), dict(kernel_size="3"), TypeError, r"avg_pool2d: kernel_size must be an int or a pair"),
        ((torch.ones(1, 4, 4),), dict(kernel_size=()), ValueError, r"avg_pool2d: kernel_size must be an int or a pair"),
        ((torch.ones(1, 4, 4),), dict(kernel_size=2, stride=1.5), TypeError, r"avg_pool2d: stride must be an int"),
        ((torch.ones(1, 4, 4),), dict(kernel_size=2, padding=1.5), TypeError, r"avg_pool2d: padding must be an int"),
        ((torch.ones(1, 4, 4),), dict(kernel_size=2, divisor_override=1.5), TypeError,
         r"avg_pool2d: divisor_override must be an int"),
    ],
)
def test_bad_argument_values_and_types(args, kwargs, exc, match):
    """Regressions from the robustness fuzzer: every bad argument raises naming the op and the argument."""
    with pytest.raises(exc, match=match):
        avg_pool2d(*args, **kwargs)


def test_argument_forms_as_torch():
    """What torch accepts for the size arguments, cnnext accepts too: 1-element lists, numpy and 0-d tensor
    ints, bools inside a list, an empty stride (= kernel_size)."""
    np = pytest.importorskip("numpy")
    x = torch.randn(1, 2, 7, 6)
    for kw in (dict(kernel_size=[3]), dict(kernel_size=np.int64(2)), dict(kernel_size=torch.tensor(2)),
               dict(kernel_size=[2, True]), dict(kernel_size=2, stride=[]), dict(kernel_size=3, stride=(2,), padding=[1]),
               dict(kernel_size=2, divisor_override=np.int64(3))):
        assert_rel_close(avg_pool2d(x, **kw), F.avg_pool2d(x, **kw))


@pytest.mark.parametrize("name", ["rows", "2x2", "global"])
def test_each_cpu_variant(name, monkeypatch):
    """CNNEXT_AVG_POOL2D=<variant> (csrc/cpu/avg_pool2d_variants.h) runs that variant of avg_pool2d and
    adaptive_avg_pool2d: against torch (outputs, gradients) on every case it runs on; the others raise
    'does not run on this call'."""
    monkeypatch.setenv("CNNEXT_AVG_POOL2D", name)
    adaptive = [((2, 64, 7, 7), 1), ((3, 5, 13, 11), 1), ((2, 16, 3, 3), 1), ((2, 8, 5, 6), (2, 3)), ((2, 4, 8, 8), 4)]
    ran = set()
    for dtype in (torch.float32, torch.float64):
        torch.manual_seed(0)
        for i, case in enumerate(CASES):
            try:
                check_against_torch(torch.randn(case[0], dtype=dtype), reference_args(case))
                ran.add(("avg", i))
            except RuntimeError as e:
                if f"CNNEXT_AVG_POOL2D={name} does not run on this call" not in str(e):
                    raise
        for i, (shape, size) in enumerate(adaptive):
            x = torch.randn(shape, dtype=dtype, requires_grad=True)
            x2 = x.detach().clone().requires_grad_()
            try:
                y = cnnext.functional.adaptive_avg_pool2d(x, size)
            except RuntimeError as e:
                if f"CNNEXT_AVG_POOL2D={name} does not run on this call" not in str(e):
                    raise
                continue
            y2 = F.adaptive_avg_pool2d(x2, size)
            g = torch.randn_like(y2)
            y.backward(g), y2.backward(g)
            assert_rel_close(y, y2, what="adaptive output"), assert_rel_close(x.grad, x2.grad, what="adaptive grad")
            ran.add(("adaptive", i))
    if name == "rows":  # any plan
        assert len(ran) == len(CASES) + len(adaptive)
    elif name == "2x2":  # LeNet's pools, DenseNet's transition, adaptive 8 -> 4; not 3x3 windows
        assert {("avg", 0), ("avg", 1), ("avg", 2), ("adaptive", 4)} <= ran and ("avg", 5) not in ran
    else:  # a window that is the whole plane (kernel = input, a clipped 4x4 on 3x3) and the (1, 1) heads
        assert ran == {("avg", 17), ("avg", 18), ("avg", 21), ("adaptive", 0), ("adaptive", 1), ("adaptive", 2)}
