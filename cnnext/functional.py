"""cnnext.functional: the ops with the signatures of torch.nn.functional."""
from .ops.conv2d import conv2d
from .ops.corr2d import corr2d

__all__ = ["conv2d", "corr2d"]
