"""cat: concatenation along a dim (GoogLeNet's Inception outputs, DenseNet's dense blocks)."""
from typing import Sequence

import torch
from torch import Tensor
from torch._prims_common import suggest_memory_format

from ._autograd import fast_apply
from ._checks import same_device


def _legacy_empty(t):
    # torch.cat skips 1-D empty tensors of shape (0,) whatever the others' rank.
    return t.dim() == 1 and t.shape[0] == 0


def _output_format(tensors):
    """torch.cat's output format: the inputs' common suggested memory format, else contiguous."""
    fmt = suggest_memory_format(tensors[0])
    for t in tensors[1:]:
        if suggest_memory_format(t) != fmt:
            return torch.contiguous_format
    return fmt


def _wrap_dim(dim, nd, what):
    torch._check_index(-nd <= dim < nd, lambda: f"cat: dim must be in [{-nd}, {nd - 1}] for {what} of {nd} dims, "
                                                f"got {dim}")
    return dim + nd if dim < 0 else dim


@torch.library.register_fake("cnnext::cat_forward")
def _cat_forward_fake(tensors, dim):
    torch._check_value(len(tensors) > 0, lambda: "cat: tensors must be a non-empty list of tensors")
    first = tensors[0]
    for i, t in enumerate(tensors):
        torch._check(t.dim() > 0, lambda: f"cat: tensors[{i}] is zero-dimensional and cannot be concatenated")
        if i > 0:
            torch._check_type(t.dtype == first.dtype, lambda: f"cat: tensors[{i}] has dtype {t.dtype} but tensors[0] "
                                                              f"has dtype {first.dtype}; they must match")
            same_device("cat", f"tensors[{i}]", t, "tensors[0]", first)
    kept = [i for i, t in enumerate(tensors) if not _legacy_empty(t)]
    if not kept:
        _wrap_dim(dim, 1, "tensors")
        return first.new_empty((0,))
    r = tensors[kept[0]]
    nd = r.dim()
    dim = _wrap_dim(dim, nd, "tensors")
    size = 0
    for i in kept:
        t = tensors[i]
        torch._check(t.dim() == nd, lambda: f"cat: tensors[{i}] is {t.dim()}-D but tensors[{kept[0]}] is {nd}-D; all "
                                            "tensors must have the same number of dims")
        for d in range(nd):
            torch._check(d == dim or t.shape[d] == r.shape[d],
                         lambda: f"cat: sizes of tensors must match except in dim {dim}: tensors[{i}] has size "
                                 f"{t.shape[d]} in dim {d} but tensors[{kept[0]}] has size {r.shape[d]}")
        size = size + t.shape[dim]
    shape = list(r.shape)
    shape[dim] = size
    return torch.empty(shape, dtype=first.dtype, device=first.device, memory_format=_output_format(tensors))


@torch.library.register_fake("cnnext::cat_backward")
def _cat_backward_fake(grad_output, dim, split_sizes):
    dim = _wrap_dim(dim, grad_output.dim(), "grad_output")
    torch._check(sum(split_sizes) == grad_output.shape[dim],
                 lambda: f"cat: split_sizes {list(split_sizes)} sum to {sum(split_sizes)} but grad_output has size "
                         f"{grad_output.shape[dim]} in dim {dim}")
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
        ctx.skipped = [_legacy_empty(t) for t in tensors]
        kept = [t for t, s in zip(tensors, ctx.skipped) if not s]
        ctx.dim = _wrap_dim(dim, kept[0].dim(), "tensors") if kept else 0
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
    the same sizes off `dim`, the same dtype (any dtype: the kernels copy bytes; no type promotion)
    and the same device. channels_last inputs give a channels_last output, as with torch.cat.
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
    return _apply(dim, *tensors)
