"""max_pool2d vs torch.nn.functional.max_pool2d on the pooling layers of the d2l CNN family (CPU, NCHW).

Run from the repository root: python -m bench.bench_max_pool2d [--threads 2]

forward: inference (no grad), where cnnext computes no indices; GB/s counts x read and y written.
forward+backward: training; GB/s counts the forward's x, y and int64 indices and the backward's
grad_output and indices read and grad_input written. pct_copy is cnnext's GB/s as a percentage of
torch's copy_ bandwidth measured in the same run.
"""
import torch
import torch.nn.functional as F

import cnnext
from bench import harness

SHAPES = [  # (name, (N, C, H, W), kernel, stride, padding)
    ("LeNet 2x2 s2", (32, 6, 28, 28), 2, 2, 0),
    ("LeNet 2x2 s2 (2nd)", (32, 16, 10, 10), 2, 2, 0),
    ("AlexNet/NiN 3x3 s2", (32, 96, 54, 54), 3, 2, 0),
    ("AlexNet 3x3 s2 (2nd)", (32, 256, 26, 26), 3, 2, 0),
    ("VGG 2x2 s2", (32, 64, 56, 56), 2, 2, 0),
    ("ResNet 3x3 s2 p1", (32, 64, 48, 48), 3, 2, 1),
    ("GoogLeNet 3x3 s2 p1", (32, 192, 24, 24), 3, 2, 1),
    ("GoogLeNet inception 3x3 s1 p1", (32, 192, 24, 24), 3, 1, 1),
]


def cases():
    out = []
    for name, shape, k, s, p in SHAPES:
        x = torch.randn(shape)
        y = F.max_pool2d(x, k, s, p)
        x_el, y_el = x.numel() * 4, y.numel() * 4
        fwd_bytes = x_el + y_el + 2 * y_el  # x, y, int64 indices
        bwd_bytes = y_el + 2 * y_el + x_el  # grad_output, indices, grad_input
        c = harness.Case(f"{name} {'x'.join(map(str, shape))}", lambda x=x: F.max_pool2d(x, k, s, p),
                         lambda x=x: cnnext.functional.max_pool2d(x, k, s, p), bytes=x_el + y_el, group="forward")
        c.no_grad = True
        out.append(c)
        xg = x.clone().requires_grad_()
        g = torch.randn_like(y)

        def t_fb(xg=xg, g=g, k=k, s=s, p=p):
            xg.grad = None  # the gradient is stored, not accumulated
            F.max_pool2d(xg, k, s, p).backward(g)

        def c_fb(xg=xg, g=g, k=k, s=s, p=p):
            xg.grad = None
            cnnext.functional.max_pool2d(xg, k, s, p).backward(g)

        out.append(harness.Case(f"{name} {'x'.join(map(str, shape))}", t_fb, c_fb, bytes=fwd_bytes + bwd_bytes,
                                group="forward+backward"))
    for name, shape, k, s, p in [SHAPES[2], SHAPES[5]]:  # channels_last input
        x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
        y_el = F.max_pool2d(x, k, s, p).numel() * 4
        c = harness.Case(f"{name} {'x'.join(map(str, shape))}", lambda x=x: F.max_pool2d(x, k, s, p),
                         lambda x=x: cnnext.functional.max_pool2d(x, k, s, p), bytes=x.numel() * 4 + y_el,
                         group="forward, channels_last")
        c.no_grad = True
        out.append(c)
    return out


if __name__ == "__main__":
    args = harness.parser(__doc__).parse_args()
    copy_gbs = harness.copy_bandwidth(threads=args.threads)
    print(f"copy bandwidth (torch copy_, {args.threads} threads): {copy_gbs:.1f} GB/s")
    rows = harness.run(cases(), threads=args.threads, repeats=3 if args.quick else args.repeats,
                       min_time=args.min_time, title="max_pool2d, CPU, NCHW float32", json_path=args.json,
                       extra_columns={"pct_copy": lambda row, c: 100 * row["cnnext_gbs"] / copy_gbs})
    for g in ("forward", "forward+backward", "forward, channels_last"):
        pct = [r["pct_copy"] for r in rows if r["group"] == g]
        print(f"{g}: geometric-mean cnnext bandwidth = {harness.geomean(pct):.1f}% of copy "
              f"(min {min(pct):.1f}%)")
