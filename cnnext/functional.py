"""cnnext.functional: the ops with the signatures of torch.nn.functional."""
from .ops.adaptive_avg_pool2d import adaptive_avg_pool2d  # noqa: F401
from .ops.avg_pool2d import avg_pool2d  # noqa: F401
from .ops.batch_norm import batch_norm, batch_norm_relu  # noqa: F401
from .ops.cat import cat  # noqa: F401
from .ops.conv2d import conv2d  # noqa: F401
from .ops.corr2d import corr2d  # noqa: F401
from .ops.max_pool2d import max_pool2d  # noqa: F401
