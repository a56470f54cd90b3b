"""The benchmarks run from the repository root (no timing is checked: speed is for the benchmarks)."""
import json
import os
import pkgutil
import subprocess
import sys

import pytest

import bench
from bench import all as bench_all
from bench import harness

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))


def _run(args, **kw):
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, **kw)


@pytest.mark.parametrize("name", MODULES + ["all"])
def test_every_benchmark_starts(name):
    out = _run([f"bench.{name}", "--help"])
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout


def test_bench_all_runs_every_benchmark():
    # bench_max_pool2d / bench_avg_pool2d run inside bench_pooling
    ran = {n for n, _ in bench_all.BENCHES} | {"bench_max_pool2d", "bench_avg_pool2d"}
    assert ran == set(MODULES)


def test_variants_table_runs_every_variant_by_name():
    """bench.variants forces each variant (a '-' only where it does not run) beside torch."""
    out = _run(["bench.variants", "max_pool2d", "--quick", "--min-time", "0.001", "--threads", "1"])
    assert out.returncode == 0, out.stderr
    assert harness.cpu_model() in out.stdout
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ") and "---" not in line
            and not line.startswith("| case")]
    assert len(rows) == 6  # two cases per direction
    assert all(cell.strip() != "-" for row in rows for cell in row.split("|")[2:4])  # torch, planner


def test_a_benchmark_prints_where_it_ran(tmp_path):
    js = tmp_path / "corr2d.json"
    out = _run(["bench.bench_corr2d", "--quick", "--repeats", "1", "--min-time", "0.001", "--threads", "1",
                "--json", str(js)])
    assert out.returncode == 0, out.stderr
    m = harness.machine()
    assert harness.cpu_model() in out.stdout and f"cnnext CPU variant {m['cpu_isa']}" in out.stdout
    assert "1 threads" in out.stdout and m["torch"] in out.stdout
    result = json.loads(js.read_text())
    assert result["machine"]["cpu"] == harness.cpu_model() and result["rows"]
    assert all(r["ratio"] > 0 for r in result["rows"])


def test_bench_all_summary_and_readme_block():
    result = {"rows": [{"group": "forward", "ratio": 2.0}, {"group": "forward", "ratio": 0.5},
                       {"group": "backward", "ratio": 3.0}]}
    rows = list(bench_all.summary_rows("bench_x", "x op", result))
    assert rows == ["| x op | forward | 2 | 1.00 | 0.50 | `bench.bench_x` |",
                    "| x op | backward | 1 | 3.00 | 3.00 | `bench.bench_x` |"]
    text = f"head\n{bench_all.BEGIN}\nold\ntable\n{bench_all.END}\ntail\n"
    assert bench_all.replace_block(text, "new") == f"head\n{bench_all.BEGIN}\nnew\n{bench_all.END}\ntail\n"
    with pytest.raises(SystemExit):
        bench_all.replace_block("no markers", "new")
    readme = open(os.path.join(ROOT, "README.md")).read()
    assert readme.count(bench_all.BEGIN) == 1 and readme.count(bench_all.END) == 1


def test_bfloat16_rows():
    """bench_conv2d's bf16 groups time bfloat16 convolutions on both sides; bench_models --amp prints
    cnnext's autocast step over its float32 step."""
    import torch
    from bench import bench_conv2d

    cs = [c for c in bench_conv2d.cases(bench_conv2d.BF16_GROUPS, torch.bfloat16) if c.name.startswith("LeNet")]
    assert {c.group for c in cs} == set(bench_conv2d.BF16_GROUPS)
    fwd = [c for c in cs if c.group == "forward bf16"]
    with torch.no_grad():
        assert all(c.torch_fn().dtype == c.cnnext_fn().dtype == torch.bfloat16 for c in fwd)
    for c in cs:
        if c.group == "forward+backward bf16":
            assert all(g.dtype == torch.bfloat16 for g in c.cnnext_fn())
    out = _run(["bench.bench_models", "--models", "lenet", "--batch", "4", "--amp", "--repeats", "1",
                "--min-time", "0.001", "--threads", "1"])
    assert out.returncode == 0, out.stderr
    assert "train step autocast bf16" in out.stdout and "float32 step time" in out.stdout
