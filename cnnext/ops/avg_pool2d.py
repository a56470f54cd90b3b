"""avg_pool2d: 2-D average pooling (d2l 7.5), torch.nn.functional.avg_pool2d's semantics."""
import torch
from torch import Tensor

from . import _checks
from ._autograd import fast_apply
from ._checks import cpp_checks
from ._geometry import pool_shape


@torch.library.register_fake("cnnext::avg_pool2d_forward")
def _avg_pool2d_forward_fake(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    cpp_checks(_forward_op, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
    return input.new_empty(pool_shape("avg_pool2d", input.shape, kernel_size, stride, padding, 1, ceil_mode))


@torch.library.register_fake("cnnext::avg_pool2d_backward")
def _avg_pool2d_backward_fake(grad_output, input_shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
                              divisor_override):
    cpp_checks(_backward_op, grad_output, input_shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
               divisor_override)
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
    `padding`: an int or a pair. float32, float64, bfloat16 or float16 (float32 accumulation).
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
