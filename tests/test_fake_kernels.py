"""The fake kernels (cnnext/ops/*.py, register_fake): every argument check is csrc/ops' own.

A fake kernel runs the C++ op on meta stand-ins for its checks (cnnext/ops/_checks.py, cpp_checks)
and computes the output shape with cnnext/ops/_geometry.py. So under FakeTensorMode a bad call must
fail with exactly the message the real op gives, a good one must give the real op's shapes, strides
and dtypes, and torch.compile with dynamic shapes must trace through."""
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import cnnext  # noqa: F401  (registers the ops)
import cnnext.functional as cf

ops = torch.ops.cnnext


def _r(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype)


def _message(fn, args):
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - the message is what is compared
        return type(e).__name__, str(e).split("\n")[0]
    return None


def _fake(args):
    mode = FakeTensorMode()
    conv = lambda a: mode.from_tensor(a) if isinstance(a, torch.Tensor) else (  # noqa: E731
        [conv(x) for x in a] if isinstance(a, list) else a)
    return mode, [conv(a) for a in args]


def _i(t):
    return torch.zeros(t, dtype=torch.int64)


# (op, args): each call is refused by the C++ op; the cases cover every op and backward op
BAD = [
    (ops.conv2d_forward, (_r(1, 2, 5, 5), _r(4, 3, 3, 3), None, [1], [0], [1], 1)),            # weight channels
    (ops.conv2d_forward, (_r(1, 2, 5, 5), _r(4, 2, 3, 3), _r(3), [1], [0], [1], 1)),           # bias size
    (ops.conv2d_forward, (_r(1, 2, 5, 5), _r(4, 2, 3, 3), None, [0], [0], [1], 1)),            # stride
    (ops.conv2d_forward, (_r(1, 2, 5, 5), _r(4, 2, 3, 3), None, [1], [-1], [1], 1)),           # padding
    (ops.conv2d_forward, (_r(1, 2, 5, 5), _r(4, 2, 3, 3), None, [1], [0], [1, 1, 1], 1)),      # dilation length
    (ops.conv2d_forward, (_r(1, 2, 5, 5), _r(4, 2, 3, 3, dtype=torch.float64), None, [1], [0], [1], 1)),
    (ops.conv2d_forward, (_r(1, 2, 2, 2), _r(4, 2, 3, 3), None, [1], [0], [1], 1)),            # kernel too large
    (ops.conv2d_forward, (_r(1, 4, 5, 5), _r(3, 2, 3, 3), None, [1], [0], [1], 2)),            # groups
    (ops.conv2d_backward_input, (_r(1, 4, 3, 4), _r(4, 2, 3, 3), [1, 2, 5, 5], [1], [0], [1], 1)),
    (ops.conv2d_backward_weight, (_r(1, 4, 3, 3), _r(1, 2, 5, 5), [4, 2, 3, 2], [1], [0], [1], 1, True)),
    (ops.corr2d_forward, (_r(3, 3), _r(4, 4))),
    (ops.corr2d_forward, (_r(5, 5), _r(2, 2, 2))),
    (ops.corr2d_backward_input, (_r(3, 3), _r(2, 2), [5, 5])),
    (ops.corr2d_backward_kernel, (_r(3, 3), _r(4, 4), [2, 2, 2])),
    (ops.max_pool2d_forward, (_r(1, 1, 5, 5), [2], [], [2], [1], False)),                      # padding > k / 2
    (ops.max_pool2d_forward, (_r(1, 1, 5, 5), [2], [], [0], [0], False)),                      # dilation
    (ops.max_pool2d_forward, (_r(1, 1, 5, 5), [2**31], [], [0], [1], False)),                  # int32 range
    (ops.max_pool2d_forward, (_r(5, 5), [2], [], [0], [1], False)),                            # 2-D input
    (ops.max_pool2d, (_r(1, 1, 1, 1), [3], [], [1], [3], False)),                              # output too small
    (ops.max_pool2d_backward, (_r(1, 1, 2, 3), _i((1, 1, 2, 3)), [1, 1, 4, 4], [2], [], [0], [1], False)),
    (ops.max_pool2d_backward, (_r(1, 1, 2, 2), _i((1, 1, 2, 2)).int(), [1, 1, 4, 4], [2], [], [0], [1], False)),
    (ops.avg_pool2d_forward, (_r(1, 1, 5, 5), [0], [], [0], False, True, None)),
    (ops.avg_pool2d_forward, (_r(1, 1, 5, 5), [2], [], [0], False, True, 0)),                  # divisor_override
    (ops.avg_pool2d_forward, (_r(1, 1, 5, 5).int(), [2], [], [0], False, True, None)),         # dtype
    (ops.avg_pool2d_backward, (_r(1, 1, 3, 3), [1, 1, 4, 4], [2], [], [0], False, True, None)),
    (ops.adaptive_avg_pool2d_forward, (_r(1, 1, 5, 5), [0, 1])),
    (ops.adaptive_avg_pool2d_forward, (_r(1, 0, 5, 5), [1, 1])),
    (ops.adaptive_avg_pool2d_backward, (_r(1, 2, 1, 1), [1, 3, 4, 4])),
    (ops.batch_norm_forward, (_r(2, 3, 4), _r(4), None, None, None, True, 0.1, 1e-5, False)),  # weight size
    (ops.batch_norm_forward, (_r(2, 3, 4), None, None, _r(3), None, True, 0.1, 1e-5, False)),  # one running stat
    (ops.batch_norm_forward, (_r(2, 3, 4), None, None, None, None, False, 0.1, 1e-5, False)),  # eval, no stats
    (ops.batch_norm_forward, (_r(2, 3, 4), None, None, None, None, True, 0.1, 0.0, True)),     # eps
    (ops.batch_norm_forward, (_r(3), None, None, None, None, True, 0.1, 1e-5, False)),         # 1-D input
    (ops.batch_norm_backward, (_r(2, 3, 5), _r(2, 3, 4), None, None, _r(3), _r(3), True, False)),
    (ops.batch_norm_backward, (_r(2, 3, 4), _r(2, 3, 4), None, None, _r(3, dtype=torch.float64), _r(3), True, False)),
    (ops.cat_forward, ([_r(2, 3), _r(2, 4)], 0)),                                              # sizes
    (ops.cat_forward, ([_r(2, 3), _r(2, 3, 1)], 0)),                                           # ranks
    (ops.cat_forward, ([_r(2, 3), _r(2, 3, dtype=torch.float64)], 0)),                         # dtypes
    (ops.cat_forward, ([_r(2, 3), _r(2, 3)], 2)),                                              # dim
    (ops.cat_forward, ([torch.tensor(1.0)], 0)),                                               # 0-D
    (ops.cat_backward, (_r(4, 3), 0, [1, 2])),                                                 # split sizes
    (ops.cat_backward, (_r(4, 3), 0, [5, -1])),
]


@pytest.mark.parametrize("op,args", BAD, ids=[f"{op._qualified_op_name.split('::')[1]}-{i}" for i, (op, _) in
                                              enumerate(BAD)])
def test_fake_kernel_refuses_with_the_cpp_message(op, args):
    real = _message(op, args)
    assert real is not None, "the real op accepted a call this test expects it to refuse"
    mode, fake_args = _fake(args)
    with mode:
        fake = _message(op, fake_args)
    assert fake == real
    # a call on meta tensors goes to the same fake kernel
    meta = [a.to("meta") if isinstance(a, torch.Tensor) else
            [t.to("meta") for t in a] if isinstance(a, list) and a and isinstance(a[0], torch.Tensor) else a
            for a in args]
    assert _message(op, meta) == real


def test_fake_kernel_device_rule():
    """Meta stand-ins are all on one device: the device rule is checked in Python, in csrc/ops' words."""
    x, w = _r(1, 2, 5, 5), _r(4, 2, 3, 3).to("meta")
    with pytest.raises(RuntimeError, match=r"^conv2d: weight is on meta but input is on cpu; they must be on the "
                                           r"same device$"):
        ops.conv2d_forward(x, w, None, [1], [0], [1], 1)
    gy, i = _r(1, 1, 2, 2).to("meta"), _i((1, 1, 2, 2))
    with pytest.raises(RuntimeError, match=r"^max_pool2d: indices is on cpu but grad_output is on meta"):
        ops.max_pool2d_backward(gy, i, [1, 1, 4, 4], [2], [], [0], [1], False)
    with pytest.raises(RuntimeError, match=r"^cat: tensors\[1\] is on meta but tensors\[0\] is on cpu"):
        ops.cat_forward([_r(2, 3), _r(2, 3).to("meta")], 0)
    with pytest.raises(RuntimeError, match=r"^batch_norm: running_var is on meta but input is on cpu"):
        ops.batch_norm_forward(_r(2, 3, 4), None, None, _r(3), _r(3).to("meta"), True, 0.1, 1e-5, False)


GOOD = [
    (ops.conv2d_forward, (_r(2, 4, 9, 8), _r(6, 2, 3, 2), _r(6), [2, 1], [1, 0], [1, 2], 2)),
    (ops.conv2d_backward_input, (_r(2, 6, 5, 6), _r(6, 2, 3, 2), [2, 4, 9, 8], [2, 1], [1, 0], [1, 2], 2)),
    (ops.conv2d_backward_weight, (_r(2, 6, 5, 6), _r(2, 4, 9, 8), [6, 2, 3, 2], [2, 1], [1, 0], [1, 2], 2, True)),
    (ops.corr2d_forward, (_r(3, 7, 6), _r(2, 3))),
    (ops.max_pool2d_forward, (_r(2, 3, 9, 7).contiguous(memory_format=torch.channels_last), [3, 2], [2], [1], [1],
                              True)),
    (ops.max_pool2d, (_r(3, 9, 7), [3], [], [1], [2], False)),
    (ops.avg_pool2d_forward, (_r(2, 3, 9, 7), [3, 2], [2], [1], True, False, None)),
    (ops.adaptive_avg_pool2d_forward, (_r(2, 3, 9, 7), [4, 3])),
    (ops.batch_norm_forward, (_r(4, 3, 5, 5).contiguous(memory_format=torch.channels_last), _r(3), _r(3), _r(3),
                              _r(3).abs(), True, 0.1, 1e-5, True)),
    (ops.cat_forward, ([_r(2, 3, 4), torch.empty(0), _r(2, 5, 4)], -2)),
    (ops.cat_backward, (_r(2, 8, 4), 1, [3, 5])),
]


@pytest.mark.parametrize("op,args", GOOD, ids=[op._qualified_op_name.split("::")[1] for op, _ in GOOD])
def test_fake_kernel_matches_the_real_outputs(op, args):
    real = op(*args)
    mode, fake_args = _fake(args)
    with mode:
        fake = op(*fake_args)
    real, fake = (list(x) if isinstance(x, (tuple, list)) else [x] for x in (real, fake))
    assert [(t.shape, t.stride(), t.dtype) for t in fake] == [(t.shape, t.stride(), t.dtype) for t in real]


class _Net(torch.nn.Module):
    def forward(self, x, w, k):
        y = cf.conv2d(x, w, padding=1)
        y = cf.batch_norm_relu(y, None, None, training=True)
        y = cf.cat([cf.max_pool2d(y, 3, stride=2, padding=1, ceil_mode=True),
                    cf.avg_pool2d(y, 3, stride=2, padding=1, ceil_mode=True)], 1)
        return cf.adaptive_avg_pool2d(y, 1).sum() + cf.corr2d(x[0, 0], k).sum()


def test_compile_with_dynamic_shapes():
    """The fake kernels trace with symbolic sizes (their checks run at the sizes' example values)."""
    net = _Net()
    compiled = torch.compile(net, backend="aot_eager", dynamic=True, fullgraph=True)
    w, k = torch.randn(4, 3, 3, 3, requires_grad=True), torch.randn(2, 2)
    for shape in [(2, 3, 9, 8), (3, 3, 12, 11), (1, 3, 7, 10)]:
        x = torch.randn(*shape, requires_grad=True)
        ref = net(x, w, k)
        out = compiled(x, w, k)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.autograd.grad(out, (x, w)), torch.autograd.grad(ref, (x, w)),
                                   rtol=1e-5, atol=1e-5)
