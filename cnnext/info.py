"""`cnnext.info()` / `python -m cnnext.info`: what this build of cnnext is and can do here."""
import functools
import json
import platform

import torch


def cpu_model() -> str:
    """The CPU's model name, as `lscpu | grep 'Model name'` prints it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def native_build() -> dict:
    """What the compiled ops library says of itself (torch.ops.cnnext.build_info()): compiler,
    cuda_compiled, torch_version_compiled, emulator. Fixed for the process, so read once."""
    return json.loads(torch.ops.cnnext.build_info())


def cuda_kernels_compiled() -> bool:
    """Whether this build carries real CUDA kernels (nvcc); the emulator is always there."""
    return bool(native_build()["cuda_compiled"])


def info() -> dict:
    """Versions (build and runtime), compiler, CPU model, the CPU variant in use (cpu_isa) and those built,
    CUDA archs, GPU and emulator availability, threads."""
    import cnnext

    from ._loader import CPU

    native = native_build()
    try:
        from . import _build_info as b
        build = {"torch_version_built": b.TORCH_VERSION, "cuda_archs": b.CUDA_ARCHS, "nvcc": b.NVCC,
                 "march": b.MARCH, "mtune": getattr(b, "MTUNE", "")}
    except ImportError:  # a CMake-built library (CNNEXT_LIBRARY)
        build = {"torch_version_built": native["torch_version_compiled"], "cuda_archs": "", "nvcc": "",
                 "march": "", "mtune": ""}
    return {
        "cnnext_version": cnnext.__version__,
        "library": cnnext._LIBRARY,
        "torch_version": torch.__version__,
        **build,
        "compiler": native["compiler"],
        "cpu_model": cpu_model(),
        "cpu_isa": CPU["isa"],              # the CPU variant in use (cnnext/_loader.py)
        "cpu_isas_built": CPU["built"],
        "cpu_isas_supported": CPU["supported"],
        "cpu_simd": CPU["simd"],            # the widest vectors of that variant's kernels
        "cpu_library": CPU["library"],
        # the bfloat16 conv2d variants that run here (CNNEXT_CONV2D_BF16): amx (the default where listed), dot, float
        "conv2d_bf16": torch.ops.cnnext._conv2d_bf16_variants().split(","),
        # the ops with kernels of their own for bfloat16 / float16, per backend ("op/dtype"); every other half
        # call is computed by the float32 kernels on widened copies, rounded once
        "half_kernels": native["half_kernels"],
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
