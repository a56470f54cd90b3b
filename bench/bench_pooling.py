"""All pooling at once -- max_pool2d, avg_pool2d, adaptive_avg_pool2d -- against the bar of issue #4, in one run.

Run from the repository root: python -m bench.bench_pooling [--threads 2]

The cases are those of bench_max_pool2d and bench_avg_pool2d (the CNN family's pooling layers at
batch 32, and their GB/s accounting). Copy bandwidth (harness.copy_bandwidth, the best of three) is
measured before and after the cases, and the higher of the two is the baseline. The summary gives,
per op and direction, the geometric means of torch time / cnnext time and of cnnext's GB/s as a
percentage of copy; the last lines pool every case of a direction, and say whether the bar
(>= 3x PyTorch and >= 30% of copy bandwidth) holds.
"""
from bench import bench_avg_pool2d, bench_max_pool2d, harness

RATIO_BAR, COPY_BAR = 3.0, 30.0


def _op(group):
    return "adaptive_avg_pool2d" if "adaptive" in group else "avg_pool2d" if "avg_pool2d" in group else "max_pool2d"


def _direction(group):
    return "forward+backward" if "backward" in group else "forward"


def cases():
    out = bench_max_pool2d.cases()
    for c in out:  # bench_max_pool2d's groups do not name the op
        c.group = f"max_pool2d {c.group}"
    return out + bench_avg_pool2d.cases()


def summary(rows, copy_gbs):
    print(f"\n### Pooling against the bar (copy bandwidth {copy_gbs:.1f} GB/s)\n")
    print("| op | direction | cases | ratio torch/cnnext | cnnext GB/s | % of copy |")
    print("|---|---|---|---|---|---|")
    verdict = []
    keys = [(op, d) for op in ("max_pool2d", "avg_pool2d", "adaptive_avg_pool2d")
            for d in ("forward", "forward+backward")] + [("all pooling", "forward"), ("all pooling", "forward+backward")]
    for op, d in keys:
        rs = [r for r in rows if _direction(r["group"]) == d and op in ("all pooling", _op(r["group"]))]
        ratio = harness.geomean(r["ratio"] for r in rs)
        gbs = harness.geomean(r["cnnext_gbs"] for r in rs)
        pct = 100 * gbs / copy_gbs
        print(f"| {op} | {d} | {len(rs)} | {ratio:.2f} | {gbs:.1f} | {pct:.0f}% |")
        if op == "all pooling":
            verdict.append(f"{d}: {ratio:.2f}x PyTorch ({'meets' if ratio >= RATIO_BAR else 'below'} {RATIO_BAR:g}x), "
                           f"{pct:.0f}% of copy ({'meets' if pct >= COPY_BAR else 'below'} {COPY_BAR:g}%)")
    print()
    for v in verdict:
        print(v)


if __name__ == "__main__":
    args = harness.parser(__doc__).parse_args()
    before = harness.copy_bandwidth(threads=args.threads)
    print(f"copy bandwidth before the cases: {before:.1f} GB/s")
    rows = harness.run(cases(), threads=args.threads, repeats=3 if args.quick else args.repeats,
                       min_time=args.min_time, title="pooling, CPU, float32, batch 32", json_path=args.json)
    after = harness.copy_bandwidth(threads=args.threads)
    print(f"\ncopy bandwidth after the cases: {after:.1f} GB/s")
    summary(rows, max(before, after))
