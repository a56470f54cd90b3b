"""conv2d vs torch.nn.functional.conv2d on every conv layer shape of the d2l CNN family (CPU, batch 32).

Run from the repository root: python -m bench.bench_conv2d [--threads 2] [--quick]

Shapes (input sizes as in d2l ch. 7; identical shapes are timed once, under the first net that has them):
  LeNet 28x28; AlexNet 224x224; VGG-11 224x224 with d2l's small variant (ratio 4: channels 16, 32, 64,
  128, 128 instead of 64 ... 512, to keep the run short); NiN 224x224; ResNet-18, GoogLeNet (b1, b2 and
  the inception blocks 3a, 3b, 4a) and DenseNet at 96x96.
Four groups: forward; forward+backward (grads of weight, bias and -- except for a net's first layer,
whose input is the image -- of the input); and the two backward passes on their own, so the weak one
shows: grad input (not for a net's first layer) and grad weight (+bias).  The torch side of those two is
torch.ops.aten.convolution_backward with one output mask each ([input] / [weight, bias]), cnnext's
its conv2d_backward_input / conv2d_backward_weight ops, on the same grad_output, timed alternately in one
process.  --only forward,grad-weight,... runs a subset of the groups.  --bf16 adds "forward bf16" and
"forward+backward bf16": the same shapes with bfloat16 input, weight and bias, against torch's bfloat16
conv2d (oneDNN; AMX tiles where the CPU has them).  GFLOP/s counts 2*N*K*P*Q*C/groups*R*S
per pass (x3 for forward+backward, x2 when the input needs no grad); pct_peak is cnnext's rate over torch.mm's measured
single-precision rate on the same threads (harness.matmul_peak).
Note: at::parallel_for runs in parallel only when the extension is compiled with -fopenmp (ATen's
OpenMP backend is inline in the headers); without it every cnnext CPU kernel runs on one thread.
"""
import math

import torch
import torch.nn.functional as F

import cnnext
from bench import harness

BATCH = 32


def _same(c_in, c_out, k, hw, first=False):  # k x k, stride 1, "same" padding
    return (c_in, c_out, k, 1, k // 2, hw, first)


def shapes():
    """(net, c_in, c_out, kernel, stride, padding, input size, first layer)."""
    nets = {
        "LeNet": [(1, 6, 5, 1, 2, 28, True), (6, 16, 5, 1, 0, 14, False)],
        "AlexNet": [(1, 96, 11, 4, 1, 224, True), (96, 256, 5, 1, 2, 26, False), (256, 384, 3, 1, 1, 12, False),
                    (384, 384, 3, 1, 1, 12, False), (384, 256, 3, 1, 1, 12, False)],
        "VGG-11/4": [_same(1, 16, 3, 224, True), _same(16, 32, 3, 112), _same(32, 64, 3, 56), _same(64, 64, 3, 56),
                     _same(64, 128, 3, 28), _same(128, 128, 3, 28), _same(128, 128, 3, 14)],
        "NiN": [(1, 96, 11, 4, 0, 224, True), (96, 96, 1, 1, 0, 54, False), (96, 256, 5, 1, 2, 26, False),
                (256, 256, 1, 1, 0, 26, False), (256, 384, 3, 1, 1, 12, False), (384, 384, 1, 1, 0, 12, False),
                (384, 10, 3, 1, 1, 5, False), (10, 10, 1, 1, 0, 5, False)],
        "ResNet-18": [(1, 64, 7, 2, 3, 96, True), _same(64, 64, 3, 24), (64, 128, 3, 2, 1, 24, False),
                      _same(128, 128, 3, 12), (64, 128, 1, 2, 0, 24, False), (128, 256, 3, 2, 1, 12, False),
                      _same(256, 256, 3, 6), (128, 256, 1, 2, 0, 12, False), (256, 512, 3, 2, 1, 6, False),
                      _same(512, 512, 3, 3), (256, 512, 1, 2, 0, 6, False)],
        "GoogLeNet": [(1, 64, 7, 2, 3, 96, True), _same(64, 64, 1, 24), _same(64, 192, 3, 24),
                      # inception 3a (in 192 @12): 1x1 64 | 1x1 96 -> 3x3 128 | 1x1 16 -> 5x5 32 | pool -> 1x1 32
                      _same(192, 64, 1, 12), _same(192, 96, 1, 12), _same(96, 128, 3, 12), _same(192, 16, 1, 12),
                      _same(16, 32, 5, 12), _same(192, 32, 1, 12),
                      # inception 3b (in 256 @12): 1x1 128 | 1x1 128 -> 3x3 192 | 1x1 32 -> 5x5 96 | 1x1 64
                      _same(256, 128, 1, 12), _same(128, 192, 3, 12), _same(256, 32, 1, 12), _same(32, 96, 5, 12),
                      _same(256, 64, 1, 12),
                      # inception 4a (in 480 @6): 1x1 192 | 1x1 96 -> 3x3 208 | 1x1 16 -> 5x5 48 | 1x1 64
                      _same(480, 192, 1, 6), _same(480, 96, 1, 6), _same(96, 208, 3, 6), _same(480, 16, 1, 6),
                      _same(16, 48, 5, 6), _same(480, 64, 1, 6)],
        # dense blocks of 4 growth-32 3x3 convs at 24, 12, 6, 3 (first and last of each), transitions 1x1 halve
        "DenseNet": [(1, 64, 7, 2, 3, 96, True), _same(64, 32, 3, 24), _same(160, 32, 3, 24), _same(192, 96, 1, 24),
                     _same(96, 32, 3, 12), _same(192, 32, 3, 12), _same(224, 112, 1, 12), _same(112, 32, 3, 6),
                     _same(208, 32, 3, 6), _same(240, 120, 1, 6), _same(120, 32, 3, 3), _same(216, 32, 3, 3)],
    }
    seen, out = set(), []
    for net, layers in nets.items():
        for (ci, co, k, st, pad, hw, first) in layers:
            key = (ci, co, k, st, pad, hw)
            if key not in seen:
                seen.add(key)
                out.append((net, ci, co, k, st, pad, hw, first))
    return out


GROUPS = ("forward", "forward+backward", "grad input", "grad weight")
BF16_GROUPS = ("forward bf16", "forward+backward bf16")


def cases(groups=GROUPS, dtype=torch.float32):
    """The cases of `groups` (GROUPS, or BF16_GROUPS with dtype=torch.bfloat16)."""
    out = []
    sfx = " bf16" if dtype == torch.bfloat16 else ""
    for net, ci, co, k, st, pad, hw, first in shapes():
        x = torch.randn(BATCH, ci, hw, hw).to(dtype)
        w = (torch.randn(co, ci, k, k) / math.sqrt(ci * k * k)).to(dtype)
        b = torch.randn(co).to(dtype)
        P = (hw + 2 * pad - k) // st + 1
        flops = 2 * BATCH * co * P * P * ci * k * k
        name = f"{net} {ci}->{co} {k}x{k}" + (f" s{st}" if st > 1 else "") + (f" p{pad}" if pad else "") + f" @{hw}"
        fwd = harness.Case(name, lambda x=x, w=w, b=b, st=st, pad=pad: F.conv2d(x, w, b, st, pad),
                           lambda x=x, w=w, b=b, st=st, pad=pad: cnnext.functional.conv2d(x, w, b, st, pad),
                           flops=flops, group="forward" + sfx)
        fwd.no_grad = True
        if "forward" + sfx in groups:
            out.append(fwd)
        xg, wg, bg = x.clone().requires_grad_(not first), w.clone().requires_grad_(), b.clone().requires_grad_()
        gy = torch.randn(BATCH, co, P, P).to(dtype)
        inputs = (wg, bg) if first else (xg, wg, bg)

        def fb(conv, xg=xg, wg=wg, bg=bg, st=st, pad=pad, gy=gy, inputs=inputs):
            return torch.autograd.grad(conv(xg, wg, bg, st, pad), inputs, gy)

        if "forward+backward" + sfx in groups:
            out.append(harness.Case(name, lambda fb=fb: fb(F.conv2d), lambda fb=fb: fb(cnnext.functional.conv2d),
                                    flops=flops * (2 if first else 3), group="forward+backward" + sfx))
        # the backward passes alone: aten.convolution_backward with one output mask vs cnnext's op
        conv_args = ([st, st], [pad, pad], [1, 1])
        if "grad input" in groups and not first:
            gi = harness.Case(
                name,
                lambda x=x, w=w, gy=gy, a=conv_args: torch.ops.aten.convolution_backward(
                    gy, x, w, [co], *a, False, [0, 0], 1, [True, False, False])[0],
                lambda x=x, w=w, gy=gy, a=conv_args: torch.ops.cnnext.conv2d_backward_input(gy, w, list(x.shape), *a, 1),
                flops=flops, group="grad input")
            gi.no_grad = True
            out.append(gi)
        if "grad weight" in groups:
            gw = harness.Case(
                name,
                lambda x=x, w=w, gy=gy, a=conv_args: torch.ops.aten.convolution_backward(
                    gy, x, w, [co], *a, False, [0, 0], 1, [False, True, True])[1:],
                lambda x=x, w=w, gy=gy, a=conv_args: torch.ops.cnnext.conv2d_backward_weight(
                    gy, x, list(w.shape), *a, 1, True),
                flops=flops, group="grad weight")
            gw.no_grad = True
            out.append(gw)
    return out


if __name__ == "__main__":
    p = harness.parser(__doc__)
    p.set_defaults(repeats=3)  # 61 shapes x 2 passes: keeps the whole run to a few minutes
    p.add_argument("--only", default="", help="comma-separated groups: " + ", ".join(g.replace(" ", "-") for g in GROUPS))
    p.add_argument("--bf16", action="store_true", help="also the bfloat16 groups: " + ", ".join(BF16_GROUPS))
    args = p.parse_args()
    groups = tuple(g for g in GROUPS if not args.only or g.replace(" ", "-") in args.only.split(","))
    bf16_groups = BF16_GROUPS if args.bf16 else ()
    # the best of three: on a shared machine a single measurement can land in someone else's build
    peak = max(harness.matmul_peak(threads=args.threads) for _ in range(3))
    print(f"torch.mm single-precision peak on {args.threads} threads: {peak:.0f} GFLOP/s")
    rows = harness.run(cases(groups) + cases(bf16_groups, torch.bfloat16), threads=args.threads, repeats=3 if args.quick else args.repeats,
                       min_time=0.01 if args.quick else args.min_time, title="conv2d, CPU, batch 32",
                       json_path=args.json, extra_columns={"pct_peak": lambda row, c: 100 * row["cnnext_gflops"] / peak})
    for g in groups + bf16_groups:
        print(f"\n{g}, geometric-mean ratio torch/cnnext per net:")
        for net in dict.fromkeys(r["case"].split()[0] for r in rows):
            rs = [r["ratio"] for r in rows if r["group"] == g and r["case"].split()[0] == net]
            if not rs:
                continue
            print(f"  {net:10s} {harness.geomean(rs):.2f} (min {min(rs):.2f}, {len(rs)} shapes)")
