#!/usr/bin/env python3
"""Checks the machine code of a cnnext build (run by .ci/run; tests/test_check_libs.py plants each fault).

  python .ci/check_libs.py FOLDER          # cnnext/ (setup.py build) or build-cmake/ (CMake build)
  python .ci/check_libs.py --split-moves LIB.so [LIB.so ...]
  python .ci/check_libs.py --isa {baseline,avx2,avx512} LIB.so [--functions REGEX]

For a build folder, every CPU variant library (cnnext/_cpu_<isa>*.so or libcnnext_cpu_<isa>.so) and the
ops library (_C / libcnnext.so) are checked for:

1. split vector moves: two narrower stores to a stack slot that one wider load reads back (two 32-byte
   halves reloaded as a 64-byte vector, or 16-byte halves as 32): the load fails store-to-load forwarding
   and stalls.  GCC's Intel tunings emit this for memcpy-based vector loads and for some aggregate
   copies/zero-inits (the same test as the split-vector-moves tool on our machines).  None may be found.
2. instruction set, from each instruction's encoding: an EVEX prefix (0x62, AVX-512) may appear only in the
   avx512 (or native) variant, a VEX prefix (0xC4/0xC5, AVX/AVX2/FMA) only in avx2 and above; the ops
   library and every variant's cpuid probe (cnnext_cpu_* functions, run before a variant is chosen) must
   be plain x86-64.  This is what keeps the baseline path from reaching AVX-512 code through a merged
   inline (COMDAT) function: such code would be inside the library and show up here.
3. symbols: a variant exports only cnnext::cpu::* entry points and cnnext_cpu_* (csrc/isa/exports.map),
   every cnnext::cpu symbol the ops library leaves undefined is exported by every variant, and the ops
   library defines no kernel of its own (header-inline helpers such as a plan's destructor aside).
Prints one line per finding and a summary; exit status 1 if anything is found.
"""
import argparse
import glob
import os
import re
import subprocess
import sys

WIDTH = {"xmm": 16, "ymm": 32, "zmm": 64}
# Vector moves to / from the stack: AVX (vmov*) and the SSE moves of the baseline variant.  The width
# is the register's, except for the scalar and half moves (movd/movss: 4 bytes; movq/movsd/movlps/
# movhps/movlpd/movhpd: 8), which count as what they move.
_MOV = r"v?mov(?:aps|ups|apd|upd|dqa|dqu|d|ss|q|sd|lps|hps|lpd|hpd)\w*|vmov\w*"
_STORE = re.compile(r"\t(" + _MOV + r")\s+%([xyz]mm)\d+,(-?0x[0-9a-f]+|)\((%rsp|%rbp)\)")
_LOAD = re.compile(r"\t(" + _MOV + r")\s+(-?0x[0-9a-f]+|)\((%rsp|%rbp)\),%([xyz]mm)\d+")


def _width(mnemonic, reg):
    m = mnemonic[1:] if mnemonic.startswith("v") else mnemonic
    if m in ("movd", "movss"):
        return 4
    if m in ("movq", "movsd", "movlps", "movhps", "movlpd", "movhpd"):
        return 8
    return WIDTH[reg]


_FUNC = re.compile(r"^[0-9a-f]+ <(.*)>:$")
LEVEL = {"baseline": 0, "avx2": 1, "avx512": 2, "native": 2}
KIND = {0: "plain x86-64", 1: "VEX (AVX/AVX2)", 2: "EVEX (AVX-512)"}
_LEGACY_SKIP = {0x67, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65}  # prefixes a VEX/EVEX instruction may follow


def disassemble(lib, raw=False):
    args = ["objdump", "-d", "-C", "-w"] + (["--insn-width=16"] if raw else ["--no-show-raw-insn"])
    return subprocess.run(args + [lib], capture_output=True, text=True, check=True).stdout


def split_moves(lib, text=None):
    """{function: number of split vector moves} in `lib`."""
    text = text if text is not None else disassemble(lib)
    hits, func, recent = {}, None, []
    for line in text.splitlines():
        m = _FUNC.match(line)
        if m:
            func, recent = m.group(1), []
            continue
        m = _STORE.search(line)
        if m:
            st = (int(m.group(3) or "0", 16), _width(m.group(1), m.group(2)), m.group(4))
            # a store overwrites the earlier stores inside its bytes: a load it covers is forwarded from it
            recent = [s for s in recent if not (s[2] == st[2] and st[0] <= s[0] and s[0] + s[1] <= st[0] + st[1])]
            recent = (recent + [st])[-8:]
            continue
        m = _LOAD.search(line)
        if m and recent:
            off, base, w = int(m.group(2) or "0", 16), m.group(3), _width(m.group(1), m.group(4))
            covered = [s for s in recent if s[2] == base and s[1] < w and off <= s[0] < off + w]
            if len(covered) >= 2:
                hits[func] = hits.get(func, 0) + 1
    return hits


def encoding_level(hexbytes):
    """0 plain, 1 VEX, 2 EVEX, from an instruction's bytes (64-bit mode: 0x62 is always EVEX, 0xC4/0xC5
    always VEX; they may follow an address-size or segment prefix, not 66/F2/F3/REX)."""
    for b in hexbytes:
        v = int(b, 16)
        if v in _LEGACY_SKIP:
            continue
        return 2 if v == 0x62 else 1 if v in (0xC4, 0xC5) else 0
    return 0


def isa_findings(lib, max_level, functions=None, text=None):
    """{function: (level, first offending instruction)} for functions of `lib` using encodings above
    `max_level` (optionally only functions whose demangled name matches the regex `functions`)."""
    text = text if text is not None else disassemble(lib, raw=True)
    want = re.compile(functions) if functions else None
    found, func = {}, None
    for line in text.splitlines():
        m = _FUNC.match(line)
        if m:
            func = m.group(1)
            continue
        if func is None or "\t" not in line or (want and not want.search(func)):
            continue
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        hexbytes = parts[1].split()
        if not hexbytes or not all(re.fullmatch(r"[0-9a-f]{2}", b) for b in hexbytes):
            continue
        lvl = encoding_level(hexbytes)
        if lvl > max_level and func not in found:
            found[func] = (lvl, parts[2].strip())
    return found


def dynamic_symbols(lib, defined, strong_only=False):
    """Demangled names of the dynamic symbols `lib` defines (strong_only: not weak / COMDAT, i.e. not
    inline functions of a header) or leaves undefined."""
    flag = "--defined-only" if defined else "--undefined-only"
    out = subprocess.run(["nm", "-D", "-C", flag, lib], capture_output=True, text=True, check=True).stdout
    syms = []
    for line in out.splitlines():
        parts = line.split(None, 2) if defined else line.split(None, 1)
        if defined and len(parts) == 3 and not (strong_only and parts[1] in "WVuwv"):
            syms.append(parts[2])
        elif not defined and len(parts) == 2:
            syms.append(parts[1])
    return syms


def _is_entry(sym):
    return sym.startswith("cnnext::cpu::") or " cnnext::cpu::" in sym.split("(")[0] or sym.startswith("cnnext_cpu_")


def find_libraries(folder):
    """({variant: path}, ops library path) of a setup.py (cnnext/) or CMake build folder."""
    variants = {}
    for prefix in ("_cpu_", "libcnnext_cpu_"):
        for path in sorted(glob.glob(os.path.join(folder, prefix + "*.so"))):
            variants.setdefault(os.path.basename(path)[len(prefix):].split(".")[0], path)
    ops = sorted(glob.glob(os.path.join(folder, "_C*.so")) + glob.glob(os.path.join(folder, "libcnnext.so")))
    return variants, (ops[0] if ops else None)


def check_folder(folder, out=print):
    variants, ops = find_libraries(folder)
    problems = 0

    def bad(msg):
        nonlocal problems
        problems += 1
        out("FAIL  " + msg)

    if not variants:
        bad(f"{folder}: no CPU variant library found")
    for isa, lib in sorted(variants.items()):
        name = os.path.basename(lib)
        for f, n in sorted(split_moves(lib).items(), key=lambda kv: -kv[1]):
            bad(f"{name}: {n} split vector move(s) in {f[:150]}")
        raw = disassemble(lib, raw=True)
        level = LEVEL.get(isa, 2)
        for f, (lvl, insn) in sorted(isa_findings(lib, level, text=raw).items()):
            bad(f"{name} ({isa}): {KIND[lvl]} instruction in {f[:150]}: {insn}")
        for f, (lvl, insn) in sorted(isa_findings(lib, 0, functions=r"^cnnext_cpu_", text=raw).items()):
            bad(f"{name}: the probe {f} must be plain x86-64 (runs before a variant is chosen): {insn}")
        for s in dynamic_symbols(lib, defined=True):
            if not _is_entry(s):
                bad(f"{name}: exports {s[:150]} (only cnnext::cpu entry points and cnnext_cpu_* may be exported)")
        out(f"ok    {name}: variant {isa}, checked")
    if ops:
        name = os.path.basename(ops)
        need = [s for s in dynamic_symbols(ops, defined=False) if _is_entry(s)]
        if not need:
            bad(f"{name}: leaves no cnnext::cpu entry point undefined (are the kernels compiled into it?)")
        for isa, lib in sorted(variants.items()):
            have = set(dynamic_symbols(lib, defined=True))
            for s in need:
                if s not in have:
                    bad(f"{os.path.basename(lib)}: does not export {s[:150]}, which {name} calls")
        for s in dynamic_symbols(ops, defined=True, strong_only=True):
            if s.startswith("cnnext::cpu::") or " cnnext::cpu::" in s.split("(")[0]:
                bad(f"{name}: defines the kernel symbol {s[:150]} (kernels belong in the CPU variants)")
        info = os.path.join(folder, "_build_info.py")
        march = ""
        if os.path.exists(info):
            m = re.search(r"^MARCH = (.*)$", open(info).read(), re.M)
            march = eval(m.group(1)) if m else ""
        if not march:  # with CNNEXT_MARCH the ops library is compiled for that -march too
            for f, (lvl, insn) in sorted(isa_findings(ops, 0).items())[:20]:
                bad(f"{name}: {KIND[lvl]} instruction in {f[:150]} (the ops library must run on any x86-64): {insn}")
        for f, n in sorted(split_moves(ops).items(), key=lambda kv: -kv[1]):
            bad(f"{name}: {n} split vector move(s) in {f[:150]}")
        out(f"ok    {name}: ops library, checked")
    out(f"{problems} problem(s) in {folder}" if problems else f"no problems in {folder}")
    return problems


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--split-moves", action="store_true", help="only list split vector moves of the libraries")
    ap.add_argument("--isa", choices=sorted(LEVEL), help="only check the libraries' encodings against this variant")
    ap.add_argument("--functions", help="with --isa: only functions matching this regex")
    a = ap.parse_args(argv)
    if a.split_moves:
        total = 0
        for lib in a.paths:
            hits = split_moves(lib)
            for f, n in sorted(hits.items(), key=lambda kv: -kv[1]):
                print(f"{n:4d}  {f[:160]}")
            total += sum(hits.values())
        print(f"{total} split vector moves" if total else "no split vector moves")
        return 1 if total else 0
    if a.isa:
        n = 0
        for lib in a.paths:
            for f, (lvl, insn) in sorted(isa_findings(lib, LEVEL[a.isa], a.functions).items()):
                print(f"{os.path.basename(lib)}: {KIND[lvl]} in {f[:150]}: {insn}")
                n += 1
        print(f"{n} function(s) above {a.isa}" if n else f"all code fits {a.isa}")
        return 1 if n else 0
    return 1 if sum(check_folder(p) for p in a.paths) else 0


if __name__ == "__main__":
    sys.exit(main())
