"""Shared test fixtures: every op test runs on the CPU kernels and on the emulated CUDA kernels."""
import contextlib

import pytest
import torch

import cnnext

BACKENDS = ["cpu", "emu"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """'cpu': the CPU kernels; 'emu': the CUDA kernels run by the emulator (inside emulate_cuda())."""
    with cnnext.emulate_cuda(request.param == "emu"):
        yield request.param


def on(backend):
    """Context manager selecting a backend by name inside a test body."""
    return cnnext.emulate_cuda(backend == "emu")


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


# fp32 rel err <= 1e-5, fp64 <= 1e-10 (DEVELOPERS.md), relative to the largest reference magnitude.
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


