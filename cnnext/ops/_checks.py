"""Checks the fake kernels share with csrc/ops (same messages), for tensors that never reach C++."""
import torch


def same_device(op, arg, t, ref_arg, ref):
    torch._check(
        t.device == ref.device,
        lambda: f"{op}: {arg} is on {t.device} but {ref_arg} is on {ref.device}; they must be on the same device",
    )
