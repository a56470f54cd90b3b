"""corr2d: single-channel valid 2-D cross-correlation (d2l 6.2)."""
import torch
from torch import Tensor

from . import _checks
from ._autocast import lower_precision
from ._autograd import fast_apply
from ._checks import cpp_checks
from ._geometry import corr2d_shape


@torch.library.register_fake("cnnext::corr2d_forward")
def _corr2d_forward_fake(input, kernel):
    cpp_checks(_forward_op, input, kernel)
    return input.new_empty(corr2d_shape(input.shape, kernel.shape))


@torch.library.register_fake("cnnext::corr2d_backward_input")
def _corr2d_backward_input_fake(grad_output, kernel, input_shape):
    cpp_checks(torch.ops.cnnext.corr2d_backward_input.default, grad_output, kernel, input_shape)
    return grad_output.new_empty(input_shape)


@torch.library.register_fake("cnnext::corr2d_backward_kernel")
def _corr2d_backward_kernel_fake(grad_output, input, kernel_size):
    cpp_checks(torch.ops.cnnext.corr2d_backward_kernel.default, grad_output, input, kernel_size)
    return input.new_empty(kernel_size)


class Corr2dFunction(torch.autograd.Function):
    """y = corr2d(x, K); dL/dx = full correlation of dL/dy with flipped K; dL/dK[u, v] = sum dL/dy * x[u:, v:]."""

    @staticmethod
    def forward(input, kernel):
        return _forward_op(input, kernel)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad_output):
        input, kernel = ctx.saved_tensors
        grad_input = grad_kernel = None
        if ctx.needs_input_grad[0]:
            grad_input = torch.ops.cnnext.corr2d_backward_input(grad_output, kernel, input.shape)
        if ctx.needs_input_grad[1]:
            grad_kernel = torch.ops.cnnext.corr2d_backward_kernel(grad_output, input, kernel.shape)
        return grad_input, grad_kernel


def corr2d(input: Tensor, kernel: Tensor) -> Tensor:
    r"""Valid 2-D cross-correlation of every (H, W) plane of `input` (..., H, W) with `kernel` (kh, kw):

    .. math:: y[..., i, j] = \sum_{u < kh,\, v < kw} x[..., i+u, j+v]\, K[u, v]

    Output shape (..., H-kh+1, W-kw+1). float32, float64, bfloat16 or float16 (float32 accumulation);
    under torch.autocast cast to its dtype, as conv2d is.
    """
    _checks.tensor("corr2d", "input", input)
    _checks.tensor("corr2d", "kernel", kernel)
    return _apply(*lower_precision(input, kernel))


_forward_op = torch.ops.cnnext.corr2d_forward.default
# Function.apply, in the cheaper classic form outside torch.func transforms (see _autograd.py)
_apply = fast_apply(Corr2dFunction)
