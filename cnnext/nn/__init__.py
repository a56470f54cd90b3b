"""cnnext.nn: drop-in modules built on cnnext's kernels."""
from .corr2d import Corr2d
from .max_pooling import MaxPool2d

__all__ = ["Corr2d", "MaxPool2d"]
