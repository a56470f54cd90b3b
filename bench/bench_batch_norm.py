"""batch_norm and the fused batch_norm + ReLU vs torch.nn.functional.batch_norm (and F.relu), CPU.

Shapes: ResNet-18's BN layers at batch 32 (stage outputs at 96x96 input) and DenseNet-121-like BN
layers (growing channel counts at 24x24 and 12x12), plus three whose sides are not multiples of 16
(30x30, 20x20, 8x8, the sizes issue #16's bar names), which --quick runs too. Groups: training forward,
training forward+backward, eval forward, fused BN+ReLU forward+backward vs F.relu(F.batch_norm(...)).
GB/s counts the bytes the op must move at least (forward: read x, write y; backward: read x and
gy, write gx) and is printed beside the machine's copy bandwidth.

Run from the repository root: python -m bench.bench_batch_norm [--threads 2]
"""
import torch
import torch.nn.functional as F

import cnnext
from bench import harness

RESNET = [(32, 64, 24, 24), (32, 128, 12, 12), (32, 256, 6, 6), (32, 512, 3, 3)]
DENSENET = [(32, 64, 24, 24), (32, 128, 24, 24), (32, 192, 24, 24), (32, 128, 12, 12), (32, 160, 12, 12),
            (32, 192, 12, 12)]
ODD = [(32, 32, 30, 30), (32, 64, 20, 20), (32, 128, 8, 8)]


def shapes(quick=False):
    out = [("resnet", s) for s in RESNET]
    out += [("densenet", s) for s in DENSENET if ("resnet", s) not in out]
    return (out[:3] if quick else out) + [("odd", s) for s in ODD]


def name(net, s):
    return f"{net} {'x'.join(map(str, s))}"


def cases(quick=False):
    out = []
    for net, s in shapes(quick):
        C = s[1]
        x = torch.randn(s)
        nbytes = x.numel() * 4
        w, b = torch.randn(C), torch.randn(C)
        rm_t, rv_t, rm_c, rv_c = torch.zeros(C), torch.ones(C), torch.zeros(C), torch.ones(C)

        fwd = harness.Case(f"{name(net, s)}", lambda x=x, w=w, b=b, rm=rm_t, rv=rv_t: F.batch_norm(
            x, rm, rv, w, b, True), lambda x=x, w=w, b=b, rm=rm_c, rv=rv_c: cnnext.functional.batch_norm(
            x, rm, rv, w, b, True), bytes=2 * nbytes, group="1 train forward")
        fwd.no_grad = True
        out.append(fwd)

        ev = harness.Case(f"{name(net, s)}", lambda x=x, w=w, b=b, rm=rm_t, rv=rv_t: F.batch_norm(
            x, rm, rv, w, b, False), lambda x=x, w=w, b=b, rm=rm_c, rv=rv_c: cnnext.functional.batch_norm(
            x, rm, rv, w, b, False), bytes=2 * nbytes, group="3 eval forward")
        ev.no_grad = True
        out.append(ev)

        xg, wg, bg = x.clone().requires_grad_(), w.clone().requires_grad_(), b.clone().requires_grad_()
        gy = torch.randn(s)

        def t_fb(xg=xg, wg=wg, bg=bg, gy=gy, rm=rm_t, rv=rv_t):
            xg.grad = wg.grad = bg.grad = None
            F.batch_norm(xg, rm, rv, wg, bg, True).backward(gy)

        def c_fb(xg=xg, wg=wg, bg=bg, gy=gy, rm=rm_c, rv=rv_c):
            xg.grad = wg.grad = bg.grad = None
            cnnext.functional.batch_norm(xg, rm, rv, wg, bg, True).backward(gy)

        def t_fbr(xg=xg, wg=wg, bg=bg, gy=gy, rm=rm_t, rv=rv_t):
            xg.grad = wg.grad = bg.grad = None
            F.relu(F.batch_norm(xg, rm, rv, wg, bg, True)).backward(gy)

        def c_fbr(xg=xg, wg=wg, bg=bg, gy=gy, rm=rm_c, rv=rv_c):
            xg.grad = wg.grad = bg.grad = None
            cnnext.functional.batch_norm_relu(xg, rm, rv, wg, bg, True).backward(gy)

        # forward: read x, write y; backward: read x, gy, write gx
        out.append(harness.Case(f"{name(net, s)}", t_fb, c_fb, bytes=5 * nbytes, group="2 train forward+backward"))
        out.append(harness.Case(f"{name(net, s)}", t_fbr, c_fbr, bytes=5 * nbytes,
                                group="4 fused BN+ReLU forward+backward"))
    return sorted(out, key=lambda c: c.group)


if __name__ == "__main__":
    args = harness.parser(__doc__).parse_args()
    bw = harness.copy_bandwidth(threads=args.threads)
    print(f"copy bandwidth (torch copy_, {args.threads} threads): {bw:.1f} GB/s")
    harness.run(cases(args.quick), threads=args.threads, repeats=3 if args.quick else args.repeats,
                min_time=args.min_time, title="batch_norm, CPU", json_path=args.json,
                extra_columns={"cnnext_%copy": lambda row, c: 100 * row["cnnext_gbs"] / bw,
                               "torch_%copy": lambda row, c: 100 * row["torch_gbs"] / bw})
