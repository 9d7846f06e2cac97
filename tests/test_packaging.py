"""Packaging: the wheel alone is the whole package, and the add-on never reaches into the backend.

The editable install maps backend/, kernels/ and addon/ with a finder that sees every file on disk, so a
package the wheel lacks, an import that resolves only in the checkout or an add-on found only beside backend/
passes every other test. Here the wheel is built from a copy of the sources, installed with --no-deps into a
fresh venv that sees the project venv's site-packages only as a lower layer (a bare path in a .pth file, so
that venv's editable `segany` finder never runs) and used from a folder outside the checkout.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import warnings
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NO_BYTECODE = shutil.ignore_patterns("__pycache__", "*.pyc")
# The add-on runs inside Blender as `bl_ext.<repo>.segany`, where neither segany nor torch exists.
ADDON_FORBIDDEN = {"segany", "backend", "kernels", "torch"}


def package_dir() -> dict[str, str]:
    """setup.py's PACKAGE_DIR (package -> folder), read without running setup()."""
    for node in ast.parse((ROOT / "setup.py").read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "PACKAGE_DIR" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no PACKAGE_DIR")


def source_files() -> dict[str, Path]:
    """Every file of the three folders by its path inside the installed package (segany/...)."""
    files = {}
    for package, folder in package_dir().items():
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                inside = package.replace(".", "/") + "/" + path.relative_to(ROOT / folder).as_posix()
                files[inside] = path
    return files


def module_of(inside: str) -> str:
    """segany/methods/__init__.py -> segany.methods; segany/cameras.py -> segany.cameras."""
    return inside.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def owner(module: str, packages: dict[str, str]) -> str | None:
    """The folder a module lives in: the longest mapped package that is a prefix of it."""
    matches = [p for p in packages if module == p or module.startswith(p + ".")]
    return packages[max(matches, key=len)] if matches else None


def folder_crossings() -> list[str]:
    """Relative imports that resolve into another top-level folder (or above `segany`): they work only
    through the installed mapping, and Blender installs addon/ alone."""
    packages, bad = package_dir(), []
    for inside, path in source_files().items():
        if path.suffix != ".py":
            continue
        here = owner(module_of(inside), packages)
        parts = module_of(inside).split(".")
        package = parts if path.name == "__init__.py" else parts[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom) or node.level == 0:
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}"
            if node.level > len(package):
                bad.append(where + " (climbs above the package)")
                continue
            target = ".".join([*package[: len(package) - node.level + 1], *filter(None, [node.module])])
            if any(owner(t, packages) != here for t in [target, *(f"{target}.{a.name}" for a in node.names)]):
                bad.append(where)
    return bad


def test_cross_folder_imports_are_absolute() -> None:
    assert folder_crossings() == []


def test_the_addon_imports_nothing_of_segany_or_torch() -> None:
    bad = []
    for path in sorted((ROOT / package_dir()["segany.addon"]).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            if any(n.split(".")[0] in ADDON_FORBIDDEN for n in names):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    assert bad == []


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding only the wheel; dependencies come from the project venv as a lower layer."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for folder in package_dir().values():
        shutil.copytree(ROOT / folder, src / folder, ignore=NO_BYTECODE)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]  # offline: no index, no version check
    wheel_args = ["wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp / "dist"), str(src)]
    subprocess.run([*pip, *wheel_args], check=True, cwd=tmp)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    wheel = next((tmp / "dist").glob("segany-*.whl"))
    subprocess.run([*pip, "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    purelib = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    lower = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (purelib / "zz_project_venv.pth").write_text("\n".join(sorted(lower)) + "\n")
    return venv


def run_in(venv: Path, program: str, *args: str) -> subprocess.CompletedProcess:
    """Run one of the venv's programs from beside the venv, away from the checkout and any PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run(
        [str(venv / "bin" / program), *args], cwd=venv.parent, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_wheel_holds_every_file_of_the_three_folders(installed: Path) -> None:
    wheel = next((installed.parent / "dist").glob("segany-*.whl"))
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if not n.split("/")[0].endswith(".dist-info")}
    # Missing here: a folder without __init__.py, or a data file not listed in package-data.
    assert sorted(set(source_files()) - shipped) == []
    assert sorted(shipped - set(source_files())) == []


IMPORT_ALL = r"""
import importlib, importlib.util, json, pkgutil, tomllib, traceback
from pathlib import Path
import segany

BLENDER_ONLY = {"bpy", "mathutils", "gpu", "gpu_extras", "bpy_extras", "blf", "bmesh"}
have_bpy = importlib.util.find_spec("bpy") is not None
found, failed, skipped = [], {}, {}
for info in pkgutil.walk_packages(segany.__path__, "segany.", onerror=lambda n: failed.setdefault(n, "walk")):
    found.append(info.name)
    try:
        importlib.import_module(info.name)
    except ModuleNotFoundError as exc:
        if have_bpy or exc.name not in BLENDER_ONLY:
            failed[info.name] = traceback.format_exc()
        else:
            skipped[info.name] = f"needs {exc.name}, which only Blender has"
    except Exception:
        failed[info.name] = traceback.format_exc()
manifest = tomllib.loads((Path(segany.addon.__file__).parent / "blender_manifest.toml").read_text())
print(json.dumps({"file": segany.__file__, "found": found, "failed": failed, "skipped": skipped,
                  "version": segany.__version__, "manifest": manifest["version"]}))
"""


def test_the_installed_package_imports_every_module(installed: Path) -> None:
    proc = run_in(installed, "python", "-c", IMPORT_ALL)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(out["file"]).is_relative_to(installed), out["file"]  # segany from the wheel, not the checkout
    assert out["failed"] == {}
    expected = {module_of(m) for m in source_files() if m.endswith(".py")} - {"segany"}
    assert sorted(expected - set(out["found"])) == [] and sorted(set(out["found"]) - expected) == []
    assert out["version"] == out["manifest"]  # the extension and the backend are released as one version
    if out["skipped"]:
        warnings.warn(f"not imported (no bpy in this environment): {out['skipped']}", stacklevel=1)


def test_the_console_script_runs(installed: Path) -> None:
    proc = run_in(installed, "segany", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "demo" in proc.stdout


def test_the_extension_zip_builds_from_the_installed_package(installed: Path) -> None:
    pytest.importorskip("bpy", reason="Blender's extension packager ships inside the bpy module")
    proc = run_in(installed, "python", "-m", "segany.addon_build", "--out", "dist-ext")
    assert proc.returncode == 0, proc.stderr
    zip_path = installed.parent / proc.stdout.strip().splitlines()[-1]  # printed relative to the cwd
    assert zip_path.parent == installed.parent / "dist-ext"
    names = zipfile.ZipFile(zip_path).namelist()
    assert {"blender_manifest.toml", "__init__.py"} <= set(names)
    assert [n for n in names if "__pycache__" in n or n.endswith(".pyc")] == []
    addon = {m.removeprefix("segany/addon/") for m in source_files() if m.startswith("segany/addon/")}
    assert set(names) == addon
    version = tomllib.loads(zipfile.ZipFile(zip_path).read("blender_manifest.toml").decode())["version"]
    assert zip_path.name == f"segany-{version}.zip"
