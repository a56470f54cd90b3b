"""adaptive_avg_pool2d: average pooling to a given output size, torch.nn.functional.adaptive_avg_pool2d's
semantics (the global (1, 1) average of ResNet, GoogLeNet, NiN and DenseNet heads)."""
import torch
from torch import Tensor

from . import _checks
from ._autograd import fast_apply
from ._checks import cpp_checks


@torch.library.register_fake("cnnext::adaptive_avg_pool2d_forward")
def _adaptive_avg_pool2d_forward_fake(input, output_size):
    cpp_checks(_forward_op, input, output_size)
    return input.new_empty((*input.shape[:-2], *output_size))


@torch.library.register_fake("cnnext::adaptive_avg_pool2d_backward")
def _adaptive_avg_pool2d_backward_fake(grad_output, input_shape):
    cpp_checks(_backward_op, grad_output, input_shape)
    return grad_output.new_empty(input_shape)


_forward_op = torch.ops.cnnext.adaptive_avg_pool2d_forward.default
_backward_op = torch.ops.cnnext.adaptive_avg_pool2d_backward.default


class AdaptiveAvgPool2dBackward(torch.autograd.Function):
    """The backward op as a function of grad_output, for double backward: it is linear, and its
    adjoint is the forward op."""

    @staticmethod
    def forward(grad_output, input_shape):
        return _backward_op(grad_output, input_shape)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.output_size = list(inputs[0].shape[-2:])

    @staticmethod
    def backward(ctx, grad_grad_input):
        return _apply(grad_grad_input, ctx.output_size), None


class AdaptiveAvgPool2dFunction(torch.autograd.Function):
    """y[i, j] = mean of x over rows [floor(i H/OH), ceil((i+1) H/OH)) and the like columns;
    dL/dx[h, w] = sum over the windows holding (h, w) of dL/dy / window area."""

    @staticmethod
    def forward(input, output_size):
        return _forward_op(input, output_size)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.input_shape = inputs[0].shape

    @staticmethod
    def backward(ctx, grad_output):
        return _apply_backward(grad_output, ctx.input_shape), None  # differentiable with create_graph=True


# Function.apply, in the cheaper classic form outside torch.func transforms (see _autograd.py)
_apply = fast_apply(AdaptiveAvgPool2dFunction)
_apply_backward = fast_apply(AdaptiveAvgPool2dBackward)


def _output_size(input, output_size):
    # as torch: an int, or a pair of ints / None (a 1-element list is refused, unlike the other pools)
    if isinstance(output_size, (list, tuple)):
        if len(output_size) != 2:
            raise ValueError("adaptive_avg_pool2d: output_size must be an int or a pair (entries may be None), "
                             f"got {output_size!r}")
        size = [None if v is None else _checks.pair("adaptive_avg_pool2d", "output_size", [v])[0]
                for v in output_size]
    else:
        # torch takes a bare Python int only (a numpy int, a 0-d tensor or None are refused there too)
        if isinstance(output_size, bool) or not isinstance(output_size, (int, torch.SymInt)):
            raise TypeError("adaptive_avg_pool2d: output_size must be an int or a pair (entries may be None), "
                            f"got {output_size!r}")
        size = _checks.pair("adaptive_avg_pool2d", "output_size", output_size)
    # None: keep the input's size on that axis (1 for an input of the wrong rank, which the op rejects)
    return [s if s is not None else input.shape[i - 2] if input.dim() >= 2 else 1 for i, s in enumerate(size)]


def adaptive_avg_pool2d(input: Tensor, output_size) -> Tensor:
    r"""Average pooling of `input` (N, C, H, W) or (C, H, W) to `output_size` (OH, OW), as
    torch.nn.functional.adaptive_avg_pool2d:

    .. math:: y[n, c, i, j] = \operatorname{mean}\, x[n, c, \lfloor iH/O_H \rfloor : \lceil (i+1)H/O_H \rceil,
              \lfloor jW/O_W \rfloor : \lceil (j+1)W/O_W \rceil]

    `output_size`: an int or a pair; a None entry keeps the input's size. float32, float64, bfloat16 or float16 (float32 accumulation).
    """
    _checks.tensor("adaptive_avg_pool2d", "input", input)
    size = _output_size(input, output_size)
    return _apply(input, size)
