"""cnnext.nn: drop-in modules built on cnnext's kernels."""
from .conv import Conv2d
from .corr2d import Corr2d

__all__ = ["Conv2d", "Corr2d"]
