"""Per CUDA kernel: registers, spills, static shared memory and occupancy on sm_80 and sm_90, from ptxas.

Run from the repository root (needs nvcc; no GPU): python -m bench.ptxas_report [--arch 80,86,90] [--markdown]

Compiles every csrc/cuda/*.cu with `nvcc -Xptxas -v` (the flags setup.py uses) for each architecture and
prints one row per kernel: registers per thread, spill stores/loads (bytes), static shared memory, and
the resident 256-thread blocks per SM that registers, shared memory and threads allow (every cnnext
kernel launches 256-thread blocks), with the occupancy that gives (warps resident / 64). Exit status 1
if any kernel spills. docs/gpu.md has the table.
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

# per SM: registers, shared memory usable by blocks (bytes), reserved per block, max threads, max blocks
SM = {80: (65536, 167936, 1024, 2048, 32), 86: (65536, 102400, 1024, 1536, 16), 90: (65536, 233472, 1024, 2048, 32)}
BLOCK = 256


def occupancy(arch, regs, smem):
    nreg, nsmem, reserved, nthreads, nblocks = SM[arch]
    warps = BLOCK // 32
    per_warp = -(-regs * 32 // 256) * 256  # allocated in units of 256 registers per warp
    by_regs = (nreg // per_warp) // warps if per_warp else nblocks
    by_smem = nsmem // (smem + reserved) if smem else nblocks
    blocks = min(by_regs, by_smem, nthreads // BLOCK, nblocks)
    limit = min(("threads", nthreads // BLOCK), ("shared memory", by_smem), ("registers", by_regs), key=lambda t: t[1])
    return blocks, 100.0 * blocks * warps / (nthreads // 32), limit[0]


def demangle(names):
    cf = shutil.which("c++filt")
    if not cf:
        return names
    out = subprocess.run([cf], input="\n".join(names), capture_output=True, text=True).stdout.splitlines()
    return out if len(out) == len(names) else names


def short(name):
    name = name.replace("(anonymous namespace)::", "")
    name = re.sub(r"^void ", "", name)
    return re.sub(r"\(.*$", "", name)


def compile_report(cu, arch, nvcc, include):
    with tempfile.TemporaryDirectory() as d:
        cmd = [nvcc, "-c", cu, "-o", os.path.join(d, "k.o"), "-O3", "-std=c++20", "-Xptxas", "-v",
               "--expt-relaxed-constexpr", f"-gencode=arch=compute_{arch},code=sm_{arch}", "-I", include]
        p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)}\n{p.stderr[-3000:]}")
    rows, cur = [], None
    for line in p.stderr.splitlines():
        m = re.search(r"Compiling entry function '(\S+)' for 'sm_(\d+)'", line)
        if m:
            cur = {"mangled": m.group(1), "spill_st": 0, "spill_ld": 0}
            continue
        if cur is None:
            continue
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            cur["spill_st"], cur["spill_ld"] = int(m.group(1)), int(m.group(2))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            cur["regs"] = int(m.group(1))
            sm = re.search(r"(\d+) bytes smem", line)
            cur["smem"] = int(sm.group(1)) if sm else 0
            rows.append(cur)
            cur = None
    for r, n in zip(rows, demangle([r["mangled"] for r in rows])):
        r["kernel"] = short(n)
        r["file"] = os.path.basename(cu)
        r["blocks"], r["occupancy"], r["limit"] = occupancy(arch, r["regs"], r["smem"])
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="80,90")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    nvcc = os.path.join(home, "bin", "nvcc")
    if not os.path.exists(nvcc):
        print("no nvcc (set CUDA_HOME)")
        return 3
    archs = [int(a) for a in args.arch.split(",")]
    spills = 0
    print("| file | kernel | arch | registers | spills (st/ld B) | static smem (B) | blocks/SM | occupancy | limited by |")
    print("|---|---|---|---|---|---|---|---|---|")
    for cu in sorted(glob.glob("csrc/cuda/*.cu")):
        for arch in archs:
            for r in compile_report(cu, arch, nvcc, "csrc/cuda"):
                spills += r["spill_st"] + r["spill_ld"]
                print(f"| {r['file']} | `{r['kernel']}` | sm_{arch} | {r['regs']} | {r['spill_st']}/{r['spill_ld']} | "
                      f"{r['smem']} | {r['blocks']} | {r['occupancy']:.0f}% | {r['limit']} |", flush=True)
    print(f"\nspilled bytes in all: {spills}")
    return 1 if spills else 0


if __name__ == "__main__":
    sys.exit(main())
