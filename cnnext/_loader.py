"""Loads the compiled library, after checking it is there and was built against the running torch.

The CPU kernels are one shared library per CPU variant (cnnext/_cpu_avx512.so, _cpu_avx2.so,
_cpu_baseline.so: the same csrc/cpu sources compiled with -march=x86-64-v4 / v3 / x86-64; why separate
libraries: csrc/isa/variant.cpp).  load() picks one once, from cpuid (the probe in each variant library,
csrc/isa/probe.cpp) or CNNEXT_CPU_ISA, loads it RTLD_GLOBAL, then the ops library (_C, or a CMake-built
libcnnext.so), whose calls into cnnext::cpu resolve to the variant loaded.
"""
import ctypes
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


def _variant_libraries(folder, prefix):
    """{variant: path} of the CPU variant libraries in `folder` (`prefix`<variant><suffix>)."""
    found = {}
    for path in sorted(glob.glob(os.path.join(folder, prefix + "*.so"))):
        name = os.path.basename(path)[len(prefix):].split(".")[0]
        found.setdefault(name, path)
    return found


# best first: the order the loader tries them in
ORDER = ("native", "avx512", "avx2", "baseline")

# What load() chose: variant name, its library, the variants built, and what the CPU supports.
CPU = {"isa": None, "simd": None, "library": None, "built": [], "supported": [], "features": ""}


def _probe(path):
    """(variants the CPU can run, best first; its cpuid features) from a variant library's probe.
    The probe is plain x86-64 code in every variant (checked by .ci/check_isa.py), and loading a
    library runs none of its kernels, so asking any variant is safe on any x86-64 CPU."""
    lib = ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL)
    for fn in ("cnnext_cpu_supported", "cnnext_cpu_features", "cnnext_cpu_isa", "cnnext_cpu_simd"):
        getattr(lib, fn).restype = ctypes.c_char_p
    return lib.cnnext_cpu_supported().decode().split(), lib.cnnext_cpu_features().decode()


def load_cpu_variant(folder, prefix):
    """Load the CPU variant library of `folder` to use here (RTLD_GLOBAL, before the ops library);
    CNNEXT_CPU_ISA=<variant> forces one.  Records the choice in CPU; returns the variant's name."""
    built = _variant_libraries(folder, prefix)
    if not built:
        raise ImportError(f"cnnext: no CPU variant library ({prefix}<isa>.so) found in {folder}. " + _REBUILD)
    names = sorted(built, key=lambda v: ORDER.index(v) if v in ORDER else len(ORDER))
    probe_with = built.get("baseline") or built[names[-1]]
    supported, features = _probe(probe_with)
    forced = os.environ.get("CNNEXT_CPU_ISA", "").strip()
    if forced:
        if forced not in built:
            raise ImportError(f"cnnext: CNNEXT_CPU_ISA={forced} but this build has the CPU variants "
                              f"{', '.join(names)} only (setup.py's CNNEXT_CPU_ISAS chooses what is built).")
        if forced != "native" and forced not in supported:
            raise ImportError(f"cnnext: CNNEXT_CPU_ISA={forced}, but this CPU cannot run it: it supports the "
                              f"variants {', '.join(supported)} (cpuid: {features or 'no SIMD extensions'}). "
                              f"Unset CNNEXT_CPU_ISA or choose one of {', '.join(v for v in names if v in supported)}.")
        isa = forced
    else:
        # "native" (CNNEXT_MARCH) is the one variant of its build, made for the building machine.
        usable = [v for v in names if v == "native" or v in supported]
        if not usable:
            raise ImportError(f"cnnext: none of the CPU variants built ({', '.join(names)}) runs on this CPU, "
                              f"which supports {', '.join(supported)} (cpuid: {features}). " + _REBUILD)
        isa = usable[0]
    lib = ctypes.CDLL(built[isa], mode=ctypes.RTLD_GLOBAL)
    for fn in ("cnnext_cpu_isa", "cnnext_cpu_simd"):
        getattr(lib, fn).restype = ctypes.c_char_p
    CPU.update(isa=lib.cnnext_cpu_isa().decode(), simd=lib.cnnext_cpu_simd().decode(), library=built[isa],
               built=names, supported=supported, features=features)
    return isa


def load():
    """Load cnnext's ops into torch.ops.cnnext; returns where they came from.

    CNNEXT_LIBRARY=/path/libcnnext.so loads a library built by CMake instead of cnnext._C (its CPU
    variants, libcnnext_cpu_<isa>.so, next to it).
    """
    lib = os.environ.get("CNNEXT_LIBRARY")
    if lib:
        load_cpu_variant(os.path.dirname(os.path.abspath(lib)), "libcnnext_cpu_")
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
    load_cpu_variant(_PKG, "_cpu_")
    try:
        from . import _C
    except ImportError as e:
        raise ImportError(f"cnnext's compiled extension failed to load ({e}). " + _REBUILD) from e
    return _C.__file__
