"""cnnext.functional: the ops with the signatures of torch.nn.functional."""
from .ops.corr2d import corr2d

__all__ = ["corr2d"]
