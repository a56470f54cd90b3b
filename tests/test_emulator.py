"""The CUDA emulator's own pieces (csrc/cuda/compat.h, csrc/cuda/tensor_core.h), through the
stand-alone program tests/emulator/selftest.cpp: WMMA (tf32 m16n16k8; __half and __nv_bfloat16 m16n16k16)
against a reference, the
tf32 rounding bit by bit, the tensor core's truncation of unrounded operands, the scrambled fragment
layout, cp.async, launch-configuration checks; and every misuse of WMMA / cp.async aborts the
emulator with a message naming the rule (so a kernel that breaks a rule cannot pass here)."""
import hashlib
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ["tests/emulator/selftest.cpp", "csrc/cuda/compat.h", "csrc/cuda/tensor_core.h", "csrc/cuda/half.h",
           "csrc/common/bfloat16.h", "csrc/common/float16.h"]


@pytest.fixture(scope="module")
def selftest():
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if cxx is None:
        pytest.skip("no C++ compiler")
    h = hashlib.sha1()
    for s in SOURCES:
        with open(os.path.join(ROOT, s), "rb") as f:
            h.update(f.read())
    out = os.path.join(ROOT, "build", "emulator-selftest", h.hexdigest()[:16], "selftest")
    if not os.path.exists(out):
        os.makedirs(os.path.dirname(out), exist_ok=True)
        cmd = [cxx, "-std=c++20", "-O1", "-DEMU", "-Wall", "-Werror", "-Icsrc/cuda", SOURCES[0], "-o", out + ".tmp"]
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr[-4000:]
        os.replace(out + ".tmp", out)
    return out


def run(exe, mode):
    return subprocess.run([exe, mode], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "EMU_STRATEGY": "fibers"})


@pytest.mark.parametrize("mode", ["gemm", "gemm16", "rounding", "truncation", "layout", "config", "async"])
def test_clean(selftest, mode):
    p = run(selftest, mode)
    assert p.returncode == 0 and "FAIL" not in p.stdout, p.stdout + p.stderr
    assert p.stdout.count("ok ") >= 1


MISUSE = [
    ("divergent", "wmma::load_matrix_sync is warp-collective"),
    ("pointers", "must pass the same pointer"),
    ("misaligned", "256-bit (32-byte) aligned pointer"),
    ("ldm", "ldm to be a multiple of 16 bytes"),
    ("ldm_differs", "same ldm and layout"),
    ("exited", "wmma::store_matrix_sync is warp-collective"),
    ("layouts", "same ldm and layout"),
    ("partial_warp", "needs a full warp"),
    ("async_misaligned_dst", "cp.async: source and destination must be aligned"),
    ("async_misaligned_src", "cp.async: source and destination must be aligned"),
    ("async_not_waited", "copies it never waited for"),
]


@pytest.mark.parametrize("mode,message", MISUSE, ids=[m for m, _ in MISUSE])
def test_misuse_aborts(selftest, mode, message):
    p = run(selftest, mode)
    assert p.returncode != 0, f"misuse '{mode}' ran to completion: {p.stdout}"
    assert message in p.stderr, p.stderr
