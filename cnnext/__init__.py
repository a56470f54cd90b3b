"""cnnext: hand-written C++ and CUDA kernels for the classic CNN family, as PyTorch ops.

    import cnnext
    y = cnnext.functional.corr2d(x, k)          # torch.ops.cnnext.* underneath
    with cnnext.emulate_cuda():                 # same call, run by the CUDA kernels on the CPU emulator
        y = cnnext.functional.corr2d(x, k)
    print(cnnext.info())
"""
from ._loader import load as _load

__version__ = "0.1.0"
_LIBRARY = _load()

from ._emulate import emulate_cuda, emulating_cuda  # noqa: E402
from . import ops  # noqa: E402,F401  (registers fake kernels)
from . import functional, nn  # noqa: E402
from . import models  # noqa: E402
from .info import info  # noqa: E402

__all__ = ["functional", "nn", "models", "emulate_cuda", "emulating_cuda", "info", "__version__"]
