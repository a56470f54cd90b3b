"""cnnext.nn: drop-in modules built on cnnext's kernels."""
from .corr2d import Corr2d
from .swap import swap

__all__ = ["Corr2d", "swap"]
