"""cnnext.functional: the ops with the signatures of torch.nn.functional."""
from .ops.corr2d import corr2d
from .ops.cat import cat

__all__ = ["corr2d", "cat"]
