"""intformer as an installed package: a wheel built from this checkout, installed in a fresh venv outside it,
imports as `intformer` and as nothing else, and a user's own `model.py` or `scripts/` folder in the working
directory breaks neither it nor the console script; the editable install (this checkout's .venv) does the
same.

How the fresh venv gets the dependencies (torch, amaranth, ... are large and the machine is offline): the
wheel goes in with `--no-deps`, and a `.pth` file in the new venv's site-packages names the current venv's
site-packages directory. `--system-site-packages` would not do: a venv made from inside a venv takes the
*base* interpreter's site-packages (`pyvenv.cfg` home), which lacks them. The `.pth` line only appends that
directory to `sys.path`; Python processes the `.pth` files of site directories alone, so the current venv's
editable-install hook (`__editable__.intformer-*.pth`, which installs a finder mapping `intformer` onto this
checkout) does not run in the new venv. The test checks that: the finder module is not loaded, no finder of
it is on `sys.meta_path`, and `intformer` resolves inside the new venv's own site-packages.

The wheel is built from a copy of the sources in a temporary folder (pip builds in the source tree, and its
build/ and egg-info would land in the checkout that other work shares).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "README.md", "scripts", "model", "accel", "boards"]
SITE = Path(sysconfig.get_paths()["purelib"])           # the current venv's site-packages
SHADOWS = ("model", "accel", "boards", "scripts")         # what must not be importable from an install


def run(cmd, cwd, **kw):
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, **kw)
    assert result.returncode == 0, (cmd, result.stdout[-2000:], result.stderr[-4000:])
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("wheel_src")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    dist = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir", "-q",
         "-w", dist, src], cwd=dist)
    (found,) = dist.glob("intformer-*.whl")
    return found


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory, wheel) -> Path:
    """A new venv (no pip of its own) with the wheel installed by this venv's pip, and the `.pth` file that
    lends it this venv's site-packages for the dependencies."""
    env = tmp_path_factory.mktemp("fresh") / "venv"
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel],
        cwd=env)
    purelib = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                       cwd=env).stdout.strip())
    (purelib / "_intformer_test_deps.pth").write_text(f"{SITE}\n")
    return env


def probe(python: Path, cwd: Path, code: str) -> dict:
    """Run `code` (which sets `out`) in `python` with `cwd` as its working directory; returns `out`."""
    script = "import json, sys\nout = {}\n" + textwrap.dedent(code) + "\nprint(json.dumps(out))\n"
    return json.loads(run([python, "-c", script], cwd=cwd).stdout.strip().splitlines()[-1])


def user_project(folder: Path) -> Path:
    """A user's ML project beside which intformer is used: its own model.py, scripts/ package and more."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.py").write_text("WHOSE = 'user'\n")
    (folder / "accel.py").write_text("WHOSE = 'user'\n")
    (folder / "scripts").mkdir(exist_ok=True)
    (folder / "scripts" / "__init__.py").write_text("WHOSE = 'user'\n")
    (folder / "scripts" / "cli.py").write_text("raise SystemExit('the user scripts.cli was imported')\n")
    return folder


def test_wheel_holds_only_the_intformer_package(wheel):
    version = wheel.name.split("-")[1]
    dist_info = f"intformer-{version}.dist-info"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
    top = {name.split("/", 1)[0] for name in names}
    assert top == {"intformer", dist_info}, top
    for module in ("intformer/__init__.py", "intformer/api.py", "intformer/cli.py", "intformer/model/intops.py",
                   "intformer/accel/accelerator.py", "intformer/boards/top.py"):
        assert module in names, module
    assert "intformer = intformer.cli:main" in entry_points


def test_fresh_venv_imports_intformer_only(fresh_venv, tmp_path):
    python = fresh_venv / "bin" / "python"
    out = probe(python, tmp_path, f"""
        import importlib, sysconfig
        import intformer, intformer.model, intformer.accel, intformer.boards
        out["purelib"] = sysconfig.get_paths()["purelib"]
        out["files"] = [m.__file__ for m in (intformer, intformer.model, intformer.accel, intformer.boards)]
        out["editable_finder"] = any(name.startswith("__editable__") for name in sys.modules)
        out["meta_path"] = [type(f).__module__ for f in sys.meta_path]
        out["fails"] = {{}}
        for name in {SHADOWS!r}:
            try:
                importlib.import_module(name)
                out["fails"][name] = None
            except ModuleNotFoundError as exc:
                out["fails"][name] = exc.name
    """)
    purelib = Path(out["purelib"])
    assert purelib.is_relative_to(fresh_venv) and not purelib.is_relative_to(ROOT)
    for path in out["files"]:
        assert Path(path).is_relative_to(purelib), (path, purelib)
    assert not out["editable_finder"] and not any("editable" in m for m in out["meta_path"]), out
    assert out["fails"] == {name: name for name in SHADOWS}, out["fails"]


def test_fresh_venv_beside_a_users_model_py(fresh_venv, tmp_path):
    python = fresh_venv / "bin" / "python"
    project = user_project(tmp_path / "project")
    out = probe(python, project, """
        import intformer.model.intops, intformer.accel.accelerator
        import model, scripts
        out["intops"] = intformer.model.intops.__file__
        out["accelerator"] = intformer.accel.accelerator.__file__
        out["user"] = [model.WHOSE, scripts.WHOSE]
    """)
    assert out["user"] == ["user", "user"]
    for key in ("intops", "accelerator"):
        assert Path(out[key]).is_relative_to(fresh_venv), out[key]
    # the console script, and the command run from the project's folder (where `scripts` is the user's)
    for cmd in ([fresh_venv / "bin" / "intformer", "--help"],
                [python, "-c", "from intformer.cli import main; main()", "--help"]):
        result = run(cmd, cwd=project)
        assert "Commands:" in result.stdout and "train" in result.stdout, result.stdout


def test_editable_install_beside_a_users_model_py(tmp_path):
    """This checkout's venv (an editable install): the command and the package work from a user's folder."""
    project = user_project(tmp_path / "project")
    script = Path(sys.executable).parent / "intformer"
    result = run([script, "--help"], cwd=project)
    assert "Commands:" in result.stdout and "sim" in result.stdout
    out = probe(Path(sys.executable), project, """
        import intformer.model.intops, model
        out["intops"] = intformer.model.intops.__file__
        out["user"] = model.WHOSE
    """)
    assert out["user"] == "user" and Path(out["intops"]).is_relative_to(ROOT), out
