"""Benchmark harness shared by every bench/bench_<op>.py.

Run a benchmark from the repository root as a module: python -m bench.bench_<op>.

Each case times a cnnext callable and PyTorch's native equivalent on the same inputs in the same
run: warm-up, then the median of `repeats` timings, each the mean of enough calls to last about
`min_time` seconds; torch.set_num_threads(threads) holds for both. The table prints both times,
the ratio torch/cnnext (> 1: cnnext is faster) and, where the case knows its work, GFLOP/s or
GB/s for each.
"""
import argparse
import datetime
import json
import math
import statistics
import time

import torch

from cnnext.info import cpu_model  # noqa: F401  (the one reader of the CPU model name; tests use harness.cpu_model)


def timeit(fn, warmup=2, repeats=7, min_time=0.05):
    """Median seconds per call of fn()."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, int(min_time / once))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    return statistics.median(samples)


def machine():
    """Where and when a benchmark ran: date, CPU model, cnnext's CPU ISA variant, threads, torch."""
    import cnnext

    i = cnnext.info()
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"), "cpu": cpu_model(),
            "cpu_isa": i["cpu_isa"], "threads": torch.get_num_threads(),
            "torch": torch.__version__}


def machine_line(m=None):
    m = m or machine()
    return (f"{m['date']}, {m['cpu']}, cnnext CPU variant {m['cpu_isa']}, {m['threads']} threads, "
            f"torch {m['torch']}")


class Case:
    """name; torch_fn and cnnext_fn take no arguments; flops or bytes (per call) for the rate columns."""

    def __init__(self, name, torch_fn, cnnext_fn, flops=None, bytes=None, group=""):
        self.name, self.torch_fn, self.cnnext_fn = name, torch_fn, cnnext_fn
        self.flops, self.bytes, self.group = flops, bytes, group


def run(cases, threads=None, repeats=7, min_time=0.05, title="", json_path=None, extra_columns=None):
    """Time every case, print a markdown table, return the rows (dicts)."""
    if threads is not None:
        torch.set_num_threads(threads)
    where = machine()
    rows = []
    for c in cases:
        with torch.no_grad() if getattr(c, "no_grad", False) else torch.enable_grad():
            # interleave: torch, cnnext, torch, cnnext -- the two see the same machine state
            t_torch = timeit(c.torch_fn, repeats=repeats, min_time=min_time)
            t_cnx = timeit(c.cnnext_fn, repeats=repeats, min_time=min_time)
        row = {"group": c.group, "case": c.name, "torch_ms": t_torch * 1e3, "cnnext_ms": t_cnx * 1e3,
               "ratio": t_torch / t_cnx}
        if c.flops:
            row["torch_gflops"] = c.flops / t_torch / 1e9
            row["cnnext_gflops"] = c.flops / t_cnx / 1e9
        if c.bytes:
            row["torch_gbs"] = c.bytes / t_torch / 1e9
            row["cnnext_gbs"] = c.bytes / t_cnx / 1e9
        for k, fn in (extra_columns or {}).items():
            row[k] = fn(row, c)
        rows.append(row)
        print_row(row, header=len(rows) == 1, title=title, where=where)
    print_summary(rows)
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"title": title, "threads": torch.get_num_threads(), "machine": where, "rows": rows}, f, indent=1)
    return rows


_COLS = [("group", "{}"), ("case", "{}"), ("torch_ms", "{:.3f}"), ("cnnext_ms", "{:.3f}"), ("ratio", "{:.2f}"),
         ("torch_gflops", "{:.1f}"), ("cnnext_gflops", "{:.1f}"), ("torch_gbs", "{:.1f}"), ("cnnext_gbs", "{:.1f}")]


def print_row(row, header=False, title="", where=None):
    cols = [c for c in _COLS if c[0] in row] + [(k, "{:.1f}" if isinstance(v, float) else "{}")
                                                 for k, v in row.items() if k not in dict(_COLS)]
    if header:
        if title:
            print(f"\n### {title}\n\n{machine_line(where)}\n")
        print("| " + " | ".join(k for k, _ in cols) + " |")
        print("|" + "---|" * len(cols))
    print("| " + " | ".join(f.format(row[k]) for k, f in cols) + " |", flush=True)


def geomean(xs):
    xs = list(xs)
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def print_summary(rows):
    groups = sorted({r["group"] for r in rows})
    for g in groups:
        rs = [r["ratio"] for r in rows if r["group"] == g]
        label = g or "all"
        print(f"\n{label}: geometric-mean ratio torch/cnnext = {geomean(rs):.2f} "
              f"(min {min(rs):.2f}, max {max(rs):.2f}, {len(rs)} cases)")


def copy_bandwidth(nbytes=256 << 20, threads=None, runs=3):
    """Memory bandwidth of torch's copy_ between two preallocated 256 MiB buffers (GB/s, bytes read +
    written): the best of `runs` measurements, each the median of 5 timings. The best, because on a
    shared machine one measurement swings by 2x (45-80 GB/s back to back): the best is what the
    memory system can do, the strictest baseline for a kernel's GB/s."""
    if threads is not None:
        torch.set_num_threads(threads)
    a = torch.empty(nbytes // 4)
    a.fill_(1.0)
    b = torch.empty_like(a)
    b.fill_(0.0)
    return max(2 * nbytes / timeit(lambda: b.copy_(a), repeats=5) / 1e9 for _ in range(runs))


def matmul_peak(n=1536, threads=None):
    """Measured single-precision matrix-multiply rate of torch.mm (GFLOP/s), the machine's practical peak."""
    if threads is not None:
        torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = timeit(lambda: torch.mm(a, b), repeats=5)
    return 2 * n**3 / t / 1e9


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for both libraries")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--min-time", type=float, default=0.05, help="seconds per timing sample")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    p.add_argument("--quick", action="store_true", help="fewer repeats (smoke run)")
    return p
