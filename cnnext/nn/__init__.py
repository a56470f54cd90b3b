"""cnnext.nn: drop-in modules built on cnnext's kernels."""
from .corr2d import Corr2d

__all__ = ["Corr2d"]
from .avg_pooling import AvgPool2d, AdaptiveAvgPool2d  # noqa: E402
__all__ += ["AvgPool2d", "AdaptiveAvgPool2d"]
