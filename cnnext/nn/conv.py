import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.conv2d import conv2d


class Conv2d(nn.Conv2d):
    r"""Drop-in :class:`torch.nn.Conv2d` running cnnext's conv2d kernels:

    .. math:: y[n, k] = b[k] + \sum_{c} w[k, c] \star x[n, c]

    Same constructor arguments, parameter initialisation, ``state_dict`` keys and repr as
    ``torch.nn.Conv2d`` (it subclasses it; only the convolution itself is replaced).
    ``padding_mode`` other than ``'zeros'`` ('reflect', 'replicate', 'circular') pads the input first
    with ``torch.nn.functional.pad`` and then convolves with zero padding, exactly as torch does.
    """

    def _conv_forward(self, input: Tensor, weight: Tensor, bias):
        if self.padding_mode != "zeros":
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return conv2d(input, weight, bias, self.stride, 0, self.dilation, self.groups)
        return conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)
