"""The ops' output shapes, for the fake kernels: the formulas of csrc/ops in plain Python, on ints or
SymInts (torch.compile traces them with symbolic sizes). No checks here: the fake kernels run the C++
op's own checks first (_checks.cpp_checks), so these see only arguments the C++ op accepts."""
import torch

from ._checks import pair


def pool_out_size(n, k, s, p, d, ceil_mode):
    """torch's pooling output size along one axis: floor_or_ceil((n + 2p - d(k - 1) - 1) / s) + 1, where
    with ceil_mode the last window must start inside the input or the left padding."""
    o = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (o - 1) * s >= n + p:
        o -= 1
    return o


def pool_shape(op, shape, kernel_size, stride, padding, dilation, ceil_mode):
    """(..., OH, OW) for max_pool2d / avg_pool2d (dilation 1) of an input of `shape` (..., H, W);
    an empty stride is kernel_size."""
    k = pair(op, "kernel_size", kernel_size)
    s = pair(op, "stride", stride) if len(stride) else k
    p, d = pair(op, "padding", padding), pair(op, "dilation", dilation)
    return (*shape[:-2], *(pool_out_size(shape[i - 2], k[i], s[i], p[i], d[i], ceil_mode) for i in (0, 1)))


def conv_shape(input_shape, weight_shape, stride, padding, dilation):
    """(N, K, P, Q) or (K, P, Q) for conv2d: P = (H + 2 p_h - d_h (kh - 1) - 1) // s_h + 1, likewise Q."""
    s, p, d = (pair("conv2d", n, v) for n, v in (("stride", stride), ("padding", padding), ("dilation", dilation)))
    *lead, _, H, W = input_shape
    K, _, R, S = weight_shape
    return (*lead, K, *(pool_out_size(n, k, s[i], p[i], d[i], False) for i, (n, k) in enumerate(((H, R), (W, S)))))


def corr2d_shape(input_shape, kernel_shape):
    """(..., H - kh + 1, W - kw + 1): the valid cross-correlation."""
    return (*input_shape[:-2], input_shape[-2] - kernel_shape[0] + 1, input_shape[-1] - kernel_shape[1] + 1)


def layout_of(input):
    """The memory format the C++ ops (max_pool2d, batch_norm) give the outputs of `input`: a 4-D
    channels_last input keeps channels_last, anything else is made contiguous."""
    cl = input.dim() == 4 and not input.is_contiguous() and input.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if cl else torch.contiguous_format


def wrap_dim(dim, nd):
    """A dim in [-nd, nd) as a dim in [0, nd) (the C++ op checks the range)."""
    return dim + nd if dim < 0 else dim


def legacy_empty(shape):
    """torch.cat skips 1-D empty tensors of shape (0,), whatever the others' rank."""
    return len(shape) == 1 and shape[0] == 0


def cat_shape(shapes, dim):
    """The sizes of cat(tensors of `shapes`, dim), skipping torch's legacy empty (0,) inputs; the
    kept inputs' sizes summed along `dim` (wrapped)."""
    kept = [s for s in shapes if not legacy_empty(s)]
    if not kept:
        return [0]
    dim = wrap_dim(dim, len(kept[0]))
    out = list(kept[0])
    out[dim] = sum(s[dim] for s in kept)
    return out
