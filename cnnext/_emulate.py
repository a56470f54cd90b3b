"""`with cnnext.emulate_cuda():` -- run cnnext ops on CPU tensors through the CUDA kernels."""
import contextlib

import torch


def emulating_cuda() -> bool:
    """True inside `emulate_cuda()` on this thread."""
    return torch.ops.cnnext._emulating_cuda()


@contextlib.contextmanager
def emulate_cuda(enabled: bool = True):
    """Inside the block, cnnext ops on CPU tensors run the CUDA kernels (csrc/cuda/*.cu) under the
    CPU emulator, thread by thread, instead of the CPU kernels: slow, but it executes every thread,
    barrier and warp shuffle of the real kernels. The switch is per Python thread; it nests, and
    leaving the block restores what was there before. Autograd backward passes of cnnext ops run
    on the backend their forward ran on.
    """
    prev = torch.ops.cnnext._set_emulate_cuda(bool(enabled))
    try:
        yield
    finally:
        torch.ops.cnnext._set_emulate_cuda(prev)
