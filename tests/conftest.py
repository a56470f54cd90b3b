"""Shared test fixtures: every op test runs on the CPU kernels, on the emulated CUDA kernels and, when
torch sees a CUDA device, on the real CUDA kernels."""
import contextlib

import pytest
import torch
from torch.overrides import TorchFunctionMode

import cnnext

BACKENDS = ["cpu", "emu"] + (["cuda"] if torch.cuda.is_available() else [])


class _OnCuda(TorchFunctionMode):
    """The 'cuda' backend: the tensors a test creates with torch's factory functions and no device
    (torch.randn with a CPU generator, torch.tensor, torch.zeros, ...) are created as the test asks, on
    the CPU (so the same generator gives the same values as on the other backends), then moved to the
    GPU; everything computed from them (cnnext's ops, the torch references) then runs there."""

    FACTORIES = {torch.randn, torch.rand, torch.randint, torch.randperm, torch.zeros, torch.ones, torch.empty,
                 torch.full, torch.arange, torch.linspace, torch.tensor, torch.as_tensor, torch.eye,
                 torch.empty_strided, torch.normal}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in self.FACTORIES and kwargs.get("device") is None:
            rg = kwargs.pop("requires_grad", False)
            out = func(*args, **kwargs)  # this mode is off inside its own handler: a CPU tensor
            if isinstance(out, torch.Tensor):
                out = out.to("cuda").requires_grad_(rg)
            return out
        return func(*args, **kwargs)


@contextlib.contextmanager
def on(backend):
    """Context manager selecting a backend by name: 'cpu' (the CPU kernels), 'emu' (the CUDA kernels under
    the emulator, on CPU tensors, inside emulate_cuda()), 'cuda' (the CUDA kernels on the GPU)."""
    with cnnext.emulate_cuda(backend == "emu"), (_OnCuda() if backend == "cuda" else contextlib.nullcontext()):
        yield


@pytest.fixture(params=BACKENDS)
def backend(request):
    """'cpu', 'emu' or 'cuda' (when torch.cuda.is_available()): see on()."""
    with on(request.param):
        yield request.param


@pytest.fixture(autouse=True)
def _fp32_exact():
    """cnnext's conv2d follows torch.backends.cudnn.allow_tf32 as cuDNN does (torch's default True: TF32
    tensor cores on CUDA and the emulator). The op tests hold every backend to the FP32 bar (1e-5), with
    torch's CUDA references exact too, so they run with TF32 off; tests/test_conv2d_wmma.py turns it on."""
    prev = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = prev


@contextlib.contextmanager
def emu_grid_cap(cap):
    """The emulator caps grid-stride grids at 64 blocks (csrc/cuda/compat.h grid_size); inside this
    block, on this thread, it caps them at `cap` (65535: the GPU's cap), so the grids a GPU launches
    (one block per tile or per 256 elements, no looping) run here too."""
    prev = torch.ops.cnnext._set_emu_grid_cap(cap)
    try:
        yield
    finally:
        torch.ops.cnnext._set_emu_grid_cap(prev)


# fp32 rel err <= 1e-5, fp64 <= 1e-10 (the README's "Guarantees"), relative to the largest reference magnitude.
RTOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def assert_rel_close(actual, expected, rtol=None, what=""):
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    rtol = RTOL[expected.dtype] if rtol is None else rtol
    if expected.numel() == 0:
        return
    a, e = actual.detach().double(), expected.detach().double()
    assert torch.equal(torch.isnan(a), torch.isnan(e)), f"{what}: NaN positions differ"
    finite = ~torch.isnan(e)
    scale = e[finite].abs().max().clamp_min(1e-30) if finite.any() else torch.tensor(1.0)
    err = ((a - e)[finite].abs().max() / scale).item() if finite.any() else 0.0
    assert err <= rtol, f"{what}: relative error {err:.3g} > {rtol:.0e}"


@pytest.fixture
def rel_close():
    return assert_rel_close


