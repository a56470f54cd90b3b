"""cnnext.functional: the ops with the signatures of torch.nn.functional."""
from .ops.batch_norm import batch_norm, batch_norm_relu
from .ops.corr2d import corr2d

__all__ = ["corr2d", "batch_norm", "batch_norm_relu"]
