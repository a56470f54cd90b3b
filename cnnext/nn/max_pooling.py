from torch import nn

from ..ops.max_pool2d import max_pool2d


class MaxPool2d(nn.MaxPool2d):
    r"""Drop-in :class:`torch.nn.MaxPool2d` (same constructor arguments, repr and state) running
    cnnext's max_pool2d kernels: input (N, C, H, W) or (C, H, W), output (..., OH, OW) with
    OH = floor((H + 2 p - d (k - 1) - 1) / s) + 1 (ceil with ceil_mode).
    """

    def forward(self, input):
        return max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                          ceil_mode=self.ceil_mode, return_indices=self.return_indices)
