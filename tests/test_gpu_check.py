"""bench/gpu_check.py: without a CUDA device it exits 3 saying `no CUDA device`; its correctness
machinery, run against the emulated CUDA kernels (--backend emu), passes on the real kernels and
fails on wrong outputs, wrong gradients and misplaced NaNs (so what it reports on a GPU means
something)."""
import json
import os
import subprocess
import sys

import pytest
import torch

import cnnext
from bench import gpu_check
from cnnext.functional import conv2d

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_no_cuda_device_exits_3(tmp_path):
    out = tmp_path / "gc.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no device, even on a GPU machine
    p = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--json", str(out)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 3, p.stdout + p.stderr
    assert "no CUDA device" in p.stdout.splitlines()
    assert json.loads(out.read_text())["error"] == "no CUDA device"


def test_rel_err():
    e = torch.tensor([1.0, -2.0, float("nan")], dtype=torch.float64)
    assert gpu_check.rel_err(e.clone(), e) == 0.0
    assert gpu_check.rel_err(e + torch.tensor([0.0, 2e-5, 0.0], dtype=torch.float64), e) == pytest.approx(1e-5, rel=1e-3)
    assert gpu_check.rel_err(torch.tensor([1.0, float("nan"), 0.0]), e) == float("inf")  # NaN moved
    assert gpu_check.rel_err(torch.tensor([1.0, float("inf"), float("nan")]), e) == float("inf")
    assert gpu_check.rel_err(torch.ones(2), torch.ones(3)) == float("inf")


class _GradTimes(torch.autograd.Function):
    """identity forward; backward scaled by `s` (a kernel with a wrong gradient)."""

    @staticmethod
    def forward(ctx, x, s):
        ctx.s = s
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * ctx.s, None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compare_op_catches_wrong_results(dtype):
    x = torch.randn(2, 3, 6, 5, dtype=dtype)
    w = torch.randn(4, 3, 3, 3, dtype=dtype)
    ref = torch.nn.functional.conv2d
    eps = 1e-4 if dtype == torch.float32 else 1e-9  # 10x the tolerance
    good = gpu_check.compare_op(lambda x, w: conv2d(x, w), ref, [x, w], "emu", grad_idx=(0, 1))
    assert good["ok"], good
    # a kernel wrong on the emulated backend only: both references see it
    bad_out = gpu_check.compare_op(lambda x, w: conv2d(x, w * (1 + eps) if cnnext.emulating_cuda() else w), ref,
                                   [x, w], "emu", grad_idx=(0, 1))
    assert not bad_out["ok"] and bad_out["err_cpu"] > bad_out["tol"] and bad_out["err_torch"] > bad_out["tol"]
    bad_grad = gpu_check.compare_op(lambda x: _GradTimes.apply(x, 1 + eps), lambda x: x.clone(), [x], "emu",
                                    grad_idx=(0,), vs_cpu=False)
    assert not bad_grad["ok"], bad_grad
    nan_moved = gpu_check.compare_op(lambda x: x.clone().fill_(float("nan")) if x.dim() else x, lambda x: x.clone(),
                                     [x], "emu", vs_cpu=False)
    assert not nan_moved["ok"]


def test_every_case_runs_on_the_emulator(tmp_path):
    """The whole non-GPU part of gpu_check (every light correctness case of every op in fp32 and fp64, the
    TF32 path, gradchecks, determinism) against the emulated kernels: exit 0, every check recorded."""
    out = tmp_path / "gc.json"
    rc = gpu_check.main(["--backend", "emu", "--json", str(out)])
    r = json.loads(out.read_text())
    assert rc == 0, r["failed"]
    names = {c["name"] for c in r["checks"]}
    light = [(op, n) for op, n, heavy, _ in gpu_check.all_cases() if not heavy]
    for op, n in light:
        for dt in ("float32", "float64"):
            assert f"{op}/{n}/{dt}" in names
    assert "conv2d/tf32_path" in names
    assert {c["section"] for c in r["checks"]} >= {"correctness", "gradcheck", "determinism"}
    tf = next(c for c in r["checks"] if c["name"] == "conv2d/tf32_path")
    assert 1e-5 < tf["err_tf32_on"] <= 1e-2 and tf["err_tf32_off"] <= 1e-5
