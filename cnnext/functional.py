"""cnnext.functional: the ops with the signatures of torch.nn.functional."""
from .ops.corr2d import corr2d

__all__ = ["corr2d"]
from .ops.avg_pool2d import avg_pool2d  # noqa: E402
from .ops.adaptive_avg_pool2d import adaptive_avg_pool2d  # noqa: E402
__all__ += ["avg_pool2d", "adaptive_avg_pool2d"]
