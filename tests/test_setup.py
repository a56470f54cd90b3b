"""setup.py's CUDA detection, and what `import cnnext` says from a folder with no compiled extension."""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _detect(tmp_path, env_over, code="print(s.find_cuda_home())", fallback=None):
    """Run `code` with setup.py imported as module `s` (CNNEXT_CUDA=0 at import: nothing is detected
    then), in a child with the environment `env_over` (None values remove a variable)."""
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_HOME", "CUDA_PATH")}
    env["CNNEXT_CUDA"] = "0"
    for k, v in env_over.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    prog = textwrap.dedent(f"""
        import importlib.util, os
        spec = importlib.util.spec_from_file_location("cnnext_setup", {os.path.join(ROOT, "setup.py")!r})
        s = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(s)
    """) + (f"s.FALLBACK_CUDA_HOMES = {fallback!r}\n" if fallback is not None else "") + code
    return subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, env=env, cwd=tmp_path)


def _toolkit(folder, headers=True):
    """A fake CUDA toolkit: bin/nvcc (a script that fails) and, with `headers`, include/cuda_runtime_api.h."""
    (folder / "bin").mkdir(parents=True)
    nvcc = folder / "bin" / "nvcc"
    nvcc.write_text("#!/bin/sh\nexit 1\n")
    nvcc.chmod(0o755)
    if headers:
        (folder / "include").mkdir()
        (folder / "include" / "cuda_runtime_api.h").write_text("/* fake */\n")
    return folder


def _wrapper(folder, body):
    """bin/nvcc in `folder`: a shell wrapper with `body`, as /usr/local/bin/nvcc is on some machines."""
    (folder / "bin").mkdir(parents=True)
    nvcc = folder / "bin" / "nvcc"
    nvcc.write_text("#!/bin/sh\n" + body + "\n")
    nvcc.chmod(0o755)
    return folder / "bin"


def test_wrapper_on_path_is_asked_where_its_toolkit_is(tmp_path):
    # a wrapper whose own folder has no headers: the toolkit is where `nvcc --dryrun` says TOP is
    tk = _toolkit(tmp_path / "toolkit")
    bindir = _wrapper(tmp_path / "wrap", f'echo "#$ TOP={tk}/bin/.." >&2')
    out = _detect(tmp_path, {"PATH": f"{bindir}:/usr/bin:/bin"}, fallback=())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(tk)


def test_cuda_home_without_headers_is_not_accepted(tmp_path):
    bad = _toolkit(tmp_path / "bad", headers=False)
    good = _toolkit(tmp_path / "good")
    out = _detect(tmp_path, {"CUDA_HOME": str(bad), "PATH": "/usr/bin:/bin"}, fallback=(str(good),))
    assert out.stdout.strip() == str(good), out.stderr
    out = _detect(tmp_path, {"CUDA_HOME": str(good), "PATH": "/usr/bin:/bin"}, fallback=())
    assert out.stdout.strip() == str(good), out.stderr


def test_no_usable_toolkit(tmp_path):
    bindir = _wrapper(tmp_path / "wrap", "exit 1")  # an nvcc that says nothing
    env = {"CUDA_HOME": str(tmp_path / "nowhere"), "PATH": f"{bindir}:/usr/bin:/bin"}
    out = _detect(tmp_path, env, fallback=())
    assert out.stdout.strip() == "None", out.stderr
    # CNNEXT_CUDA=1 with nothing usable: one clear line, a non-zero exit
    code = "try:\n    s.resolve_cuda_home('1')\nexcept SystemExit as e:\n    print(repr(str(e)))\n    raise\n"
    out = _detect(tmp_path, env, code=code, fallback=())
    assert out.returncode == 1
    msg = eval(out.stdout.strip())
    assert msg.startswith("cnnext: CNNEXT_CUDA=1 but no usable CUDA toolkit") and "\n" not in msg, msg
    out = _detect(tmp_path, env, code="print(s.resolve_cuda_home('0'), s.resolve_cuda_home(''))", fallback=())
    assert out.stdout.strip() == "None None", out.stderr


@pytest.mark.skipif(not os.path.isfile("/usr/local/cuda/include/cuda_runtime_api.h"), reason="no CUDA toolkit here")
def test_wrapper_around_the_real_nvcc(tmp_path):
    # exactly this machine's /usr/local/bin/nvcc: a two-line script exec'ing the real compiler
    real = os.path.realpath("/usr/local/cuda/bin/nvcc")
    bindir = _wrapper(tmp_path / "wrap", f'exec {real} "$@"')
    out = _detect(tmp_path, {"PATH": f"{bindir}:/usr/bin:/bin"}, fallback=())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == os.path.dirname(os.path.dirname(real))


# ------------------------------------------------------------- import from a folder with no extension
def _copy_package(dest, source_tree):
    """cnnext's Python files (no compiled _C) under dest/cnnext; with source_tree, also setup.py and csrc/."""
    shutil.copytree(os.path.join(ROOT, "cnnext"), dest / "cnnext",
                    ignore=shutil.ignore_patterns("_C*.so", "_C*.pyd", "__pycache__"))
    if source_tree:
        (dest / "setup.py").write_text("# stand-in\n")
        (dest / "csrc").mkdir()


def _import_in(folder, pythonpath=""):
    env = dict(os.environ, PYTHONPATH=pythonpath)
    env.pop("CNNEXT_LIBRARY", None)
    code = "import cnnext\nprint('imported', cnnext.__file__)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=folder, env=env)


def test_source_folder_without_extension_says_how_to_build(tmp_path):
    _copy_package(tmp_path, source_tree=True)
    out = _import_in(tmp_path)
    assert out.returncode != 0 and "imported" not in out.stdout
    msg = out.stderr.strip().splitlines()[-1]
    assert msg.startswith("ImportError: cnnext is being imported from the source folder " + str(tmp_path)), msg
    assert "pip install --no-build-isolation -e ." in msg and "build_ext --inplace" in msg, msg
    assert "run Python from another folder" in msg, msg
    assert "circular import" not in out.stderr and "Rebuild cnnext against the torch" not in msg


def test_source_folder_names_the_installed_cnnext_it_hides(tmp_path):
    # this checkout's cnnext/ (built) stands in for an installed cnnext further down sys.path
    _copy_package(tmp_path, source_tree=True)
    out = _import_in(tmp_path, pythonpath=ROOT)
    msg = out.stderr.strip().splitlines()[-1]
    assert f"hides the installed cnnext in {os.path.join(ROOT, 'cnnext')}" in msg, msg


def test_installed_package_without_extension(tmp_path):
    _copy_package(tmp_path, source_tree=False)
    out = _import_in(tmp_path)
    msg = out.stderr.strip().splitlines()[-1]
    assert "compiled extension (_C) is missing from " + str(tmp_path / "cnnext") in msg, msg
    assert "installation is incomplete" in msg, msg
