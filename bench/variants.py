"""The CPU variants of one op side by side, each run by name (csrc/cpu/<op>_variants.h), beside
PyTorch's op on the same input: which variant the planner should pick where, and whether a variant
pays for its code.  Each row times every variant that runs on the case (the op's environment
variable forces it; variant.h) and the planner's own pick ("planner"), in interleaved rounds
(--repeats), keeping each one's best round; the ratio columns are torch / variant (> 1: the
variant beats torch).

Run from the repository root: python -m bench.variants max_pool2d [--threads 2]
"""
import os

import torch
import torch.nn.functional as F

import cnnext
from bench import harness
from bench import bench_avg_pool2d, bench_batch_norm, bench_max_pool2d

# op -> (environment variable, variant names by direction)
OPS = {
    "max_pool2d": ("CNNEXT_MAX_POOL2D", {
        "forward (indices)": ["scalar", "rows", "planes"],
        "forward_values": ["scalar", "rows", "planes", "columns"],
        "forward_nhwc": ["channels"],
    }),
    "avg_pool2d": ("CNNEXT_AVG_POOL2D", {  # avg_pool2d and adaptive_avg_pool2d share the variants
        "forward": ["rows", "2x2", "global"],
        "forward+backward": ["rows", "2x2", "global"],
    }),
    "batch_norm": ("CNNEXT_BATCH_NORM", {
        "train forward": ["blocks", "chunks", "rows"],
        "eval forward": ["normalize", "rows"],
        "train forward+backward": ["blocks", "chunks", "rows"],
    }),
}


def batch_norm_cases():
    """bench_batch_norm's shapes (NCHW) and one channels_last (rows) case."""
    out = []
    for net, shape in bench_batch_norm.shapes() + [("channels_last", (32, 64, 12, 12))]:
        C = shape[1]
        x = torch.randn(shape)
        if net == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        w, b, rm, rv = torch.randn(C), torch.randn(C), torch.zeros(C), torch.ones(C)
        label = bench_batch_norm.name(net, shape)
        for train, direction in ((True, "train forward"), (False, "eval forward")):
            out.append((direction, label, lambda x=x, t=train, p=(rm, rv, w, b): F.batch_norm(x, *p[:2], *p[2:], t),
                        lambda x=x, t=train, p=(rm, rv, w, b): cnnext.functional.batch_norm(x, *p[:2], *p[2:], t)))
        xg, wg, bg, gy = x.clone().requires_grad_(), w.clone().requires_grad_(), b.clone().requires_grad_(), torch.randn_like(x)

        def fb(op, xg=xg, wg=wg, bg=bg, gy=gy, rm=rm, rv=rv):
            def run():
                xg.grad = wg.grad = bg.grad = None
                with torch.enable_grad():
                    op(xg, rm, rv, wg, bg, True).backward(gy)
            return run
        out.append(("train forward+backward", label, fb(F.batch_norm), fb(cnnext.functional.batch_norm)))
    return out


def avg_pool2d_cases():
    """bench_avg_pool2d's 2x2 pools and adaptive heads: forward (no grad) and forward+backward."""
    out = []
    for name, shape in bench_avg_pool2d.AVG:
        calls = (lambda x: F.avg_pool2d(x, 2, 2), lambda x: cnnext.functional.avg_pool2d(x, 2, 2))
        out += _fwd_and_fwdbwd(f"{name} 2x2 {'x'.join(map(str, shape))}", shape, *calls)
    for name, shape, size in bench_avg_pool2d.ADAPTIVE:
        calls = (lambda x, s=size: F.adaptive_avg_pool2d(x, s), lambda x, s=size: cnnext.functional.adaptive_avg_pool2d(x, s))
        out += _fwd_and_fwdbwd(f"{name} {'x'.join(map(str, shape))} -> {size}", shape, *calls)
    return out


def _fwd_and_fwdbwd(label, shape, t_op, c_op):
    x = torch.randn(shape)
    xg = x.clone().requires_grad_()
    g = torch.randn_like(t_op(x))

    def fb(op):
        def run():
            xg.grad = None
            with torch.enable_grad():
                op(xg).backward(g)
        return run
    return [("forward", label, lambda: t_op(x), lambda: c_op(x)),
            ("forward+backward", label, fb(t_op), fb(c_op))]


def max_pool2d_cases():
    """(direction, name, torch_fn, cnnext_fn) on bench_max_pool2d's family shapes, plus small planes."""
    shapes = bench_max_pool2d.SHAPES + [("GoogLeNet 3x3 s1 p1 on 3x3 maps", (32, 832, 3, 3), 3, 1, 1),
                                        ("4x4 maps 3x3 s2 p1", (32, 256, 4, 4), 3, 2, 1)]
    out = []
    for name, shape, k, s, p in shapes:
        x = torch.randn(shape)
        label = f"{name} {'x'.join(map(str, shape))}"
        out.append(("forward (indices)", label, lambda x=x, k=k, s=s, p=p: F.max_pool2d(x, k, s, p, return_indices=True),
                    lambda x=x, k=k, s=s, p=p: cnnext.functional.max_pool2d(x, k, s, p, return_indices=True)))
        out.append(("forward_values", label, lambda x=x, k=k, s=s, p=p: F.max_pool2d(x, k, s, p),
                    lambda x=x, k=k, s=s, p=p: cnnext.functional.max_pool2d(x, k, s, p)))
        if shape[1] >= 16:
            xc = x.contiguous(memory_format=torch.channels_last)
            out.append(("forward_nhwc", label, lambda x=xc, k=k, s=s, p=p: F.max_pool2d(x, k, s, p),
                        lambda x=xc, k=k, s=s, p=p: cnnext.functional.max_pool2d(x, k, s, p)))
    return out


CASES = {"max_pool2d": max_pool2d_cases, "avg_pool2d": avg_pool2d_cases, "batch_norm": batch_norm_cases}


def main(argv=None):
    p = harness.parser(__doc__)
    p.add_argument("op", choices=sorted(OPS))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    env, directions = OPS[args.op]
    repeats = 1 if args.quick else args.repeats  # --quick: two cases per direction, one round
    print(f"### CPU variants of {args.op}\n\n{harness.machine_line()}\n")
    print("times in ms; ratio = torch / variant\n")
    with torch.no_grad():
        for direction, names in directions.items():
            cases = [c for c in CASES[args.op]() if c[0] == direction][:2 if args.quick else None]
            print(f"#### {direction}\n")
            print("| case | torch | " + " | ".join(["planner"] + names) + " |")
            print("|---|---|" + "---|" * (len(names) + 1))
            for _, label, t_fn, c_fn in cases:
                # interleaved rounds, the best sample of each: robust to a busy machine
                best = {}
                for _ in range(repeats):
                    for name in ["torch", None] + names:
                        os.environ.pop(env, None)
                        if name and name != "torch":
                            os.environ[env] = name
                        try:
                            fn = t_fn if name == "torch" else c_fn
                            t = harness.timeit(fn, warmup=1, repeats=1, min_time=args.min_time)
                            best[name] = min(best.get(name, t), t)
                        except RuntimeError as e:
                            if "does not run" not in str(e) and "names no variant" not in str(e):
                                raise
                            best[name] = None
                        finally:
                            os.environ.pop(env, None)
                t = best["torch"]
                cells = ["-" if best[n] is None else f"{1e3 * best[n]:.3f} ({t / best[n]:.2f})" for n in [None] + names]
                print(f"| {label} | {1e3 * t:.3f} | " + " | ".join(cells) + " |")
            print()


if __name__ == "__main__":
    main()
