"""torch.autocast for the cnnext ops, cast in Python exactly as torch's autocast casts their torch twins.

torch.autocast keeps three lists of ops (aten/src/ATen/autocast_mode.cpp). cnnext's ops fall into them as
their twins do, on the CPU and on CUDA alike:
  lower precision  conv2d (and corr2d, a one-channel convolution): every floating tensor argument but
                   float64 is cast to the autocast dtype, e.g. bfloat16 -> the output is bfloat16
  promote          cat: the floating arguments but float64 are cast to the widest of their dtypes and
                   the autocast dtype (float32 and bfloat16 -> float32)
  neither          max_pool2d, avg_pool2d, adaptive_avg_pool2d, batch_norm: they run in their input's
                   dtype (batch_norm of a bfloat16 input with float32 parameters is the mixed-precision
                   batch norm: float32 statistics, a bfloat16 output)
The casts are ordinary differentiable `Tensor.to` calls made before the op's autograd.Function, where
torch's autocast (a dispatch key above autograd) makes them too: gradients reach float32 parameters in
float32, and the backward ops see one dtype.
"""
import torch


def _active(tensors):
    """The autocast dtype of the first tensor's device type, None when autocast is off there (or, as on
    meta, does not exist)."""
    for t in tensors:
        if isinstance(t, torch.Tensor):
            dev = t.device.type
            on = torch.amp.is_autocast_available(dev) and torch.is_autocast_enabled(dev)
            return torch.get_autocast_dtype(dev) if on else None
    return None


def _eligible(t):
    return isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float64


def lower_precision(*tensors):
    """`tensors` as autocast's lower-precision list casts them (unchanged outside autocast)."""
    dtype = _active(tensors)
    if dtype is None:
        return tensors
    return tuple(t.to(dtype) if _eligible(t) else t for t in tensors)


def promote(tensors):
    """`tensors` as autocast's promote list casts them (unchanged outside autocast)."""
    dtype = _active(tensors)
    if dtype is None:
        return tensors
    for t in tensors:
        if _eligible(t):
            dtype = torch.promote_types(dtype, t.dtype)
    return [t.to(dtype) if _eligible(t) else t for t in tensors]
