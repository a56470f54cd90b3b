"""avg_pool2d and adaptive_avg_pool2d vs torch.nn.functional's, on the CNN family's shapes at batch 32.

Run from the repository root: python -m bench.bench_avg_pool2d [--threads 2]

GB/s counts the bytes an ideal kernel moves: forward reads the input and writes the output;
forward+backward also reads grad_output and writes grad_input (torch.autograd.grad(y, x, g) with a
ready g, so no gradient accumulation).
The %copy columns put them beside harness.copy_bandwidth(), torch's copy_ of 256 MiB.
"""
import torch
import torch.nn.functional as F

import cnnext
from bench import harness

AVG = [  # (name, shape): 2x2 stride-2 average pooling
    ("LeNet pool1", (32, 6, 28, 28)),
    ("LeNet pool2", (32, 16, 10, 10)),
    ("DenseNet trans1", (32, 96, 24, 24)),
    ("DenseNet trans2", (32, 112, 12, 12)),
    ("DenseNet 192x12x12", (32, 192, 12, 12)),
]
ADAPTIVE = [  # (name, shape, output_size); the global (1, 1) heads and, in a group of its own, one general size
    ("ResNet-18 head", (32, 512, 3, 3), (1, 1)),
    ("GoogLeNet head", (32, 1024, 3, 3), (1, 1)),
    ("DenseNet head", (32, 248, 3, 3), (1, 1)),
    ("NiN head", (32, 10, 5, 5), (1, 1)),
    ("ResNet 7x7 head", (32, 512, 7, 7), (1, 1)),
    ("AlexNet-style 13->6", (32, 256, 13, 13), (6, 6)),
]


def _cases(op, name, x, torch_f, cnnext_f, out_numel):
    nbytes = (x.numel() + out_numel) * x.element_size()
    out = [harness.Case(f"{name} {tuple(x.shape)}", lambda: torch_f(x), lambda: cnnext_f(x), bytes=nbytes,
                        group=f"{op} forward")]
    xg = x.clone().requires_grad_()
    g = torch.randn(torch_f(x).shape)
    out.append(harness.Case(f"{name} {tuple(x.shape)}", lambda: torch.autograd.grad(torch_f(xg), xg, g),
                            lambda: torch.autograd.grad(cnnext_f(xg), xg, g), bytes=2 * nbytes,
                            group=f"{op} forward+backward"))
    return out


def cases():
    torch.manual_seed(0)
    out = []
    for name, shape in AVG:
        x = torch.randn(shape)
        out += _cases("avg_pool2d 2x2 s2", name, x, lambda t: F.avg_pool2d(t, 2, 2),
                      lambda t: cnnext.functional.avg_pool2d(t, 2, 2), x.numel() // 4)
    for name, shape, size in ADAPTIVE:
        x = torch.randn(shape)
        group = "adaptive_avg_pool2d global" if size == (1, 1) else "adaptive_avg_pool2d general"
        out += _cases(group, f"{name} {size}", x, lambda t, s=size: F.adaptive_avg_pool2d(t, s),
                      lambda t, s=size: cnnext.functional.adaptive_avg_pool2d(t, s),
                      shape[0] * shape[1] * size[0] * size[1])
    return out


if __name__ == "__main__":
    args = harness.parser(__doc__).parse_args()
    copy_bw = harness.copy_bandwidth(threads=args.threads)
    print(f"copy bandwidth (harness.copy_bandwidth, {args.threads} threads): {copy_bw:.1f} GB/s")
    extra = {"torch_%copy": lambda row, c: 100 * row["torch_gbs"] / copy_bw,
             "cnnext_%copy": lambda row, c: 100 * row["cnnext_gbs"] / copy_bw}
    rows = harness.run(cases(), threads=args.threads, repeats=3 if args.quick else args.repeats,
                       min_time=args.min_time, title="avg_pool2d / adaptive_avg_pool2d, CPU", json_path=args.json,
                       extra_columns=extra)
    for g in sorted({r["group"] for r in rows}):
        pct = [r["cnnext_%copy"] for r in rows if r["group"] == g]
        print(f"{g}: cnnext at {harness.geomean(pct):.0f}% of copy bandwidth (geometric mean; "
              f"min {min(pct):.0f}%), torch at {harness.geomean(r['torch_%copy'] for r in rows if r['group'] == g):.0f}%")
