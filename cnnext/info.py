"""`cnnext.info()` / `python -m cnnext.info`: what this build of cnnext is and can do here."""
import json
import platform

import torch


def info() -> dict:
    """Versions (build and runtime), compiler, CPU SIMD level, CUDA archs, GPU and emulator availability, threads."""
    import cnnext

    native = json.loads(torch.ops.cnnext.build_info())
    try:
        from . import _build_info as b
        build = {"torch_version_built": b.TORCH_VERSION, "cuda_archs": b.CUDA_ARCHS, "nvcc": b.NVCC,
                 "march": b.MARCH}
    except ImportError:  # a CMake-built library (CNNEXT_LIBRARY)
        build = {"torch_version_built": native["torch_version_compiled"], "cuda_archs": "", "nvcc": "",
                 "march": ""}
    return {
        "cnnext_version": cnnext.__version__,
        "library": cnnext._LIBRARY,
        "torch_version": torch.__version__,
        **build,
        "compiler": native["compiler"],
        "cpu_simd": native["simd"],
        "cuda_kernels_compiled": native["cuda_compiled"],
        "gpu_available": bool(native["cuda_compiled"] and torch.cuda.is_available()),
        "gpu": torch.cuda.get_device_name(0) if native["cuda_compiled"] and torch.cuda.is_available() else None,
        "cuda_emulator": native["emulator"],
        "num_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def main():
    for k, v in info().items():
        print(f"{k:24s} {v}")


if __name__ == "__main__":
    main()
