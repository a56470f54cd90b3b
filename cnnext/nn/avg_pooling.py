"""Drop-in torch.nn.AvgPool2d and torch.nn.AdaptiveAvgPool2d on cnnext's kernels (same constructor
arguments, attributes, repr and state_dict)."""
from torch import nn

from ..ops.adaptive_avg_pool2d import adaptive_avg_pool2d
from ..ops.avg_pool2d import avg_pool2d


class AvgPool2d(nn.AvgPool2d):
    r"""2-D average pooling: :math:`y[n, c, i, j]` = mean of the (padded) window at :math:`(s_H i, s_W j)`;
    see cnnext.functional.avg_pool2d for the divisor rules."""

    def forward(self, input):
        return avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                          self.count_include_pad, self.divisor_override)


class AdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    r"""Average pooling to `output_size`: output :math:`i` averages the input
    :math:`[\lfloor iH/O_H \rfloor, \lceil (i+1)H/O_H \rceil)` on each axis."""

    def forward(self, input):
        return adaptive_avg_pool2d(input, self.output_size)
