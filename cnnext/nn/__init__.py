"""cnnext.nn: drop-in modules built on cnnext's kernels."""
from .batchnorm import BatchNorm1d, BatchNorm2d, BatchNormReLU1d, BatchNormReLU2d
from .corr2d import Corr2d

__all__ = ["Corr2d", "BatchNorm1d", "BatchNorm2d", "BatchNormReLU1d", "BatchNormReLU2d"]
