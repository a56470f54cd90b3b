"""Loads the compiled library, after checking it was built against the running torch."""
import os

import torch

_REBUILD = (
    "Rebuild cnnext against the torch you run: `pip install --no-build-isolation --force-reinstall --no-deps .` "
    "in the cnnext source folder (or `python setup.py build_ext --inplace` for a source checkout)."
)


def load():
    """Load cnnext's ops into torch.ops.cnnext; returns where they came from.

    CNNEXT_LIBRARY=/path/libcnnext.so loads a library built by CMake instead of cnnext._C.
    """
    lib = os.environ.get("CNNEXT_LIBRARY")
    if lib:
        torch.ops.load_library(lib)
        return lib
    try:
        from . import _build_info
    except ImportError:
        raise ImportError("cnnext's compiled extension is not built. " + _REBUILD) from None
    if _build_info.TORCH_VERSION != torch.__version__:
        raise ImportError(
            f"cnnext was compiled against torch {_build_info.TORCH_VERSION} but torch {torch.__version__} is "
            f"running; a C++ extension only works with the torch it was built with. " + _REBUILD
        )
    try:
        from . import _C
    except ImportError as e:
        raise ImportError(f"cnnext's compiled extension failed to load ({e}). " + _REBUILD) from e
    return _C.__file__
