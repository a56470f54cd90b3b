"""conv2d: multi-channel 2-D convolution (d2l 6.3-6.4), the workhorse of every model in ch. 7."""
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _checks
from ._autocast import lower_precision
from ._autograd import fast_apply
from ._checks import cpp_checks
from ._geometry import conv_shape

_OP = "conv2d"


@torch.library.register_fake("cnnext::conv2d_forward")
def _conv2d_forward_fake(input, weight, bias, stride, padding, dilation, groups):
    cpp_checks(_forward_op, input, weight, bias, stride, padding, dilation, groups)
    return input.new_empty(conv_shape(input.shape, weight.shape, stride, padding, dilation))


@torch.library.register_fake("cnnext::conv2d_backward_input")
def _conv2d_backward_input_fake(grad_output, weight, input_shape, stride, padding, dilation, groups):
    cpp_checks(torch.ops.cnnext.conv2d_backward_input.default, grad_output, weight, input_shape, stride, padding,
               dilation, groups)
    return grad_output.new_empty(input_shape)


@torch.library.register_fake("cnnext::conv2d_backward_weight")
def _conv2d_backward_weight_fake(grad_output, input, weight_shape, stride, padding, dilation, groups, bias):
    cpp_checks(torch.ops.cnnext.conv2d_backward_weight.default, grad_output, input, weight_shape, stride, padding,
               dilation, groups, bias)
    return input.new_empty(weight_shape), input.new_empty((weight_shape[0] if bias else 0,))


class Conv2dFunction(torch.autograd.Function):
    r"""y[n, k] = b[k] + sum_c x[n, c] \star w[k, c] (strided, padded, dilated, grouped cross-correlation).

    dL/dx = transposed conv of dL/dy with w; dL/dw[k, c, r, s] = sum_{n, p, q} dL/dy[n, k, p, q] x[n, c, ...];
    dL/db[k] = sum_{n, p, q} dL/dy[n, k, p, q]. The two backward passes are autograd Functions too, so
    double backward works (each is bilinear; their derivatives are conv2d and the other backward pass).
    """

    @staticmethod
    def forward(input, weight, bias, stride, padding, dilation, groups):
        return _forward_op(input, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, weight, bias, stride, padding, dilation, groups = inputs
        ctx.save_for_backward(input, weight)
        ctx.conv = (stride, padding, dilation, groups)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_input = _backward_input(grad_output, weight, input.shape, *ctx.conv)
        want_bias = ctx.has_bias and ctx.needs_input_grad[2]
        if ctx.needs_input_grad[1] or want_bias:
            gw, gb = _backward_weight(grad_output, input, weight.shape, *ctx.conv, want_bias)
            grad_weight = gw if ctx.needs_input_grad[1] else None
            grad_bias = gb if want_bias else None
        return grad_input, grad_weight, grad_bias, None, None, None, None


class Conv2dBackwardInput(torch.autograd.Function):
    """gx = conv2d_backward_input(gy, w), linear in gy and in w:
    d<ggx, gx>/dgy = conv2d(ggx, w);  d<ggx, gx>/dw = conv2d_backward_weight(gy, input=ggx)."""

    @staticmethod
    def forward(grad_output, weight, input_shape, stride, padding, dilation, groups):
        return torch.ops.cnnext.conv2d_backward_input(grad_output, weight, input_shape, stride, padding, dilation,
                                                      groups)

    @staticmethod
    def setup_context(ctx, inputs, output):
        grad_output, weight, input_shape, *conv = inputs
        ctx.save_for_backward(grad_output, weight)
        ctx.conv = tuple(conv)

    @staticmethod
    def backward(ctx, ggx):
        grad_output, weight = ctx.saved_tensors
        g_gy = g_w = None
        if ctx.needs_input_grad[0]:
            g_gy = _conv2d(ggx, weight, None, *ctx.conv)
        if ctx.needs_input_grad[1]:
            g_w, _ = _backward_weight(grad_output, ggx, weight.shape, *ctx.conv, False)
        return g_gy, g_w, None, None, None, None, None


class Conv2dBackwardWeight(torch.autograd.Function):
    """(gw, gb) = conv2d_backward_weight(gy, x), linear in gy and in x:
    d<ggw, gw> + <ggb, gb> / dgy = conv2d(x, ggw, bias=ggb);  d<ggw, gw>/dx = conv2d_backward_input(gy, ggw)."""

    @staticmethod
    def forward(grad_output, input, weight_shape, stride, padding, dilation, groups, bias):
        return torch.ops.cnnext.conv2d_backward_weight(grad_output, input, weight_shape, stride, padding, dilation,
                                                       groups, bias)

    @staticmethod
    def setup_context(ctx, inputs, output):
        grad_output, input, weight_shape, stride, padding, dilation, groups, bias = inputs
        ctx.save_for_backward(grad_output, input)
        ctx.conv = (stride, padding, dilation, groups)
        ctx.bias = bias

    @staticmethod
    def backward(ctx, ggw, ggb):
        grad_output, input = ctx.saved_tensors
        g_gy = g_x = None
        if ctx.needs_input_grad[0]:
            g_gy = _conv2d(input, ggw, ggb if ctx.bias else None, *ctx.conv)
        if ctx.needs_input_grad[1]:
            g_x = _backward_input(grad_output, ggw, input.shape, *ctx.conv)
        return g_gy, g_x, None, None, None, None, None, None


_forward_op = torch.ops.cnnext.conv2d_forward.default
# Function.apply, in the cheaper classic form outside torch.func transforms (see _autograd.py)
_conv2d = fast_apply(Conv2dFunction)
_backward_input = fast_apply(Conv2dBackwardInput)
_backward_weight = fast_apply(Conv2dBackwardWeight)


def conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    stride=1,
    padding: Union[str, int, tuple] = 0,
    dilation=1,
    groups: int = 1,
) -> Tensor:
    r"""2-D convolution (cross-correlation), exactly as :func:`torch.nn.functional.conv2d`:

    .. math:: y[n, k, p, q] = b[k] + \sum_{c, r, s} x[n, g C_g + c,\ p s_h - p_h + r d_h,\ q s_w - p_w + s d_w]\,
              w[k, c, r, s]

    with g = k // (K / groups), C_g = C / groups, out of range x taken as 0.
    input (N, C, H, W) or (C, H, W); weight (K, C/groups, kh, kw); bias (K) or None; stride, padding,
    dilation an int or a pair; padding also 'valid' (0) or 'same' (output size = input size, stride 1;
    for an even dilated kernel the extra row/column of zeros goes on the bottom/right, as in torch).
    Output (N, K, P, Q), P = (H + 2 p_h - d_h (kh - 1) - 1) // s_h + 1. float32, float64, bfloat16 or
    float16 (float32 accumulation); under torch.autocast cast to its dtype, as torch's conv2d is.
    """
    _checks.tensor(_OP, "input", input)
    _checks.tensor(_OP, "weight", weight)
    if bias is not None:
        _checks.tensor(_OP, "bias", bias)
    groups = _checks.integer(_OP, "groups", groups)
    stride, dilation = _checks.pair(_OP, "stride", stride), _checks.pair(_OP, "dilation", dilation)
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError("conv2d: padding='same' is not supported for strided convolutions (stride "
                                 f"{stride})")
            if input.dim() not in (3, 4):
                raise ValueError(f"conv2d: input must be 3-D (C, H, W) or 4-D (N, C, H, W), got {input.dim()}-D")
            if weight.dim() != 4:
                raise ValueError(f"conv2d: weight must be 4-D (out, in/groups, kh, kw), got {weight.dim()}-D")
            # A non-positive dilation gets no padding here, so that the C++ check names dilation.
            totals = [max(d, 0) * (k - 1) for d, k in zip(dilation, weight.shape[2:])]
            padding = tuple(t // 2 for t in totals)
            extra = [t - 2 * (t // 2) for t in totals]  # 1 where the total padding is odd
            if any(extra):
                input = F.pad(input, (0, extra[1], 0, extra[0]))
        else:
            raise ValueError(f"conv2d: padding must be 'valid', 'same', an int or a pair, got '{padding}'")
    else:
        padding = _checks.pair(_OP, "padding", padding)
    input, weight, bias = lower_precision(input, weight, bias)
    return _conv2d(input, weight, bias, list(stride), list(padding), list(dilation), groups)
