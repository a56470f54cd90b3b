"""max_pool2d: 2-D max pooling with PyTorch's semantics (d2l 7.5), returning argmax indices."""
import torch
from torch import Tensor

from . import _checks
from ._autograd import fast_apply
from ._checks import same_device


def _pair(name, v):
    if isinstance(v, int):
        return (v, v)
    v = tuple(v)
    torch._check(len(v) in (1, 2), lambda: f"max_pool2d: {name} must be an int or a pair of ints, got {v}")
    return (v[0], v[-1])


def _out_size(n, k, s, p, d, ceil_mode):
    o = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (o - 1) * s >= n + p:  # the last window must start inside the input or the left padding
        o -= 1
    return o


def _output_shape(op, shape, kernel_size, stride, padding, dilation, ceil_mode):
    """The output shape (..., OH, OW) for `shape`, after the same argument checks as csrc/ops/max_pool2d.cpp."""
    k = _pair("kernel_size", kernel_size)
    s = k if stride is None or len(stride) == 0 else _pair("stride", stride)
    p, d = _pair("padding", padding), _pair("dilation", dilation)
    torch._check(min(k) > 0, lambda: f"{op}: kernel_size must be positive, got {k}")
    torch._check(min(s) > 0, lambda: f"{op}: stride must be positive, got {s}")
    torch._check(min(d) > 0, lambda: f"{op}: dilation must be positive, got {d}")
    torch._check(min(p) >= 0, lambda: f"{op}: padding must be non-negative, got {p}")
    for name, v in (("kernel_size", k), ("stride", s), ("padding", p), ("dilation", d)):
        torch._check(max(v) <= 2**31 - 1, lambda: f"{op}: {name} must be below 2^31 (as in torch), got {v}")
    torch._check(
        p[0] <= k[0] // 2 and p[1] <= k[1] // 2,
        lambda: f"{op}: padding {p} is too large for kernel_size {k}: pad should be at most half of effective "
        "kernel size and of kernel_size",
    )
    torch._check(len(shape) in (3, 4), lambda: f"{op}: input must be 3-D (C, H, W) or 4-D (N, C, H, W), got "
                 f"{len(shape)}-D")
    torch._check(shape[-3] > 0 and shape[-2] > 0 and shape[-1] > 0,
                 lambda: f"{op}: input must have non-zero C, H and W (only the batch may be empty), got shape "
                 f"{tuple(shape)}")
    oh = _out_size(shape[-2], k[0], s[0], p[0], d[0], ceil_mode)
    ow = _out_size(shape[-1], k[1], s[1], p[1], d[1], ceil_mode)
    torch._check(oh > 0 and ow > 0, lambda: f"{op}: kernel_size {k} with dilation {d} does not fit the input "
                 f"(H, W) = {tuple(shape[-2:])} with padding {p}: calculated output size ({oh}, {ow}) is too small")
    return (*shape[:-2], oh, ow)


@torch.library.register_fake("cnnext::max_pool2d_forward")
def _max_pool2d_forward_fake(input, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    torch._check(input.dtype in (torch.float32, torch.float64),
                 lambda: f"max_pool2d: input must be float32 or float64, got {input.dtype}")
    shape = _output_shape("max_pool2d", input.shape, kernel_size, stride, padding, dilation, ceil_mode)
    channels_last = input.dim() == 4 and not input.is_contiguous() and input.is_contiguous(
        memory_format=torch.channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return (torch.empty(shape, dtype=input.dtype, device=input.device, memory_format=fmt),
            torch.empty(shape, dtype=torch.int64, device=input.device, memory_format=fmt))


@torch.library.register_fake("cnnext::max_pool2d")
def _max_pool2d_fake(input, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    return _max_pool2d_forward_fake(input, kernel_size, stride, padding, dilation, ceil_mode)[0]


@torch.library.register_fake("cnnext::max_pool2d_backward")
def _max_pool2d_backward_fake(grad_output, indices, input_shape, kernel_size, stride=(), padding=0, dilation=1,
                              ceil_mode=False):
    torch._check(indices.dtype == torch.int64, lambda: f"max_pool2d: indices must be int64, got {indices.dtype}")
    same_device("max_pool2d", "indices", indices, "grad_output", grad_output)
    shape = _output_shape("max_pool2d", input_shape, kernel_size, stride, padding, dilation, ceil_mode)
    torch._check(tuple(grad_output.shape) == tuple(shape), lambda: f"max_pool2d: grad_output has shape "
                 f"{tuple(grad_output.shape)} but the output for input shape {tuple(input_shape)} is {tuple(shape)}")
    torch._check(indices.shape == grad_output.shape, lambda: f"max_pool2d: indices has shape "
                 f"{tuple(indices.shape)} but grad_output has shape {tuple(grad_output.shape)}")
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
