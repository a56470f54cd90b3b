"""CPU variants (issue 16): one build carries avx512 / avx2 / baseline kernels, chosen at import from
cpuid or CNNEXT_CPU_ISA.  Every variant this CPU can run is tested here:

* test_op_files_under_variant: each op's test file reruns (CPU backend only: the emulator is not a
  CPU variant) with CNNEXT_CPU_ISA=<variant>, for every runnable variant other than the one this
  process uses (the rest of the suite tests that one);
* test_variants_agree: the same inputs through every op under every variant.  Where the arithmetic
  order is the same the results must be bit-identical (SAME_EVERYWHERE / SAME_WITH_FMA below); elsewhere (vector-lane
  partial sums, FMA or not) within the fp32 / fp64 tolerance of each other.
"""
import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import cnnext
from cnnext._loader import CPU

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILT = CPU["built"]
RUNNABLE = [v for v in BUILT if v == "native" or v in CPU["supported"]]
OTHERS = [v for v in RUNNABLE if v != CPU["isa"]]
OP_FILES = ["test_adaptive_avg_pool2d.py", "test_avg_pool2d.py", "test_batch_norm.py", "test_cat.py",
            "test_conv2d.py", "test_conv2d_winograd.py", "test_corr2d.py", "test_max_pool2d.py",
            "test_half.py"]  # (the bfloat16 / float16 kernels: each variant's conversions and its conv2d_bf16 variants)


def _env(isa):
    env = dict(os.environ)
    env["CNNEXT_CPU_ISA"] = isa
    return env


def _python(code, isa=None, **kw):
    env = _env(isa) if isa else {k: v for k, v in os.environ.items() if k != "CNNEXT_CPU_ISA"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          cwd=ROOT, **kw)


def test_info_reports_the_variant():
    i = cnnext.info()
    assert i["cpu_isa"] in i["cpu_isas_built"]
    assert i["cpu_isa"] == CPU["isa"]
    assert i["cpu_library"].endswith(".so") and f"cpu_{i['cpu_isa']}" in os.path.basename(i["cpu_library"])
    if sys.platform.startswith("linux") and os.uname().machine == "x86_64" and "native" not in BUILT:
        assert set(i["cpu_isas_built"]) >= {"avx512", "avx2", "baseline"}, i["cpu_isas_built"]
        # the default is the best variant this CPU runs
        assert i["cpu_isa"] == [v for v in ("avx512", "avx2", "baseline") if v in i["cpu_isas_supported"]][0]
    expect_simd = {"avx512": "AVX-512", "avx2": "AVX2", "baseline": "SSE2"}
    if i["cpu_isa"] in expect_simd and os.uname().machine == "x86_64":
        assert i["cpu_simd"] == expect_simd[i["cpu_isa"]]


def test_info_module_prints_variant_and_cpu_model():
    out = subprocess.run([sys.executable, "-m", "cnnext.info"], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout
    lines = {ln.split(None, 1)[0]: ln.split(None, 1)[1] if len(ln.split(None, 1)) > 1 else "" for ln in out.splitlines()}
    assert lines["cpu_isa"] == CPU["isa"]
    assert lines["cpu_isas_built"] == str(BUILT)
    assert lines["cpu_model"] == cnnext.info()["cpu_model"] and lines["cpu_model"]


@pytest.mark.parametrize("isa", RUNNABLE)
def test_forcing_a_variant(isa):
    out = _python("""
        import cnnext, json
        i = cnnext.info()
        print(json.dumps([i["cpu_isa"], i["cpu_simd"], i["cpu_library"]]))
    """, isa=isa)
    assert out.returncode == 0, out.stderr
    got, simd, lib = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == isa and f"cpu_{isa}" in os.path.basename(lib)
    # the harness's machine line names the variant that ran
    out = _python("import bench.harness as h; print(h.machine_line())", isa=isa)
    assert out.returncode == 0, out.stderr
    assert f"cnnext CPU variant {isa}," in out.stdout, out.stdout


def test_forcing_an_unknown_variant_is_an_import_error():
    out = _python("""
        try:
            import cnnext
        except ImportError as e:
            print("IMPORTERROR:", e)
    """, isa="avx9000")
    assert "IMPORTERROR:" in out.stdout, out.stdout + out.stderr
    assert "CNNEXT_CPU_ISA=avx9000" in out.stdout and all(v in out.stdout for v in BUILT)


def test_forcing_a_variant_the_cpu_cannot_run_names_what_it_supports():
    # This CPU may run every variant; the loader's probe is replaced by one that reports an AVX2-only CPU.
    spec = importlib.util.spec_from_file_location("loader_under_test", os.path.join(ROOT, "cnnext", "_loader.py"))
    code = f"""
        import importlib.util, os
        spec = importlib.util.spec_from_file_location("loader_under_test", {spec.origin!r})
        L = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(L)
        L._probe = lambda path: (["avx2", "baseline"], "sse4.2 popcnt avx avx2 fma bmi2")
        os.environ["CNNEXT_CPU_ISA"] = "avx512"
        try:
            L.load_cpu_variant({os.path.join(ROOT, "cnnext")!r}, "_cpu_")
        except ImportError as e:
            print("IMPORTERROR:", e)
        os.environ.pop("CNNEXT_CPU_ISA")
        print("DEFAULT:", L.load_cpu_variant({os.path.join(ROOT, "cnnext")!r}, "_cpu_"))
    """
    if "avx512" not in BUILT:
        pytest.skip("no avx512 variant built")
    out = _python(code)
    assert "IMPORTERROR:" in out.stdout, out.stdout + out.stderr
    msg = out.stdout.split("IMPORTERROR:", 1)[1].splitlines()[0]
    assert "CNNEXT_CPU_ISA=avx512" in msg and "cannot run" in msg and "avx2, baseline" in msg and "avx2 fma" in msg
    assert "DEFAULT: avx2" in out.stdout  # unforced: the best variant the (pretended) CPU supports


def test_probe_matches_the_kernel_s_cpu_flags():
    # the cpuid probe agrees with what the OS reports in /proc/cpuinfo
    try:
        flags = next(ln for ln in open("/proc/cpuinfo") if ln.startswith("flags")).split(":", 1)[1].split()
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo")
    v4 = all(f in flags for f in ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"))
    v3 = all(f in flags for f in ("avx", "avx2", "bmi1", "bmi2", "fma", "f16c", "movbe"))
    expect = (["avx512"] if v4 and v3 else []) + (["avx2"] if v3 else []) + ["baseline"]
    if os.uname().machine == "x86_64":
        assert CPU["supported"] == expect, (CPU["supported"], CPU["features"])


@pytest.mark.skipif(not OTHERS, reason="this CPU runs one built variant only")
@pytest.mark.parametrize("isa", OTHERS)
def test_op_files_under_variant(isa):
    # CPU backend only ("not emu"): the emulated CUDA kernels do not depend on the CPU variant
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-k", "not emu"]
    cmd += [os.path.join(ROOT, "tests", f) for f in OP_FILES if os.path.exists(os.path.join(ROOT, "tests", f))]
    out = subprocess.run(cmd, capture_output=True, text=True, env=_env(isa), cwd=ROOT)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " passed" in out.stdout


# Bit-identical across variants where the arithmetic order is the same (measured on AMD EPYC Zen 5,
# this test keeps it so):
#   every variant: max_pool2d (values, indices, gradient: max and scatter) and cat (copies);
#   the FMA variants (avx512, avx2, native): avg_pool2d and adaptive_avg_pool2d (window sums in window
#   order, element by element; baseline x86-64 has no FMA, so its multiply-adds round twice).
# Within the fp32 / fp64 tolerance otherwise: batch_norm (statistics are vector-lane partial sums:
# 16 / 8 / 4 float32 lanes), conv2d (blocking and accumulation follow the vector width; FMA or not) and
# corr2d (lane-wise accumulation, FMA or not).
SAME_EVERYWHERE = {"max_pool2d", "max_pool2d_indices", "max_pool2d_grad", "cat"}
SAME_WITH_FMA = {"avg_pool2d", "adaptive_avg_pool2d"}
FMA = {"avx512", "avx2", "native"}


def _same_order(op, a, b):
    return op in SAME_EVERYWHERE or (op in SAME_WITH_FMA and a in FMA and b in FMA)


_RUN_OPS = """
import sys, torch
import torch.nn.functional as F
import cnnext
from cnnext import functional as C
torch.manual_seed(0)
out = {}
for dt in (torch.float32, torch.float64):
    n = str(dt).split(".")[1]
    x = torch.randn(3, 13, 30, 30, dtype=dt, requires_grad=True)
    y, i = C.max_pool2d(x, 3, 2, 1, return_indices=True)
    out["max_pool2d/" + n], out["max_pool2d_indices/" + n] = y.detach(), i
    out["max_pool2d_grad/" + n] = torch.autograd.grad(y.sum() + (y * y).sum(), x)[0]
    y = C.avg_pool2d(x, 3, 2, 1)
    out["avg_pool2d/" + n] = torch.cat([y.detach().flatten(), torch.autograd.grad((y * y).sum(), x)[0].flatten()])
    y = C.adaptive_avg_pool2d(x, (7, 5))
    out["adaptive_avg_pool2d/" + n] = torch.cat([y.detach().flatten(), torch.autograd.grad((y * y).sum(), x)[0].flatten()])
    a, b = torch.randn(3, 5, 9, 11, dtype=dt, requires_grad=True), torch.randn(3, 7, 9, 11, dtype=dt, requires_grad=True)
    y = C.cat([a, b], 1)
    out["cat/" + n] = torch.cat([y.detach().flatten()] + [g.flatten() for g in torch.autograd.grad((y * y).sum(), [a, b])])
    for hw in (30, 20, 8, 7):
        xb = torch.randn(4, 6, hw, hw, dtype=dt, requires_grad=True) * 3 + 1
        w = torch.rand(6, dtype=dt, requires_grad=True)
        bb = torch.randn(6, dtype=dt, requires_grad=True)
        y = C.batch_norm(xb, torch.zeros(6, dtype=dt), torch.ones(6, dtype=dt), w, bb, True, 0.1, 1e-5)
        gs = torch.autograd.grad((y * y).sum(), [xb, w, bb])
        out[f"batch_norm@{hw}/" + n] = torch.cat([y.detach().flatten()] + [g.flatten() for g in gs])
    xc = torch.randn(2, 5, 17, 19, dtype=dt, requires_grad=True)
    wc = torch.randn(8, 5, 3, 3, dtype=dt, requires_grad=True)
    bc = torch.randn(8, dtype=dt, requires_grad=True)
    y = C.conv2d(xc, wc, bc, 1, 1)
    out["conv2d/" + n] = torch.cat([y.detach().flatten()] + [g.flatten() for g in torch.autograd.grad((y * y).sum(), [xc, wc, bc])])
    xc = torch.randn(2, 40, 14, 13, dtype=dt, requires_grad=True)  # float32: the planner's Winograd F(2x2, 3x3)
    wc = torch.randn(64, 40, 3, 3, dtype=dt, requires_grad=True)
    y = C.conv2d(xc, wc, None, 1, 1)
    out["conv2d_winograd/" + n] = torch.cat([y.detach().flatten()] + [g.flatten() for g in torch.autograd.grad((y * y).sum(), [xc, wc])])
    xk, kk = torch.randn(23, 29, dtype=dt, requires_grad=True), torch.randn(3, 4, dtype=dt, requires_grad=True)
    y = C.corr2d(xk, kk)
    out["corr2d/" + n] = torch.cat([y.detach().flatten()] + [g.flatten() for g in torch.autograd.grad((y * y).sum(), [xk, kk])])
torch.save({"isa": cnnext.info()["cpu_isa"], "out": out}, sys.argv[1])
"""


@pytest.mark.skipif(len(RUNNABLE) < 2, reason="this CPU runs one built variant only")
def test_variants_agree(tmp_path):
    res = {}
    for isa in RUNNABLE:
        path = tmp_path / f"{isa}.pt"
        out = subprocess.run([sys.executable, "-c", _RUN_OPS, str(path)], capture_output=True, text=True,
                             env=_env(isa), cwd=ROOT)
        assert out.returncode == 0, out.stderr[-3000:]
        saved = torch.load(path)
        assert saved["isa"] == isa
        res[isa] = saved["out"]
    ref = RUNNABLE[0]
    same, errors = {}, []
    for key, a in res[ref].items():
        op, dt = key.split("/")
        rtol = 1e-5 if dt == "float32" else 1e-10
        for isa in RUNNABLE[1:]:
            b = res[isa][key]
            same[(op, dt, isa)] = torch.equal(a, b)
            if _same_order(op.split("@")[0], ref, isa):
                if not same[(op, dt, isa)]:
                    errors.append(f"{key}: {isa} differs from {ref} though the arithmetic order is the same")
            else:
                scale = a.abs().max().clamp_min(1e-30)
                err = ((a.double() - b.double()).abs().max() / scale).item()
                if err > rtol:
                    errors.append(f"{key}: {isa} vs {ref}: relative difference {err:.3g} > {rtol:.0e}")
    print(f"\nbit-identical to {ref}:", sorted(f"{k[0]}/{k[1]}/{k[2]}" for k, v in same.items() if v))
    print(f"different from {ref} (within tolerance unless listed below):",
          sorted(f"{k[0]}/{k[1]}/{k[2]}" for k, v in same.items() if not v))
    assert not errors, "\n".join(errors)
