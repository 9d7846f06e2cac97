"""The extension as users get it: built and validated by Blender's own extension code, then installed
from the zip into an isolated Blender user directory, enabled, used, disabled and uninstalled — with
nothing left behind (classes, properties, handlers, threads, the backend process, files)."""

from __future__ import annotations

import json
import re
import shutil
import tomllib
import zipfile
from pathlib import Path

import pytest
from conftest import ADDON, run_blender


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from segany.addon_build import build

    return build(tmp_path_factory.mktemp("dist"))


def test_zip_is_built_and_validated_by_blenders_extension_code(built_zip: Path) -> None:
    import segany
    from segany.addon_build import validate

    manifest = tomllib.loads((ADDON / "blender_manifest.toml").read_text())
    assert manifest["version"] == segany.__version__ and manifest["id"] == "segany"
    assert set(manifest["permissions"]) == {"network", "files"}
    assert built_zip.name == f"segany-{segany.__version__}.zip"
    names = zipfile.ZipFile(built_zip).namelist()
    assert {"blender_manifest.toml", "__init__.py", "client.py", "wire.py", "api.py", "registration.py"} <= set(names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or "test" in n.lower()]
    assert any("Success" in m for m in validate(built_zip))
    assert any("Success" in m for m in validate(ADDON))


def test_a_bad_manifest_is_refused_with_blenders_message(tmp_path: Path) -> None:
    from segany.addon_build import build
    from segany.errors import SegAnyError

    src = tmp_path / "segany"
    shutil.copytree(ADDON, src, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = (src / "blender_manifest.toml").read_text()
    (src / "blender_manifest.toml").write_text(re.sub(r"(?m)^tagline = .*$", 'tagline = "Ends with a dot."', manifest))
    with pytest.raises(SegAnyError, match="tagline"):
        build(tmp_path / "out", source_dir=src)


INSTALL_SCRIPT = """
import json, os, threading
import bpy

PKG = "bl_ext.user_default.segany"
out = {}
assert bpy.ops.extensions.package_install_files(
    filepath=ZIP, repo="user_default", enable_on_install=True) == {"FINISHED"}
repo_dir = bpy.utils.user_resource("EXTENSIONS", path="user_default")
out["installed"] = sorted(os.listdir(os.path.join(repo_dir, "segany")))
out["enabled"] = PKG in bpy.context.preferences.addons
prefs = bpy.context.preferences.addons[PKG].preferences
prefs.python_path = os.environ["SEGANY_BACKEND_PYTHON"]
prefs.device = "CPU"
from bl_ext.user_default.segany import api, runtime
info = api.backend_info()
out["methods"] = info["methods"]
backend = runtime.current().backend
pid, state_file = backend.pid, str(backend.config.state_file)
out["classes_enabled"] = sorted(n for n in dir(bpy.types) if n.startswith("SEGANY_"))
out["threads_enabled"] = sorted(t.name for t in threading.enumerate() if t.name.startswith("segany"))

bpy.ops.preferences.addon_disable(module=PKG)  # synchronous: unregister stops and joins all
from bl_ext.user_default.segany import backend_process
out["pid_alive_after_disable"] = backend_process.pid_alive(pid)
out["state_file_after_disable"] = os.path.exists(state_file)
out["classes_after_disable"] = sorted(n for n in dir(bpy.types) if n.startswith("SEGANY_"))
out["scene_prop_after_disable"] = hasattr(bpy.types.Scene, "segany")
out["object_props_after_disable"] = hasattr(bpy.types.Object, "segany_segments")
out["runtime_after_disable"] = runtime.current_or_none() is not None
out["threads_after_disable"] = sorted(t.name for t in threading.enumerate() if t.name.startswith("segany"))
out["handlers_after_disable"] = [h.__module__ for h in bpy.app.handlers.load_post if "segany" in h.__module__]
out["enabled_after_disable"] = PKG in bpy.context.preferences.addons

assert bpy.ops.extensions.package_uninstall(repo_directory=repo_dir, pkg_id="segany") == {"FINISHED"}
out["files_after_uninstall"] = os.path.exists(os.path.join(repo_dir, "segany"))
print("RESULT" + json.dumps(out))
"""


def test_install_enable_disable_uninstall_leaves_nothing_behind(built_zip: Path, tmp_path: Path) -> None:
    proc = run_blender(f"ZIP = {str(built_zip)!r}\n" + INSTALL_SCRIPT, user_dir=tmp_path / "user", timeout=240)
    out = json.loads(proc.stdout.split("RESULT", 1)[1].strip().splitlines()[0])
    assert "blender_manifest.toml" in out["installed"] and out["enabled"]
    assert "iseg" in out["methods"]
    assert "SEGANY_OT_click_tool" in out["classes_enabled"] and "SEGANY_PT_main" in out["classes_enabled"]
    assert "segany-bridge" in out["threads_enabled"]
    assert out["pid_alive_after_disable"] is False and out["state_file_after_disable"] is False
    assert out["classes_after_disable"] == []
    assert not out["scene_prop_after_disable"] and not out["object_props_after_disable"]
    assert not out["runtime_after_disable"] and out["threads_after_disable"] == []
    assert out["handlers_after_disable"] == [] and not out["enabled_after_disable"]
    assert out["files_after_uninstall"] is False


QUIT_SCRIPT = """
import json, os
import bpy

assert bpy.ops.extensions.package_install_files(
    filepath=ZIP, repo="user_default", enable_on_install=True) == {"FINISHED"}
prefs = bpy.context.preferences.addons["bl_ext.user_default.segany"].preferences
prefs.python_path = os.environ["SEGANY_BACKEND_PYTHON"]
prefs.device = "CPU"
from bl_ext.user_default.segany import api, runtime
api.backend_info()
backend = runtime.current().backend
print("RESULT" + json.dumps({"pid": backend.pid, "state": str(backend.config.state_file),
                             "log": str(backend.config.log_file)}))
"""


def test_quitting_blender_with_the_extension_enabled_stops_the_backend(built_zip: Path, tmp_path: Path) -> None:
    """Blender exits with the add-on still enabled: Blender disables its add-ons on exit, so unregister shuts
    the backend down before Blender is gone (the backend's parent watch is only the fallback for a crash)."""
    from segany.addon.backend_process import pid_alive

    proc = run_blender(f"ZIP = {str(built_zip)!r}\n" + QUIT_SCRIPT, user_dir=tmp_path / "user", timeout=240)
    out = json.loads(proc.stdout.split("RESULT", 1)[1].strip().splitlines()[0])
    assert not pid_alive(out["pid"])  # already gone when Blender's process has ended
    assert not Path(out["state"]).exists()
    log = Path(out["log"]).read_text()
    assert "listening" in log and "parent process" not in log
