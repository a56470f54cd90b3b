"""Python side of each op: fake kernels for torch.compile, the autograd.Function, the functional form.

One module per op, like csrc/ops/<op>.cpp. Importing this package registers every fake kernel.
"""
from . import adaptive_avg_pool2d  # noqa: F401
from . import avg_pool2d  # noqa: F401
from . import batch_norm  # noqa: F401
from . import cat  # noqa: F401
from . import conv2d  # noqa: F401
from . import corr2d  # noqa: F401
from . import max_pool2d  # noqa: F401
