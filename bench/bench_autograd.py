"""The autograd layer's cost: cnnext's fast_apply against torch.library.register_autograd (the mechanism
of PyTorch's custom-op tutorial) and plain setup_context Function.apply -- each against torch's own layers.

python -m bench.bench_autograd [--quick] [--rounds 3] [--threads 2] [--json PATH]

Each mechanism runs in its own process (register_autograd changes the ops for the whole process),
the processes alternating round by round; the minimum over rounds is kept. Per mechanism (one
table group each):
- per call: forward + backward of conv2d (3x3, padding 1) and avg_pool2d (2x2) on a 1x1x4x4 input,
  where the autograd layer is most of the time; torch: F.conv2d / F.avg_pool2d, same input;
- one LeNet epoch: 235 SGD steps of batch 256 on 1x28x28 inputs (MNIST's 60,000 images; random
  data: the time does not depend on it), cnnext's conv2d and avg_pool2d through the mechanism;
  torch: the same LeNet with torch.nn's layers (--quick: 60 steps).
The ratio is torch time / cnnext time, as everywhere; the mechanisms compare through it.
"""
import argparse
import json
import subprocess
import sys
import time

import torch

MECHANISMS = ("fast_apply", "function", "register_autograd")


def _install(mechanism):
    """Route cnnext.functional's conv2d and avg_pool2d through `mechanism`."""
    import cnnext.ops.avg_pool2d as ap
    import cnnext.ops.conv2d as cv

    ops = torch.ops.cnnext
    if mechanism == "function":  # setup_context Function.apply, always
        cv._conv2d, ap._apply = cv.Conv2dFunction.apply, ap.AvgPool2dFunction.apply
    elif mechanism == "register_autograd":
        def conv_setup(ctx, inputs, output):
            input, weight, bias, *ctx.conv = inputs
            ctx.save_for_backward(input, weight)
            ctx.bias = bias is not None

        def conv_backward(ctx, gy):
            input, weight = ctx.saved_tensors
            gx = ops.conv2d_backward_input(gy, weight, input.shape, *ctx.conv)
            gw, gb = ops.conv2d_backward_weight(gy, input, weight.shape, *ctx.conv, ctx.bias)
            return gx, gw, gb if ctx.bias else None, None, None, None, None

        def pool_setup(ctx, inputs, output):
            ctx.input_shape, ctx.args = inputs[0].shape, inputs[1:]

        def pool_backward(ctx, gy):
            return (ops.avg_pool2d_backward(gy, ctx.input_shape, *ctx.args),) + (None,) * 6

        torch.library.register_autograd("cnnext::conv2d_forward", conv_backward, setup_context=conv_setup)
        torch.library.register_autograd("cnnext::avg_pool2d_forward", pool_backward, setup_context=pool_setup)
        cv._conv2d, ap._apply = ops.conv2d_forward.default, ops.avg_pool2d_forward.default
    else:
        assert mechanism == "fast_apply", mechanism


def _per_call(fn, x, gy, n=2000):
    for _ in range(50):
        torch.autograd.backward(fn(x), gy)
    t0 = time.perf_counter()
    for _ in range(n):
        torch.autograd.backward(fn(x), gy)
    return (time.perf_counter() - t0) / n


def worker(mechanism, steps):
    import torch.nn.functional as F

    import cnnext.functional as cf
    from cnnext.models import lenet

    _install(mechanism)
    torch.manual_seed(0)
    x = torch.randn(1, 1, 4, 4, requires_grad=True)
    w = torch.randn(1, 1, 3, 3, requires_grad=True)
    gy4, gy2 = torch.ones(1, 1, 4, 4), torch.ones(1, 1, 2, 2)
    out = {}
    for name, ours, theirs, gy in [("conv2d", lambda t: cf.conv2d(t, w, padding=1), lambda t: F.conv2d(t, w, padding=1),
                                    gy4),
                                   ("avg_pool2d", lambda t: cf.avg_pool2d(t, 2), lambda t: F.avg_pool2d(t, 2), gy2)]:
        out[f"{name} 1x1x4x4 forward+backward"] = (_per_call(theirs, x, gy), _per_call(ours, x, gy))
    data = torch.randn(8, 256, 1, 28, 28)
    labels = torch.randint(0, 10, (8, 256))
    loss_fn = torch.nn.CrossEntropyLoss()
    epoch = {}
    for layers in ("torch", "cnnext"):
        torch.manual_seed(0)
        net = lenet(layers=layers)
        opt = torch.optim.SGD(net.parameters(), lr=0.9)

        def step(i):
            opt.zero_grad()
            loss_fn(net(data[i % 8]), labels[i % 8]).backward()
            opt.step()

        for i in range(10):
            step(i)
        t0 = time.perf_counter()
        for i in range(steps):
            step(i)
        epoch[layers] = time.perf_counter() - t0
    out[f"LeNet epoch ({steps} SGD steps, batch 256)"] = (epoch["torch"], epoch["cnnext"])
    print(json.dumps(out))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.bench_autograd", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="one round, 60-step epochs")
    p.add_argument("--rounds", type=int, default=None, help="default 3 (--quick: 1)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=None, help="SGD steps per epoch (default 235 = 60000 / 256)")
    p.add_argument("--json", default=None)
    p.add_argument("--worker", choices=MECHANISMS, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    steps = a.steps or (60 if a.quick else 235)
    if a.worker:
        return worker(a.worker, steps)
    from bench import harness

    best = {}  # (mechanism, case) -> (torch s, cnnext s), each the minimum over rounds
    for _ in range(a.rounds or (1 if a.quick else 3)):
        for m in MECHANISMS:
            r = json.loads(subprocess.run([sys.executable, "-m", "bench.bench_autograd", "--worker", m, "--threads",
                                           str(a.threads), "--steps", str(steps)], check=True,
                                          capture_output=True, text=True).stdout.splitlines()[-1])
            for case, (t, c) in r.items():
                old = best.get((m, case), (t, c))
                best[(m, case)] = (min(t, old[0]), min(c, old[1]))
    # torch's side is the same code in every process: its best over all of them
    torch_best = {case: min(t for (_, c2), (t, _) in best.items() if c2 == case) for _, case in best}
    title = "autograd layer: cnnext's conv2d / avg_pool2d through each mechanism vs torch's layers"
    where = harness.machine()
    rows = []
    for (m, case), (_, c) in best.items():
        t = torch_best[case]
        row = {"group": m, "case": case, "torch_ms": t * 1e3, "cnnext_ms": c * 1e3, "ratio": t / c}
        rows.append(row)
        harness.print_row(row, header=len(rows) == 1, title=title, where=where)
    harness.print_summary(rows)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"title": title, "threads": a.threads, "machine": where, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
