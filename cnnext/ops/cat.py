"""cat: concatenation along a dim (GoogLeNet's Inception outputs, DenseNet's dense blocks)."""
from typing import Sequence

import torch
from torch import Tensor
from torch._prims_common import suggest_memory_format

from ._autocast import promote
from ._autograd import fast_apply
from ._checks import cpp_checks
from ._geometry import cat_shape, legacy_empty, wrap_dim


def _output_format(tensors):
    """torch.cat's output format: the inputs' common suggested memory format, else contiguous."""
    fmt = suggest_memory_format(tensors[0])
    for t in tensors[1:]:
        if suggest_memory_format(t) != fmt:
            return torch.contiguous_format
    return fmt


@torch.library.register_fake("cnnext::cat_forward")
def _cat_forward_fake(tensors, dim):
    cpp_checks(torch.ops.cnnext.cat_forward.default, tensors, dim)
    shape = cat_shape([t.shape for t in tensors], dim)
    return torch.empty(shape, dtype=tensors[0].dtype, device=tensors[0].device, memory_format=_output_format(tensors))


@torch.library.register_fake("cnnext::cat_backward")
def _cat_backward_fake(grad_output, dim, split_sizes):
    cpp_checks(torch.ops.cnnext.cat_backward.default, grad_output, dim, split_sizes)
    dim = wrap_dim(dim, grad_output.dim())
    fmt = suggest_memory_format(grad_output)
    shape = list(grad_output.shape)
    out = []
    for s in split_sizes:
        shape[dim] = s
        out.append(torch.empty(shape, dtype=grad_output.dtype, device=grad_output.device, memory_format=fmt))
    return out


class CatFunction(torch.autograd.Function):
    """y = cat(x_0, ..., x_{n-1}) along dim; dL/dx_i = dL/dy narrowed to x_i's columns (made contiguous)."""

    @staticmethod
    def forward(dim, *tensors):
        return torch.ops.cnnext.cat_forward(tensors, dim)  # checks everything first

    @staticmethod
    def setup_context(ctx, inputs, output):
        dim, *tensors = inputs
        ctx.skipped = [legacy_empty(t.shape) for t in tensors]
        kept = [t for t, s in zip(tensors, ctx.skipped) if not s]
        ctx.dim = wrap_dim(dim, kept[0].dim()) if kept else 0  # (checked by the forward op)
        ctx.splits = [t.shape[ctx.dim] for t in kept]

    @staticmethod
    def backward(ctx, grad_output):
        grads = iter(torch.ops.cnnext.cat_backward(grad_output, ctx.dim, ctx.splits) if ctx.splits else [])
        # a skipped (0,)-shaped input gets an empty gradient, as with torch.cat
        return (None, *[grad_output.new_empty((0,)) if s else next(grads) for s in ctx.skipped])


# Function.apply, in the cheaper classic form outside torch.func transforms (see _autograd.py)
_apply = fast_apply(CatFunction)


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    r"""Concatenate `tensors` along `dim`, like :func:`torch.cat`:

    .. math:: y[\ldots, \mathrm{off}_i + j, \ldots] = x_i[\ldots, j, \ldots], \quad
              \mathrm{off}_i = \textstyle\sum_{k<i} x_k.\mathrm{shape}[dim]

    The tensors must have the same rank (1-D tensors of shape (0,) are skipped, as torch.cat does),
    the same sizes off `dim`, the same dtype (any dtype: the kernels copy bytes; no type promotion
    but torch.autocast's, which casts floating inputs to the widest of their dtypes as it does for
    torch.cat) and the same device. channels_last inputs give a channels_last output, as with torch.cat.
    Dense inputs, channels_last inputs and slices with dense rows (e.g. ``x[:, 16:48]``) are read
    in place; other views (transposed, strided within a row) are first copied to a dense tensor.
    """
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        raise TypeError(f"cat: tensors must be a list or tuple of tensors, got {type(tensors).__name__}")
    if len(tensors) == 0:
        raise ValueError("cat: tensors must be a non-empty list of tensors")
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"cat: tensors[{i}] must be a Tensor, got {type(t).__name__}")
        if t.layout != torch.strided:  # the dispatcher would refuse it with a message not naming cat
            raise RuntimeError(f"cat: tensors[{i}] must be a dense (strided) tensor, got layout {t.layout}")
    return _apply(dim, *promote(tensors))
