"""avg_pool2d: 2-D average pooling (d2l 7.5), torch.nn.functional.avg_pool2d's semantics."""
import torch
from torch import Tensor

from . import _checks
from ._autograd import fast_apply


def _pair(name, v):
    if isinstance(v, int):
        return [v, v]
    v = list(v)
    torch._check(len(v) in (1, 2), lambda: f"avg_pool2d: {name} must be an int or a pair of ints, got {v}")
    return [v[0], v[-1]]


def _floor_div(a, b):
    return a // b


def _out_size(n, k, s, p, ceil_mode):
    out = _floor_div(n + 2 * p - k + (s - 1 if ceil_mode else 0), s) + 1
    if ceil_mode and out > 0 and (out - 1) * s >= n + p:
        out -= 1
    return out


def _output_shape(shape, kernel_size, stride, padding, ceil_mode, divisor_override, what):
    """The checks of csrc/ops/avg_pool2d.cpp (same messages) and the output shape, for the fake kernels."""
    torch._check(len(shape) in (3, 4),
                 lambda: f"avg_pool2d: {what} must be 3-D (C, H, W) or 4-D (N, C, H, W), got {len(shape)}-D")
    torch._check(shape[-3] > 0 and shape[-2] > 0 and shape[-1] > 0,
                 lambda: f"avg_pool2d: {what} must have nonzero C, H and W (only the batch may be empty), "
                         f"got shape {list(shape)}")
    k = _pair("kernel_size", kernel_size)
    s = k if len(stride) == 0 else _pair("stride", stride)
    p = _pair("padding", padding)
    torch._check(k[0] > 0 and k[1] > 0, lambda: f"avg_pool2d: kernel_size must be positive, got {kernel_size}")
    torch._check(s[0] > 0 and s[1] > 0, lambda: f"avg_pool2d: stride must be positive, got {stride}")
    torch._check(p[0] >= 0 and p[1] >= 0, lambda: f"avg_pool2d: padding must be non-negative, got {padding}")
    torch._check(p[0] <= k[0] // 2 and p[1] <= k[1] // 2,
                 lambda: f"avg_pool2d: padding {padding} should be at most half of kernel_size {kernel_size} "
                         "(pad should be at most half of effective kernel size)")
    torch._check(divisor_override is None or divisor_override != 0,
                 lambda: "avg_pool2d: divisor_override must not be zero")
    H, W = shape[-2], shape[-1]
    OH, OW = _out_size(H, k[0], s[0], p[0], ceil_mode), _out_size(W, k[1], s[1], p[1], ceil_mode)
    torch._check(OH > 0 and OW > 0,
                 lambda: f"avg_pool2d: kernel_size {kernel_size} is larger than the padded input "
                         f"({H + 2 * p[0]}, {W + 2 * p[1]}): output size would be ({OH}, {OW})")
    return (*shape[:-2], OH, OW)


@torch.library.register_fake("cnnext::avg_pool2d_forward")
def _avg_pool2d_forward_fake(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    torch._check(input.dtype in (torch.float32, torch.float64),
                 lambda: f"avg_pool2d: input must be float32 or float64, got {input.dtype}")
    shape = _output_shape(input.shape, kernel_size, stride, padding, ceil_mode, divisor_override, "input")
    return input.new_empty(shape)


@torch.library.register_fake("cnnext::avg_pool2d_backward")
def _avg_pool2d_backward_fake(grad_output, input_shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
                              divisor_override):
    shape = _output_shape(input_shape, kernel_size, stride, padding, ceil_mode, divisor_override, "input_shape")
    torch._check(tuple(grad_output.shape) == tuple(shape),
                 lambda: f"avg_pool2d: grad_output has shape {list(grad_output.shape)} but the output for "
                         f"input_shape {list(input_shape)} has shape {list(shape)}")
    return grad_output.new_empty(input_shape)


_forward_op = torch.ops.cnnext.avg_pool2d_forward.default
_backward_op = torch.ops.cnnext.avg_pool2d_backward.default


class AvgPool2dBackward(torch.autograd.Function):
    """The backward op as a function of grad_output, for double backward: it is linear, and its
    adjoint is the forward op."""

    @staticmethod
    def forward(grad_output, input_shape, *args):
        return _backward_op(grad_output, input_shape, *args)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.args = inputs[2:]

    @staticmethod
    def backward(ctx, grad_grad_input):
        return (_apply(grad_grad_input, *ctx.args),) + (None,) * 7


class AvgPool2dFunction(torch.autograd.Function):
    """y[oh, ow] = sum of the (clipped) window / divisor; dL/dx[h, w] = sum over the windows holding (h, w)
    of dL/dy / divisor."""

    @staticmethod
    def forward(input, *args):
        return _forward_op(input, *args)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.input_shape, ctx.args = inputs[0].shape, inputs[1:]

    @staticmethod
    def backward(ctx, grad_output):
        # differentiable with create_graph=True
        return (_apply_backward(grad_output, ctx.input_shape, *ctx.args),) + (None,) * 6


# Function.apply, in the cheaper classic form outside torch.func transforms (see _autograd.py)
_apply = fast_apply(AvgPool2dFunction)
_apply_backward = fast_apply(AvgPool2dBackward)


def avg_pool2d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override=None) -> Tensor:
    r"""2-D average pooling of `input` (N, C, H, W) or (C, H, W), as torch.nn.functional.avg_pool2d:

    .. math:: y[n, c, i, j] = \frac{1}{d_{ij}} \sum_{u < k_H,\, v < k_W} x_{pad}[n, c, s_H i + u, s_W j + v]

    with the window clipped to the padded input (ceil_mode's overhang never counts) and the divisor
    :math:`d_{ij}` = `divisor_override`, else the window size counting padding if `count_include_pad`,
    else the number of input elements in it. `kernel_size`, `stride` (default: `kernel_size`) and
    `padding`: an int or a pair. float32 or float64.
    """
    _checks.tensor("avg_pool2d", "input", input)
    k = _checks.pair("avg_pool2d", "kernel_size", kernel_size)
    # stride=None or [] (torch accepts both): the kernel size
    s = [] if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0) else \
        _checks.pair("avg_pool2d", "stride", stride)
    if divisor_override is not None:
        divisor_override = _checks.integer("avg_pool2d", "divisor_override", divisor_override)
    args = (k, s, _checks.pair("avg_pool2d", "padding", padding), bool(ceil_mode), bool(count_include_pad),
            divisor_override)
    return _apply(input, *args)
