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
from bench import bench_max_pool2d

# op -> (environment variable, variant names by direction)
OPS = {
    "max_pool2d": ("CNNEXT_MAX_POOL2D", {
        "forward (indices)": ["scalar", "rows", "planes"],
        "forward_values": ["scalar", "rows", "planes", "columns"],
        "forward_nhwc": ["channels"],
    }),
}


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


CASES = {"max_pool2d": max_pool2d_cases}


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
