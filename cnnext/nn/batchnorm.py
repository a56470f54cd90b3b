"""Drop-in BatchNorm1d / BatchNorm2d, the fused BatchNormReLU1d / BatchNormReLU2d, and FusedReLU,
the placeholder left where a ReLU was fused into the BatchNormReLU before it.

They subclass torch.nn's classes (constructor arguments, parameters, buffers, state_dict keys,
reset_parameters / reset_running_stats, repr are torch's) and replace forward with torch's own
logic on top of cnnext's kernels.
"""
from torch import nn

from ..ops.batch_norm import batch_norm, batch_norm_relu


class _CnnextBatchNorm:
    _fn = staticmethod(batch_norm)

    def forward(self, input):
        # torch.nn.modules.batchnorm._BatchNorm.forward, line for line
        self._check_input_dim(input)
        exponential_average_factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average
                exponential_average_factor = 1.0 / float(self.num_batches_tracked)
            else:  # exponential moving average
                exponential_average_factor = self.momentum
        bn_training = self.training or (self.running_mean is None and self.running_var is None)
        use_running = not self.training or self.track_running_stats
        return self._fn(input, self.running_mean if use_running else None, self.running_var if use_running else None,
                        self.weight, self.bias, bn_training, exponential_average_factor, self.eps)


class BatchNorm1d(_CnnextBatchNorm, nn.BatchNorm1d):
    r"""torch.nn.BatchNorm1d on cnnext: y = (x - E[x]) / sqrt(Var[x] + eps) * w + b over (N, C) or (N, C, L)."""


class BatchNorm2d(_CnnextBatchNorm, nn.BatchNorm2d):
    r"""torch.nn.BatchNorm2d on cnnext: y = (x - E[x]) / sqrt(Var[x] + eps) * w + b over (N, C, H, W)."""


class BatchNormReLU1d(_CnnextBatchNorm, nn.BatchNorm1d):
    r"""relu(BatchNorm1d(x)) fused into one pass; the state_dict is BatchNorm1d's."""

    _fn = staticmethod(batch_norm_relu)


class BatchNormReLU2d(_CnnextBatchNorm, nn.BatchNorm2d):
    r"""relu(BatchNorm2d(x)) fused into one pass (ResNet / DenseNet's BN -> ReLU); the state_dict is BatchNorm2d's."""

    _fn = staticmethod(batch_norm_relu)


class FusedReLU(nn.Identity):
    r"""x: stands where an nn.ReLU was fused into the BatchNormReLU1d/2d just before it (by the d2l models'
    layers="cnnext" or by cnnext.nn.swap), so the module tree and state_dict keep their shape;
    swap(back=True) puts the nn.ReLU back."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace  # the ReLU's, restored by swap(back=True)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""
