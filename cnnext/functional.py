"""cnnext.functional: the ops with the signatures of torch.nn.functional."""
from .ops.corr2d import corr2d
from .ops.max_pool2d import max_pool2d

__all__ = ["corr2d", "max_pool2d"]
