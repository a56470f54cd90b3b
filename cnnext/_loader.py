"""Loads the compiled library, after checking it is there and was built against the running torch."""
import glob
import importlib.machinery
import os
import sys

import torch

_PKG = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_PKG)
_IN_SOURCE = os.path.isfile(os.path.join(_ROOT, "setup.py")) and os.path.isdir(os.path.join(_ROOT, "csrc"))
_BUILD_HERE = "`pip install --no-build-isolation -e .` (or `python setup.py build_ext --inplace`)"
_REBUILD = (
    "Rebuild cnnext against the torch you run: `pip install --no-build-isolation --force-reinstall --no-deps .` "
    "in the cnnext source folder (or " + _BUILD_HERE + " in a source checkout)."
)


def _has_extension(folder):
    return any(os.path.isfile(os.path.join(folder, "_C" + s)) for s in importlib.machinery.EXTENSION_SUFFIXES)


def _not_built_here():
    """The message for a cnnext package folder that holds no compiled extension."""
    if not _IN_SOURCE:
        return (f"cnnext's compiled extension (_C) is missing from {_PKG}: the installation is incomplete. "
                "Reinstall cnnext: `pip install --no-build-isolation --force-reinstall --no-deps .` in its source folder.")
    # another cnnext further down sys.path, hidden by this folder?
    hidden = [d for p in sys.path if os.path.abspath(p or ".") != _ROOT
              for d in glob.glob(os.path.join(p or ".", "cnnext")) if _has_extension(d)]
    also = f" (it hides the installed cnnext in {hidden[0]})" if hidden else ""
    return (f"cnnext is being imported from the source folder {_ROOT}, whose cnnext/ has no compiled "
            f"extension{also}. Build it in place there with {_BUILD_HERE}, or run Python from another "
            "folder to use an installed cnnext.")


def load():
    """Load cnnext's ops into torch.ops.cnnext; returns where they came from.

    CNNEXT_LIBRARY=/path/libcnnext.so loads a library built by CMake instead of cnnext._C.
    """
    lib = os.environ.get("CNNEXT_LIBRARY")
    if lib:
        torch.ops.load_library(lib)
        return lib
    if not _has_extension(_PKG):
        raise ImportError(_not_built_here())
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
