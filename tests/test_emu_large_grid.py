"""The grids a GPU launches, on the emulator: with the emulator's grid cap raised to the GPU's 65535
(conftest.emu_grid_cap), each op runs small inputs that need more than 64 blocks -- one block per
tile or per 256 elements, every thread doing one iteration of its grid-stride loop, blockIdx past
64 -- and must equal the CPU kernels (float64, 1e-10) and torch."""
import pytest
import torch
import torch.nn.functional as F

import cnnext.functional as C
from conftest import assert_rel_close, emu_grid_cap, on


def _grads(fn, *args):
    leaves = [a.detach().clone().requires_grad_() if a is not None and a.is_floating_point() else a for a in args]
    y = fn(*leaves)
    gy = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(3))
    gs = torch.autograd.grad(y, [t for t in leaves if isinstance(t, torch.Tensor) and t.requires_grad], gy)
    return [y, *gs]


def _g(*shape, seed=0):
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


CASES = {
    # 4900 columns: 77 column tiles of 64 (forward and grad input); 21 channels x 3 row tiles for grad weight
    "conv2d": (lambda x, w, b: C.conv2d(x, w, b, padding=1), lambda: (_g(1, 3, 70, 70), _g(4, 3, 3, 3, seed=1), _g(4, seed=2))),
    "conv2d_groups": (lambda x, w: C.conv2d(x, w, stride=2, padding=1, groups=2),
                      lambda: (_g(1, 4, 40, 40), _g(140, 2, 3, 3, seed=1))),
    "max_pool2d": (lambda x: C.max_pool2d(x, 2), lambda: (_g(1, 8, 100, 100),)),  # 20000 outputs: 79 blocks
    "avg_pool2d": (lambda x: C.avg_pool2d(x, 3, 2, 1), lambda: (_g(1, 8, 90, 90),)),
    "adaptive_avg_pool2d": (lambda x: C.adaptive_avg_pool2d(x, (70, 70)), lambda: (_g(1, 4, 100, 100),)),
    "adaptive_global": (lambda x: C.adaptive_avg_pool2d(x, 1), lambda: (_g(2, 400, 3, 3),)),  # 800 planes
    "batch_norm_relu": (lambda x, w, b: C.batch_norm_relu(x, None, None, w, b, True),
                        lambda: (_g(2, 8, 40, 40), _g(8, seed=1), _g(8, seed=2))),
    "batch_norm_rows": (lambda x, w, b: C.batch_norm(x, None, None, w, b, True),
                        lambda: (_g(300, 80), _g(80, seed=1), _g(80, seed=2))),
    "cat": (lambda a, b: C.cat([a, b], 1), lambda: (_g(1, 8, 64, 64), _g(1, 8, 64, 64, seed=1))),  # 128 blocks per input
    "corr2d": (lambda x, k: C.corr2d(x, k), lambda: (_g(2, 100, 100), _g(3, 3, seed=1))),
}


@pytest.mark.parametrize("name", list(CASES))
def test_gpu_sized_grids_match_cpu(name):
    fn, make = CASES[name]
    args = make()
    with on("cpu"):
        ref = _grads(fn, *args)
    with on("emu"), emu_grid_cap(65535):
        got = _grads(fn, *args)
    for i, (a, e) in enumerate(zip(got, ref)):
        assert_rel_close(a, e, what=f"{name} output {i}")


def test_grid_cap_is_restored_and_checked():
    with emu_grid_cap(100):
        assert torch.ops.cnnext._set_emu_grid_cap(7) == 100
    assert torch.ops.cnnext._set_emu_grid_cap(64) == 64
    with pytest.raises(RuntimeError, match="cap must be in"):
        torch.ops.cnnext._set_emu_grid_cap(0)
