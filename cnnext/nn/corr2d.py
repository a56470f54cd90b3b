import torch
from torch import nn

from ..ops.corr2d import corr2d


class Corr2d(nn.Module):
    r"""d2l 6.2's `Conv2D` block: y = corr2d(x, weight) + bias, one (kh, kw) kernel and a scalar bias.

    Input (..., H, W), output (..., H-kh+1, W-kw+1). The weight starts uniform in [0, 1) and the
    bias at zero, as in the book.
    """

    def __init__(self, kernel_size, device=None, dtype=None):
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.kernel_size = (kh, kw)
        self.weight = nn.Parameter(torch.rand(kh, kw, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(1, device=device, dtype=dtype))

    def forward(self, x):
        return corr2d(x, self.weight) + self.bias

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}"
