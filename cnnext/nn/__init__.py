"""cnnext.nn: drop-in modules built on cnnext's kernels."""
from .avg_pooling import AdaptiveAvgPool2d, AvgPool2d  # noqa: F401
from .batchnorm import BatchNorm1d, BatchNorm2d, BatchNormReLU1d, BatchNormReLU2d  # noqa: F401
from .conv import Conv2d  # noqa: F401
from .corr2d import Corr2d  # noqa: F401
from .max_pooling import MaxPool2d  # noqa: F401
from .corr2d import Corr2d

__all__ = ["Corr2d"]
from .avg_pooling import AvgPool2d, AdaptiveAvgPool2d  # noqa: E402
__all__ += ["AvgPool2d", "AdaptiveAvgPool2d"]
from .batchnorm import BatchNorm1d, BatchNorm2d, BatchNormReLU1d, BatchNormReLU2d
from .corr2d import Corr2d

__all__ = ["Corr2d", "BatchNorm1d", "BatchNorm2d", "BatchNormReLU1d", "BatchNormReLU2d"]
from .conv import Conv2d
from .corr2d import Corr2d

__all__ = ["Conv2d", "Corr2d"]
