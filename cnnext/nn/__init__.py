"""cnnext.nn: drop-in modules built on cnnext's kernels."""
from .avg_pooling import AdaptiveAvgPool2d, AvgPool2d  # noqa: F401
from .batchnorm import BatchNorm1d, BatchNorm2d, BatchNormReLU1d, BatchNormReLU2d, FusedReLU  # noqa: F401
from .conv import Conv2d  # noqa: F401
from .corr2d import Corr2d  # noqa: F401
from .max_pooling import MaxPool2d  # noqa: F401
from .swap import swap  # noqa: F401
