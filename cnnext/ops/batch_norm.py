"""batch_norm and the fused batch_norm + ReLU (d2l 8.5; the BN -> ReLU of ResNet and DenseNet)."""
import numbers

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ._autograd import fast_apply
from ._checks import cpp_checks
from ._geometry import layout_of

_OP = "batch_norm"


def _like_input(input):
    return torch.empty_like(input, memory_format=layout_of(input))


def _stats_dtype(input):
    # the statistics of a bfloat16 / float16 input are float32 (csrc/ops/batch_norm.cpp)
    return torch.float32 if input.dtype in (torch.bfloat16, torch.float16) else input.dtype


@torch.library.register_fake("cnnext::batch_norm_forward")
def _batch_norm_forward_fake(input, weight, bias, running_mean, running_var, training, momentum, eps, relu):
    cpp_checks(torch.ops.cnnext.batch_norm_forward.default, input, weight, bias, running_mean, running_var, training,
               momentum, eps, relu)
    C = input.shape[1]
    return _like_input(input), input.new_empty(C, dtype=_stats_dtype(input)), input.new_empty(
        C, dtype=_stats_dtype(input))


@torch.library.register_fake("cnnext::batch_norm_backward")
def _batch_norm_backward_fake(grad_output, input, weight, bias, save_mean, save_invstd, training, relu):
    cpp_checks(torch.ops.cnnext.batch_norm_backward.default, grad_output, input, weight, bias, save_mean, save_invstd,
               training, relu)
    C = input.shape[1]
    return _like_input(input), (weight if weight is not None else input).new_empty(C), (
        bias if bias is not None else input).new_empty(C)


class BatchNormFunction(torch.autograd.Function):
    r"""y = (x - mean) / sqrt(var + eps) * w + b per channel (relu: y = 0 where y <= 0; NaN stays NaN).

    Backward, with xhat = (x - mean) * invstd, gy' = (0 if y <= 0 else gy) for relu (torch's
    threshold_backward) and sums over (N, *):
    gb = sum gy',  gw = sum gy' xhat,  gx = w invstd (gy' - gb/M - xhat gw/M) in training,
    gx = w invstd gy' in evaluation.
    """

    @staticmethod
    def forward(input, running_mean, running_var, weight, bias, training, momentum, eps, relu):
        return torch.ops.cnnext.batch_norm_forward.default(input, weight, bias, running_mean, running_var,
                                                           training, momentum, eps, relu)

    @staticmethod
    def setup_context(ctx, inputs, output):
        input, _, _, weight, bias, training, _, _, relu = inputs
        _, mean, invstd = output
        ctx.save_for_backward(input, weight, bias, mean, invstd)
        ctx.training, ctx.relu = training, relu
        ctx.mark_non_differentiable(mean, invstd)

    @staticmethod
    @once_differentiable  # no double backward: a clear error instead of a silently detached gradient
    def backward(ctx, grad_output, _grad_mean, _grad_invstd):
        input, weight, bias, mean, invstd = ctx.saved_tensors
        gx, gw, gb = torch.ops.cnnext.batch_norm_backward.default(grad_output, input, weight, bias, mean, invstd,
                                                                  ctx.training, ctx.relu)
        return (gx if ctx.needs_input_grad[0] else None, None, None, gw if ctx.needs_input_grad[3] else None,
                gb if ctx.needs_input_grad[4] else None, None, None, None, None)


# Function.apply, in the cheaper classic form outside torch.func transforms (see _autograd.py)
_apply = fast_apply(BatchNormFunction)


def _verify_batch_size(size):
    # torch.nn.functional's check, torch's message after the op's name
    size_prods = size[0]
    for i in range(len(size) - 2):
        size_prods *= size[i + 2]
    if size_prods == 1:
        raise ValueError(f"{_OP}: Expected more than 1 value per channel when training, got input size {size}")


def _check_types(input, running_mean, running_var, weight, bias, training, momentum, eps):
    # what torch's argument parser rejects, with messages naming the op and the argument
    if not isinstance(input, Tensor):
        raise TypeError(f"{_OP}: input must be a Tensor, got {type(input).__name__}")
    for arg, t in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                   ("bias", bias)):
        if t is not None and not isinstance(t, Tensor):
            raise TypeError(f"{_OP}: {arg} must be a Tensor or None, got {type(t).__name__}")
    if not isinstance(training, bool):
        raise TypeError(f"{_OP}: training must be a bool, got {type(training).__name__}")
    for arg, v in (("momentum", momentum), ("eps", eps)):
        if not (isinstance(v, numbers.Real) or isinstance(v, Tensor) and v.dim() == 0):  # torch takes a 0-D tensor
            raise TypeError(f"{_OP}: {arg} must be a float, got {type(v).__name__}")


def _check_args(input, running_mean, running_var, weight, bias, training, momentum, eps):
    # The common call (tensors or None, a bool, two Python floats) is recognised in one expression; the
    # per-argument loops of _check_types cost ~1 us, as much as the rest of a small eval layer's Python.
    if not (isinstance(input, Tensor) and (running_mean is None or isinstance(running_mean, Tensor))
            and (running_var is None or isinstance(running_var, Tensor))
            and (weight is None or isinstance(weight, Tensor)) and (bias is None or isinstance(bias, Tensor))
            and training.__class__ is bool and momentum.__class__ is float and eps.__class__ is float):
        _check_types(input, running_mean, running_var, weight, bias, training, momentum, eps)
    # F.batch_norm's size check (only an input of as many values as channels can fail it; fewer dims: the
    # op's own check says so)
    if training and input.dim() >= 2 and input.numel() <= input.shape[1]:
        _verify_batch_size(input.size())
    # F.batch_norm's eps checks, which torch too makes in Python: a ValueError, the float as Python prints
    # it (the op's own check raises a RuntimeError; a NaN eps passes both, as in torch: the output is NaN)
    if training and eps <= 0.0:
        raise ValueError(f"{_OP}: eps must be positive during training, but got {eps}")
    if eps < 0.0:
        raise ValueError(f"{_OP}: eps must be non-negative, but got {eps}")


def _batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps, relu):
    _check_args(input, running_mean, running_var, weight, bias, training, momentum, eps)
    momentum, eps = float(momentum), float(eps)
    return _apply(input, running_mean, running_var, weight, bias, training, momentum, eps, relu)[0]


def batch_norm(input: Tensor, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
               eps=1e-5) -> Tensor:
    r"""Batch normalisation over every dim but the channel dim 1 of `input` (N, C, *), as F.batch_norm:

    .. math:: y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}} \, w + b

    training: batch statistics (biased variance), and running_mean / running_var (if given) are
    updated in place: running = (1 - momentum) running + momentum batch (unbiased variance).
    Otherwise the running statistics are used. float32, float64, bfloat16 or float16; with a bfloat16 or
    float16 input, weight, bias and the running statistics may be float32 (statistics in float32).
    """
    return _batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps, False)


def batch_norm_relu(input: Tensor, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                    eps=1e-5) -> Tensor:
    r"""relu(batch_norm(...)) in one pass, forward and backward, NaN handled as torch.relu does:

    .. math:: y = \max\left(0,\ \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}} \, w + b\right)
    """
    return _batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps, True)
