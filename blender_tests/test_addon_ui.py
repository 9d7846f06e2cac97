"""The add-on behaves like a Blender tool: a Method field that offers what fits the object's kind, greyed-out
buttons that say why, prepare errors that reach a report, exports that honour `//` paths and say their
space, an interpreter message that says where to set it, and settings that say they apply on restart.

Real bpy, the real backend where one is needed. Poll messages are read the way Blender gives them to a
script: calling the operator raises RuntimeError with the poll's message. The modal parts (the prepare
watcher's timer, the preferences window) cannot run headless; what they decide is a plain function
tested here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    ADDON,
    DONUT,
    TINY,
    drain_until,
    grid_mesh,
    import_donut,
    run_blender,
    vertex_only_mesh,
)


def _activate(ob: object) -> object:
    import bpy

    bpy.context.view_layer.objects.active = ob
    return ob


@pytest.fixture
def builtin_catalogue(addon: object) -> None:
    """The method list the panel has before any backend has answered."""
    from bl_ext.user_default.segany import runtime

    rt = runtime.current()
    saved, rt.methods = rt.methods, []
    yield
    rt.methods = saved


def test_scene_kind_is_the_kind_read_object_sends(addon: object, fresh_scene: object) -> None:
    from bl_ext.user_default.segany import properties, scene_read

    for ob in (grid_mesh(x=4, y=4), import_donut(), vertex_only_mesh()):
        assert properties.scene_kind(ob) == scene_read.read_object(ob).kind
    assert properties.scene_kind(None) is None


def test_method_offers_what_fits_the_active_object_and_keeps_the_choice(
    addon: object, fresh_scene: object, builtin_catalogue: None
) -> None:
    """Before the fix the method was free text defaulting to iseg, so Prepare on splats failed until the user
    typed sa3d. Now the field lists the methods of the active object's kind and shows one that fits."""
    import bpy
    from bl_ext.user_default.segany import actions, properties

    settings = bpy.context.scene.segany
    assert settings.bl_rna.properties["method"].type == "ENUM"
    grid, donut, points = grid_mesh(x=4, y=4), import_donut(), vertex_only_mesh()
    for ob, offered in ((grid, ["iseg"]), (donut, ["sa3d"]), (points, ["sa3d"])):
        _activate(ob)
        assert [item[0] for item in properties._method_items(settings, bpy.context)] == offered
        assert settings.method == offered[0] and actions.method_for(ob, settings.method_choice) == offered[0]
    _activate(donut)
    with pytest.raises(TypeError, match="iseg"):  # Blender itself refuses a method the object's kind lacks
        settings.method = "iseg"
    settings.method = "sa3d"
    assert settings.method_choice == "sa3d"
    _activate(grid)
    assert settings.method == "iseg"  # a mesh shows a method that fits it, and the choice is kept
    _activate(donut)
    assert settings.method == "sa3d"


def test_the_method_list_comes_from_the_backend(rt: object, fresh_scene: object) -> None:
    """The backend's info reply says which scene kinds each method fits and whether a click asks it; the panel
    offers exactly the click methods that fit (sas answers words: its own panel)."""
    import bpy
    from bl_ext.user_default.segany import properties

    info = rt.backend.ensure().info()
    details = {m["name"]: m["scene_kinds"] for m in info["method_details"]}
    assert set(details) == set(info["methods"]) and details["iseg"] == ["mesh"]
    rt.methods = []
    rt.connect()
    drain_until(lambda: bool(rt.methods), timeout=30)
    assert {m["name"]: m["scene_kinds"] for m in rt.methods} == details
    settings = bpy.context.scene.segany
    for ob, kind in ((grid_mesh(x=4, y=4), "mesh"), (import_donut(), "splats")):
        _activate(ob)
        offered = [item[0] for item in properties._method_items(settings, bpy.context)]
        clicks = {m["name"]: m["takes_clicks"] for m in info["method_details"]}
        assert offered == [name for name, kinds in details.items() if kind in kinds and clicks[name]], kind
        assert "sas" in details and "sas" not in offered


def test_prepare_on_splats_with_the_default_settings_prepares_sa3d(rt: object, fresh_scene: object) -> None:
    import bpy
    from bl_ext.user_default.segany import actions

    donut = _activate(import_donut())
    settings = bpy.context.scene.segany
    for name in ("method", "method_choice"):  # the method as a new scene has it
        if name in settings.bl_rna.properties:
            settings.property_unset(name)
    settings.options = json.dumps(TINY)
    try:
        assert bpy.ops.segany.prepare() == {"FINISHED"}
        st = rt.state(actions.object_key(donut))
        drain_until(lambda: st.status in ("prepared", "failed"), timeout=120)
    finally:
        settings.options = ""
    assert st.status == "prepared" and st.method == "sa3d", st.message


def _poll_message(call: object) -> str:
    """The message Blender gives when an operator's poll refuses (raised to scripts, a tooltip in the UI)."""
    with pytest.raises(RuntimeError) as err:
        call()
    return str(err.value)


def test_greyed_out_buttons_say_why(addon: object, fresh_scene: object) -> None:
    import bpy
    from bl_ext.user_default.segany import actions, runtime

    ops = bpy.ops.segany
    assert "Select a mesh, splat or point-cloud object" in _poll_message(ops.prepare)
    camera = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    bpy.context.scene.collection.objects.link(camera)
    _activate(camera)
    assert "'cam' is a camera" in _poll_message(ops.prepare)
    grid = _activate(grid_mesh(x=4, y=4))
    assert "Press Prepare first" in _poll_message(lambda: ops.click_tool("INVOKE_DEFAULT"))
    assert "no segments yet" in _poll_message(ops.segment_apply)
    assert "no segments yet" in _poll_message(ops.segment_remove)
    assert "holds no Gaussian splats" in _poll_message(ops.export_ply)
    assert "Nothing is preparing" in _poll_message(ops.cancel)
    st = runtime.current().state(actions.object_key(grid))
    try:
        st.status = "preparing"
        assert "Already preparing" in _poll_message(ops.prepare)
        st.status = "prepared"
        assert "3D viewport" in _poll_message(lambda: ops.click_tool("INVOKE_DEFAULT"))  # headless: no viewport
    finally:
        runtime.current().objects.pop(actions.object_key(grid))


def test_a_prepare_that_fails_in_the_background_is_reported(rt: object, fresh_scene: object) -> None:
    """The backend's refusal arrives on the timer, after the operator has returned: the prepare watcher
    turns the object's end state into a report (the sidebar line alone is clipped and easy to miss)."""
    from bl_ext.user_default.segany import actions, scene_read

    grid = grid_mesh(x=4, y=4)
    key = actions.object_key(grid)
    rt.prepare(key, scene_read.read_object(grid), "no_such_method")
    st = rt.state(key)
    assert actions.prepare_report(grid.name, st) is None  # still under way: no report yet
    drain_until(lambda: st.status not in actions.PREPARE_RUNNING, timeout=60)
    level, text = actions.prepare_report(grid.name, st)
    assert level == "ERROR" and text.startswith("grid: prepare no_such_method failed") and "[not_found]" in text
    st.status, st.from_cache = "prepared", True
    assert actions.prepare_report(grid.name, st) == ("INFO", "grid: prepared no_such_method (from cache)")


def test_a_prepare_refused_at_once_raises_its_report(addon: object, fresh_scene: object) -> None:
    import bpy

    _activate(grid_mesh(x=4, y=4))
    settings = bpy.context.scene.segany
    settings.options = "[12]"
    try:
        with pytest.raises(RuntimeError, match="Options must be a JSON object"):
            bpy.ops.segany.prepare()
    finally:
        settings.options = ""


EXPORT_SCRIPT = """
import importlib, json, os
import bpy
import numpy as np

addon_utils = importlib.import_module("addon_utils")  # importable once bpy has set up its script paths

repo = os.path.join(bpy.utils.user_resource("EXTENSIONS"), "user_default")
os.makedirs(repo, exist_ok=True)
os.symlink(ADDON, os.path.join(repo, "segany"))
addon_utils.enable("bl_ext.user_default.segany", default_set=True, handle_error=None)
from bl_ext.user_default.segany import actions, api

assert bpy.ops.wm.ply_import(filepath=DONUT) == {"FINISHED"}
ob = bpy.context.active_object
n = len(ob.data.vertices) if ob.type == "MESH" else len(ob.data.points)  # 5.3 imports a point cloud
actions.accept(ob, (np.arange(n) % 3 == 0).astype(np.float32), 0.5, "attribute", "third")
bpy.ops.wm.save_as_mainfile(filepath=BLEND)
ob.location = (5.0, 0.0, 0.0)  # moved after import: the export stays in the object's local space
assert bpy.ops.segany.export_ply(filepath="//third.ply") == {"FINISHED"}
print("RESULT" + json.dumps({"all": api.export_ply(ob, "//all.ply"), "n": n}))
"""


def test_export_ply_honours_relative_paths_and_says_its_space(addon: object, tmp_path: Path) -> None:
    """In a fresh Blender whose file is saved in tmp_path: `//` means beside the .blend (before the fix the
    PLY went to the filesystem root), the coordinates are the object's local ones, and the report says so."""
    from plyfile import PlyData

    blend = tmp_path / "scene" / "splats.blend"
    blend.parent.mkdir()
    preamble = f"ADDON = {str(ADDON)!r}\nDONUT = {str(DONUT)!r}\nBLEND = {str(blend)!r}\n"
    proc = run_blender(preamble + EXPORT_SCRIPT, user_dir=tmp_path / "user")
    out = json.loads(proc.stdout.split("RESULT", 1)[1].strip().splitlines()[0])
    third, whole = blend.parent / "third.ply", blend.parent / "all.ply"
    assert "relative" not in proc.stderr, proc.stderr  # the path property says it takes // paths
    keep = np.arange(out["n"]) % 3 == 0
    assert f"Wrote {keep.sum()} Gaussians to {third} in the local space of 'donut'" in proc.stdout
    source = PlyData.read(str(DONUT))["vertex"]
    assert out["all"] == out["n"] == len(source.data)
    exported = PlyData.read(str(third))["vertex"]
    for axis in "xyz":
        np.testing.assert_allclose(exported[axis], source[axis][keep], atol=1e-6, err_msg=axis)
    assert len(PlyData.read(str(whole))["vertex"].data) == out["n"]
