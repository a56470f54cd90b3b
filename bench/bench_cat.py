"""cat vs torch.cat: GoogLeNet Inception outputs and DenseNet dense-block steps, batch 32, float32.

forward:  cnnext.functional.cat(xs, 1) vs torch.cat(xs, 1)
backward: producing each input's gradient slice as a new tensor,
          torch.ops.cnnext.cat_backward(g, 1, sizes) vs [s.contiguous() for s in g.split(sizes, 1)]
          (torch.cat's own backward hands out narrow() views, which cost nothing but are not contiguous).
GB/s counts bytes read + written (2 x the output), to compare with harness.copy_bandwidth().

Run from the repository root: python -m bench.bench_cat [--threads 2]
"""
import torch

import cnnext
from bench import harness

N = 32
INCEPTION = [  # (name, branch channels, H = W) for the 96x96-input GoogLeNet of d2l 7.4
    ("inception 3a", (64, 128, 32, 32), 12),
    ("inception 3b", (128, 192, 96, 64), 12),
    ("inception 4a", (192, 208, 48, 64), 6),
    ("inception 4e", (256, 320, 128, 128), 6),
    ("inception 5b", (384, 384, 128, 128), 3),
]
DENSENET = [(64 + 32 * k, 32, 24) for k in range(4)]  # d2l 7.7: X = cat((X, Y), 1), growth rate 32, 24x24


def cases(channels_last=False):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    tag = " (channels_last)" if channels_last else ""
    shapes = [(name, chans, hw) for name, chans, hw in INCEPTION]
    shapes += [(f"densenet {cx}+{cy}", (cx, cy), hw) for cx, cy, hw in DENSENET]
    out = []
    for name, chans, hw in shapes:
        xs = [torch.randn(N, c, hw, hw).contiguous(memory_format=fmt) for c in chans]
        nbytes = 2 * sum(x.numel() for x in xs) * 4
        out.append(harness.Case(f"{name} {'+'.join(map(str, chans))} @{hw}x{hw}{tag}",
                                lambda xs=xs: torch.cat(xs, 1), lambda xs=xs: cnnext.functional.cat(xs, 1),
                                bytes=nbytes, group="forward" + tag))
        g = torch.cat(xs, 1)
        sizes = list(chans)
        out.append(harness.Case(f"{name} {'+'.join(map(str, chans))} @{hw}x{hw}{tag}",
                                lambda g=g, s=sizes: [t.contiguous(memory_format=fmt) for t in g.split(s, 1)],
                                lambda g=g, s=sizes: torch.ops.cnnext.cat_backward(g, 1, s),
                                bytes=nbytes, group="backward" + tag))
    for c in out:
        c.no_grad = True
    return out


if __name__ == "__main__":
    p = harness.parser(__doc__)
    p.add_argument("--channels-last", action="store_true", help="also time channels_last inputs")
    args = p.parse_args()
    bw = harness.copy_bandwidth(threads=args.threads)
    print(f"torch copy_ bandwidth (harness.copy_bandwidth, {args.threads} threads): {bw:.1f} GB/s")
    cs = cases() + (cases(channels_last=True) if args.channels_last else [])
    harness.run(cs, threads=args.threads, repeats=3 if args.quick else args.repeats, min_time=args.min_time,
                title="cat, CPU, float32, batch 32", json_path=args.json,
                extra_columns={"cnnext_%copy_bw": lambda row, c: 100 * row["cnnext_gbs"] / bw})
