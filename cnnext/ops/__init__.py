"""Python side of each op: fake kernels for torch.compile, the autograd.Function, the functional form.

One module per op, like csrc/ops/<op>.cpp. Importing this package registers every fake kernel.
"""
from . import corr2d  # noqa: F401
from . import conv2d  # noqa: F401
