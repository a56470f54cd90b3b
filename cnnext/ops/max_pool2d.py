"""max_pool2d: 2-D max pooling with PyTorch's semantics (d2l 7.5), returning argmax indices."""
import torch
from torch import Tensor

from . import _checks
from ._autograd import fast_apply
from ._checks import cpp_checks
from ._geometry import layout_of, pool_shape


@torch.library.register_fake("cnnext::max_pool2d_forward")
def _max_pool2d_forward_fake(input, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    cpp_checks(_forward_op, input, kernel_size, stride, padding, dilation, ceil_mode)
    shape = pool_shape("max_pool2d", input.shape, kernel_size, stride, padding, dilation, ceil_mode)
    fmt = layout_of(input)
    return (torch.empty(shape, dtype=input.dtype, device=input.device, memory_format=fmt),
            torch.empty(shape, dtype=torch.int64, device=input.device, memory_format=fmt))


@torch.library.register_fake("cnnext::max_pool2d")
def _max_pool2d_fake(input, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    # the values op's checks and output are the forward op's (csrc/ops/max_pool2d.cpp: one function)
    return _max_pool2d_forward_fake(input, kernel_size, stride, padding, dilation, ceil_mode)[0]


@torch.library.register_fake("cnnext::max_pool2d_backward")
def _max_pool2d_backward_fake(grad_output, indices, input_shape, kernel_size, stride=(), padding=0, dilation=1,
                              ceil_mode=False):
    cpp_checks(_backward_op, grad_output, indices, input_shape, kernel_size, stride, padding, dilation, ceil_mode)
    return grad_output.new_empty(input_shape)


class MaxPool2dFunction(torch.autograd.Function):
    """(y, ind) = max_pool2d(x); dL/dx[p, ind[p, o]] += dL/dy[p, o]. The indices are not differentiable."""

    @staticmethod
    def forward(input, kernel_size, stride, padding, dilation, ceil_mode):
        return _forward_op(input, kernel_size, stride, padding, dilation, ceil_mode)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, *ctx.args = inputs
        ctx.input_shape = input.shape
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(output[1])
        ctx.set_materialize_grads(False)  # else autograd fills an int64 zero tensor for the indices' grad

    @staticmethod
    def backward(ctx, grad_output, _grad_indices):
        if grad_output is None:
            return None, None, None, None, None, None
        (indices,) = ctx.saved_tensors
        return _backward_op(grad_output, indices, ctx.input_shape, *ctx.args), None, None, None, None, None


_forward_op = torch.ops.cnnext.max_pool2d_forward.default
_values_op = torch.ops.cnnext.max_pool2d.default
_backward_op = torch.ops.cnnext.max_pool2d_backward.default
# Function.apply, in the cheaper classic form outside torch.func transforms (see _autograd.py)
_apply = fast_apply(MaxPool2dFunction)


def max_pool2d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    r"""2-D max pooling of `input` (N, C, H, W) or (C, H, W), as :func:`torch.nn.functional.max_pool2d`:

    .. math:: y[n, c, i, j] = \max_{u < k_h,\, v < k_w} x[n, c,\, i s_h - p_h + u d_h,\, j s_w - p_w + v d_w]

    taps in the padding skipped. OH = floor((H + 2 p_h - d_h (k_h - 1) - 1) / s_h) + 1 (ceil with
    ceil_mode, where a last window starting in the right padding is dropped), OW likewise; stride
    defaults to kernel_size; padding at most kernel_size / 2. With return_indices, also the int64
    flat index h * W + w of each max inside its plane (the first max wins ties, a NaN wins).
    """
    _checks.tensor("max_pool2d", "input", input)
    k = _checks.pair("max_pool2d", "kernel_size", kernel_size)
    # stride=None or [] (torch accepts both): the kernel size
    s = k if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0) else \
        _checks.pair("max_pool2d", "stride", stride)
    args = (k, s, _checks.pair("max_pool2d", "padding", padding), _checks.pair("max_pool2d", "dilation", dilation),
            bool(ceil_mode))
    if not return_indices and not (torch.is_grad_enabled() and input.requires_grad):
        return _values_op(input, *args)  # inference: the values only, no indices to write
    out, indices = _apply(input, *args)
    return (out, indices) if return_indices else out
