"""One training step (forward, cross-entropy, backward, SGD step) of each d2l CNN: cnnext layers vs
the same network (same weights, same input) on torch.nn layers.

Run from the repository root: python -m bench.bench_models [--models lenet,resnet18] [--batch 32]
Input sizes are the book's: LeNet 28, AlexNet/VGG/NiN 224, GoogLeNet/ResNet/DenseNet 96 (--size
overrides them all). VGG-11 uses d2l's training width (--vgg-ratio 4: channels / 4).
--amp adds the group "train step autocast bf16": forward and loss under torch.autocast("cpu", bfloat16)
(float32 parameters, bfloat16 convolutions), both networks, and prints cnnext's autocast step time over
its own float32 step.
--torchvision NAMES (e.g. resnet18,densenet121,vgg11_bn,googlenet) adds the group "train step torchvision":
the torchvision model as built (10 classes, 3 x --tv-size^2 input, default 96) against a deep copy of it
after cnnext.nn.swap (same weights, same input); --models '' runs only these.
"""
import copy

import torch
from torch import nn

from bench import harness
from cnnext import models


def step_fn(net, x, y, amp=False):
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
    return step


def cases(names, batch, size=None, vgg_ratio=4, amp=False):
    out = []
    for name in names:
        build, d2l_size = models.MODELS[name]
        s = size or d2l_size
        kw = {"ratio": vgg_ratio} if name == "vgg11" else {}
        torch.manual_seed(0)
        cx = build(layers="cnnext", **kw)
        tw = build(layers="torch", **kw)
        tw.load_state_dict(cx.state_dict())
        x, y = torch.randn(batch, 1, s, s), torch.randint(0, 10, (batch,))
        label = f"{name}{f' ratio {vgg_ratio}' if kw else ''} B={batch} {s}x{s}"
        c = harness.Case(label, step_fn(tw, x, y), step_fn(cx, x, y), group="train step")
        c.batch = batch
        out.append(c)
        if amp:
            c = harness.Case(label, step_fn(tw, x, y, True), step_fn(cx, x, y, True), group="train step autocast bf16")
            c.batch = batch
            out.append(c)
    return out


def torchvision_cases(names, batch, size=96):
    import torchvision

    import cnnext

    out = []
    for name in names:
        torch.manual_seed(0)
        kw = {"aux_logits": False, "init_weights": True} if name == "googlenet" else {}
        tw = getattr(torchvision.models, name)(num_classes=10, **kw)
        cx = cnnext.nn.swap(copy.deepcopy(tw))
        x, y = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))
        c = harness.Case(f"torchvision {name} B={batch} {size}x{size}", step_fn(tw, x, y), step_fn(cx, x, y),
                         group="train step torchvision")
        c.batch = batch
        out.append(c)
    return out


if __name__ == "__main__":
    p = harness.parser(__doc__)
    p.add_argument("--models", default=",".join(models.MODELS), help="comma-separated, from " + ", ".join(models.MODELS))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=None, help="input size for every model (default: the book's)")
    p.add_argument("--vgg-ratio", type=int, default=4)
    p.add_argument("--amp", action="store_true", help="also one step under torch.autocast (bfloat16) per model")
    p.add_argument("--torchvision", default="", help="comma-separated torchvision model names, swapped")
    p.add_argument("--tv-size", type=int, default=96, help="input size of the torchvision models")
    args = p.parse_args()
    names = [n for n in args.models.split(",") if n]
    for n in names:
        if n not in models.MODELS:
            p.error(f"unknown model {n!r}")
    tv = [n for n in args.torchvision.split(",") if n]
    rows = harness.run(cases(names, args.batch, args.size, args.vgg_ratio, args.amp)
                       + torchvision_cases(tv, args.batch, args.tv_size), threads=args.threads,
                repeats=3 if args.quick else args.repeats, min_time=args.min_time,
                title="d2l CNNs, one SGD training step, CPU", json_path=args.json,
                extra_columns={"torch_img_s": lambda r, c: c.batch / (r["torch_ms"] / 1e3),
                               "cnnext_img_s": lambda r, c: c.batch / (r["cnnext_ms"] / 1e3)})
    if args.amp:
        print("\ncnnext, autocast bf16 step time / float32 step time (below 1: bf16 is faster):")
        fam = [r for r in rows if r["group"] != "train step torchvision"]
        for r32, r16 in zip(fam[::2], fam[1::2]):
            print(f"  {r32['case']:36s} {r16['cnnext_ms'] / r32['cnnext_ms']:.2f}"
                  f"  (torch: {r16['torch_ms'] / r32['torch_ms']:.2f})")
