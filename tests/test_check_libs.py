""".ci/check_libs.py (run by CI on every CPU variant): it must find what it looks for.  Planted faults
(tests/check_libs/planted.s): split vector moves (AVX-512 and SSE forms), VEX and EVEX instructions in
code that must be plain x86-64, and a stray export; and the real build must pass it."""
import importlib.util
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("check_libs", os.path.join(ROOT, ".ci", "check_libs.py"))
check_libs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_libs)

pytestmark = pytest.mark.skipif(not (shutil.which("objdump") and shutil.which("nm") and shutil.which("gcc")),
                                reason="needs binutils and gcc")


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    if os.uname().machine != "x86_64":
        pytest.skip("x86-64 assembly")
    lib = tmp_path_factory.mktemp("planted") / "libplanted.so"
    subprocess.run(["gcc", "-shared", "-nostdlib", os.path.join(ROOT, "tests", "check_libs", "planted.s"), "-o",
                    str(lib)], check=True)
    return str(lib)


def test_finds_planted_split_moves(planted):
    hits = check_libs.split_moves(planted)
    assert hits == {"planted_split_avx512": 1, "planted_split_sse": 1}, hits
    assert check_libs.main(["--split-moves", planted]) == 1


def test_a_full_width_store_after_the_halves_is_forwarded():
    # two 16-byte stores, then one 32-byte store over the same bytes: the 32-byte load reads the last
    # store whole (forwarded), so no split move; without the full store it is one
    halves = ("0000000000001000 <f>:\n"
              "    1000:\tvmovaps %xmm1,0xa0(%rsp)\n"
              "    1008:\tvmovaps %xmm2,0xb0(%rsp)\n")
    load = "    1020:\tvmovdqa 0xa0(%rsp),%ymm5\n"
    assert check_libs.split_moves(None, text=halves + load) == {"f": 1}
    assert check_libs.split_moves(None, text=halves + "    1010:\tvmovdqa %ymm7,0xa0(%rsp)\n" + load) == {}


def test_finds_instructions_above_the_variant(planted):
    base = check_libs.isa_findings(planted, check_libs.LEVEL["baseline"])
    assert set(base) == {"planted_split_avx512", "planted_avx2", "planted_avx512vl"}, base
    assert base["planted_avx2"][0] == 1 and base["planted_avx512vl"][0] == 2
    avx2 = check_libs.isa_findings(planted, check_libs.LEVEL["avx2"])
    assert set(avx2) == {"planted_split_avx512", "planted_avx512vl"}, avx2  # zmm load; ymm16-31 / masks are EVEX
    assert check_libs.isa_findings(planted, check_libs.LEVEL["avx512"]) == {}


def test_encoding_classes():
    lvl = check_libs.encoding_level
    assert lvl("62 f1 7c 48 10 07".split()) == 2            # vmovups (%rdi),%zmm0
    assert lvl("67 62 f1 7c 48 10 07".split()) == 2         # with an address-size prefix
    assert lvl("c5 fc 10 07".split()) == 1                  # vmovups (%rdi),%ymm0
    assert lvl("c4 e2 75 b8 c2".split()) == 1               # vfmadd231ps
    assert lvl("0f 10 07".split()) == 0 and lvl("48 89 e5".split()) == 0 and lvl("66 0f 6f c1".split()) == 0


def test_folder_check_flags_a_baseline_variant_with_avx512_code(planted, tmp_path):
    shutil.copy(planted, tmp_path / "_cpu_baseline.so")
    lines = []
    assert check_libs.check_folder(str(tmp_path), out=lines.append) > 0
    text = "\n".join(lines)
    assert "split vector move" in text and "EVEX (AVX-512) instruction in planted_avx512vl" in text
    assert "VEX (AVX/AVX2) instruction in planted_avx2" in text
    assert "exports planted_avx2" in text and "exports cnnext_cpu_clean" not in text


def test_this_build_passes():
    import cnnext  # noqa: F401
    from cnnext._loader import CPU

    folder = os.path.dirname(CPU["library"])
    lines = []
    assert check_libs.check_folder(folder, out=lines.append) == 0, "\n".join(lines)
