"""The build: info(), the version guard, the emulate switch."""
import json
import os
import subprocess
import sys
import textwrap

import torch

import cnnext


def test_info_fields():
    i = cnnext.info()
    for key in ["cnnext_version", "torch_version", "torch_version_built", "compiler", "cpu_simd",
                "cuda_kernels_compiled", "cuda_archs", "gpu_available", "cuda_emulator", "num_threads",
                "half_kernels"]:
        assert key in i, key
    assert i["torch_version"] == torch.__version__
    assert i["cuda_emulator"] is True
    assert i["num_threads"] == torch.get_num_threads()
    native = json.loads(torch.ops.cnnext.build_info())
    # exactly the facts the ops library knows; the CPU variant's are the loader's (cpu_isa, cpu_simd)
    assert set(native) == {"compiler", "cuda_compiled", "torch_version_compiled", "emulator", "half_kernels"}, native
    assert set(native["half_kernels"]) == {"cpu", "emulator", "cuda"}
    assert i["half_kernels"] == native["half_kernels"]
    assert native["torch_version_compiled"] == torch.__version__.split("+")[0]


def test_build_facts_read_without_info(monkeypatch):
    # cnnext.nn.swap asks only whether CUDA kernels were compiled: cuda_kernels_compiled() reads the
    # ops library's build_info once, and never calls the whole info() (which queries the GPU).
    import importlib

    import cnnext.nn as cnn

    ci = importlib.import_module("cnnext.info")  # the module (cnnext.info, the attribute, is its function)

    assert ci.cuda_kernels_compiled() is bool(json.loads(torch.ops.cnnext.build_info())["cuda_compiled"])
    assert ci.cuda_kernels_compiled() == cnnext.info()["cuda_kernels_compiled"]

    def refuse():
        raise AssertionError("swap called cnnext.info()")

    monkeypatch.setattr(cnnext, "info", refuse)
    monkeypatch.setattr(ci, "info", refuse)
    m = cnn.swap(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.ReLU()))
    assert isinstance(m[0], cnn.Conv2d) and isinstance(m[1], cnn.BatchNormReLU2d), m


def test_info_module_prints():
    out = subprocess.run([sys.executable, "-m", "cnnext.info"], capture_output=True, text=True, check=True).stdout
    assert "cpu_simd" in out and "torch_version_built" in out


def test_torch_version_mismatch_is_a_clear_import_error():
    # Pretend the running torch is another release: import cnnext must refuse with rebuild advice,
    # before loading the compiled library (which would fail with undefined symbols).
    code = textwrap.dedent(
        """
        import torch
        torch.__version__ = "2.99.0"
        try:
            import cnnext
        except ImportError as e:
            print("IMPORTERROR:", e)
        else:
            print("imported")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "IMPORTERROR:" in out, out
    assert "2.99.0" in out and "Rebuild cnnext" in out and "--no-build-isolation" in out


def test_cpu_kernels_are_built_with_openmp():
    # at::parallel_for is an inline OpenMP loop: a build without -fopenmp silently runs every
    # CPU kernel on one thread. The library must call into the OpenMP runtime.
    import shutil

    # the kernels are in the CPU variant libraries (cnnext/_cpu_<isa>.so): each of them
    from cnnext._loader import CPU, _variant_libraries

    nm = shutil.which("nm")
    assert nm, "binutils' nm is needed for this check"
    folder = os.path.dirname(CPU["library"])
    libs = _variant_libraries(folder, "libcnnext_cpu_" if os.path.basename(CPU["library"]).startswith("lib") else "_cpu_")
    assert CPU["isa"] in libs
    for isa, lib in libs.items():
        syms = subprocess.run([nm, "-D", "--undefined-only", lib], capture_output=True, text=True, check=True).stdout
        assert "GOMP_parallel" in syms, f"cnnext's {isa} kernels were compiled without OpenMP: at::parallel_for runs single-threaded"
