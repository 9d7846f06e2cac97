"""The click tool's live selection on splat and point objects: a viewport overlay (a real
`SpaceView3D.draw_handler_add` handler, which bpy registers headless) fed by `overlay_points`. What needs a
window cannot run here: the `gpu` module refuses to draw in background mode, so the draw callback is called
directly and must fail soft; that the points look right on screen is checked by hand in Blender."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ADDON, decoded_pointcloud, pointcloud_from_mesh, raw_donut, run_blender

COLOR = (0.9, 0.2, 0.1, 1.0)


def transform() -> object:
    from mathutils import Euler, Matrix, Vector

    return Matrix.LocRotScale(Vector((1.5, -2.0, 0.25)), Euler((0.3, -0.7, 1.1)), Vector((2.0, 0.5, 1.5)))


def test_overlay_points_are_the_selected_elements_in_world_space(addon: object) -> None:
    from bl_ext.user_default.segany.overlay import overlay_points
    from mathutils import Vector

    rng = np.random.default_rng(3)
    local = rng.normal(size=(500, 3)).astype(np.float32)
    scores = rng.random(500).astype(np.float32)
    m = transform()
    coords, colors = overlay_points(local, np.array(m), scores, 0.6, COLOR)
    selected = np.flatnonzero(scores >= 0.6)
    assert coords.dtype == colors.dtype == np.float32 and coords.shape == (len(selected), 3)
    expected = np.array([tuple(m @ Vector(local[i].tolist())) for i in selected])
    np.testing.assert_allclose(coords, expected, atol=1e-5)
    np.testing.assert_array_equal(colors, np.tile(np.float32(COLOR), (len(selected), 1)))
    empty, no_colors = overlay_points(local, np.array(m), scores, 2.0, COLOR)
    assert empty.shape == (0, 3) and no_colors.shape == (0, 4)


def test_overlay_points_cap_a_million_element_selection_deterministically(addon: object) -> None:
    """1M elements, 600K selected: at most the cap is drawn, spread evenly over the selection, the same
    points for the same scores, and the first and last selected elements are among them."""
    from bl_ext.user_default.segany.overlay import MAX_POINTS, overlay_points

    n = 1_000_000
    rng = np.random.default_rng(0)
    local = rng.normal(size=(n, 3)).astype(np.float32)
    scores = rng.random(n).astype(np.float32)
    t0 = time.perf_counter()
    coords, colors = overlay_points(local, np.eye(4), scores, 0.4, COLOR)
    elapsed = time.perf_counter() - t0
    selected = np.flatnonzero(scores >= 0.4)
    assert len(coords) == len(colors) == MAX_POINTS < len(selected)
    index = {tuple(p): i for i, p in enumerate(local[selected].tolist())}
    picked = np.array([index[tuple(p)] for p in coords.tolist()])
    assert picked[0] == 0 and picked[-1] == len(selected) - 1 and np.all(np.diff(picked) > 0)
    gaps = np.diff(picked)
    assert gaps.max() - gaps.min() <= 1  # evenly spread, not a prefix
    again, _ = overlay_points(local, np.eye(4), scores, 0.4, COLOR)
    np.testing.assert_array_equal(coords, again)
    print(f"overlay_points on 1M elements (600K selected, {MAX_POINTS} drawn): {elapsed * 1000:.1f} ms")


def test_overlay_points_refuse_mismatched_scores_and_an_empty_cap(addon: object) -> None:
    from bl_ext.user_default.segany.overlay import overlay_points

    with pytest.raises(ValueError, match="geometry changed"):
        overlay_points(np.zeros((4, 3)), np.eye(4), np.ones(5), 0.5, COLOR)
    with pytest.raises(ValueError, match="max_points"):
        overlay_points(np.zeros((4, 3)), np.eye(4), np.ones(4), 0.5, COLOR, max_points=0)


def plain_pointcloud(n: int = 2000, name: str = "plain_points") -> object:
    """A point cloud with positions only (no splat attributes): the `points` scene kind."""
    import bpy

    me = bpy.data.meshes.new(name)
    me.vertices.add(n)
    me.vertices.foreach_set("co", np.random.default_rng(1).normal(size=(n, 3)).astype(np.float32).ravel())
    return pointcloud_from_mesh(me, name)


def make_object(kind: str) -> object:
    """raw: the real donut in the raw layout (Blender 5.0's PLY import); decoded: the same Gaussians as a point
    cloud with 5.3's decoded attributes;
    points: a plain point cloud; mesh: a grid with faces."""
    import bpy
    from bl_ext.user_default.segany import scene_read
    from conftest import grid_mesh

    if kind == "mesh":
        return grid_mesh("overlay_grid", 12, 12)
    if kind == "points":
        return plain_pointcloud()
    ob = raw_donut()
    if kind == "raw":
        return ob
    arrays = scene_read.read_object(ob).arrays
    bpy.data.objects.remove(ob)
    return decoded_pointcloud(arrays, "donut53_overlay")


@pytest.mark.parametrize(("kind", "scene_kind"), [("raw", "splats"), ("decoded", "splats"), ("points", "points")])
def test_a_click_session_on_splats_and_points_draws_one_overlay_and_ends_it(
    addon: object, fresh_scene: object, kind: str, scene_kind: str
) -> None:
    """Starting the session registers exactly one draw handler; the scores show as the selected elements
    in world space (positions from the add-on's own scene reading, either splat layout or plain points),
    no colour attribute is written, and finishing removes the handler from Blender."""
    import bpy
    from bl_ext.user_default.segany import actions, overlay, results, scene_read

    ob = make_object(kind)
    ob.matrix_world = transform()
    scene = scene_read.read_object(ob)
    assert scene.kind == scene_kind
    local = scene.arrays["means" if scene_kind == "splats" else "xyz"]
    before = sorted(a.name for a in ob.data.attributes)

    session, preview = actions.start_click(ob, COLOR)
    assert isinstance(preview, overlay.PointOverlay) and overlay.active() == [preview]
    assert type(preview.handle).__name__ == "PyCapsule"  # Blender's handle of a registered draw callback
    scores = (local[:, 0] > np.median(local[:, 0])).astype(np.float32)
    session.show(scores, 0.5)  # what a query's answer does
    m = np.array(ob.matrix_world)
    np.testing.assert_allclose(preview.coords, local[scores >= 0.5] @ m[:3, :3].T + m[:3, 3], atol=1e-4)
    assert np.all(preview.colors == np.float32(COLOR))
    assert sorted(a.name for a in ob.data.attributes) == before and results.PREVIEW_ATTRIBUTE not in before
    session.clear()  # the last click undone
    assert len(preview.coords) == 0 and overlay.active() == [preview]

    handle = preview.handle
    assert actions.finish_click(ob, session, bpy.context.scene.segany, COLOR, False, preview) is None
    assert overlay.active() == [] and preview.handle is None
    with pytest.raises(ValueError, match="already removed"):
        bpy.types.SpaceView3D.draw_handler_remove(handle, "WINDOW")  # Blender no longer has it
    preview.close()  # idempotent: the operator's own cleanup may close it again


def test_meshes_keep_the_colour_attribute_and_get_no_overlay(addon: object, fresh_scene: object) -> None:
    import bpy
    from bl_ext.user_default.segany import actions, overlay, results

    ob = make_object("mesh")
    session, preview = actions.start_click(ob, COLOR)
    assert isinstance(preview, results.AttributePreview) and overlay.active() == []
    session.show(np.linspace(0, 1, len(ob.data.vertices), dtype=np.float32), 0.5)
    assert ob.data.color_attributes.active_color.name == results.PREVIEW_ATTRIBUTE
    assert actions.finish_click(ob, session, bpy.context.scene.segany, COLOR, False, preview) is None
    assert results.PREVIEW_ATTRIBUTE not in ob.data.color_attributes and overlay.active() == []


def test_an_object_keeps_its_own_colours_while_our_layer_is_active(addon: object, fresh_scene: object) -> None:
    """Showing a segment (labels, parts) makes our colour layer the active one; what is read and sent is still the
    mesh's own colours, so its scene id and cached work do not change."""
    from bl_ext.user_default.segany import actions, scene_read

    ob = make_object("mesh")
    n = len(ob.data.vertices)
    own = ob.data.color_attributes.new("Col", "FLOAT_COLOR", "POINT")
    rgba = np.random.default_rng(5).random((n, 4)).astype(np.float32)
    own.data.foreach_set("color", rgba.ravel())
    ob.data.color_attributes.active_color = own
    before = scene_read.read_object(ob)
    session, _preview = actions.start_click(ob, COLOR)
    session.show(np.linspace(0, 1, n, dtype=np.float32), 0.5)
    assert ob.data.color_attributes.active_color.name != "Col"  # our preview layer is the active one now
    after = scene_read.read_object(ob)
    np.testing.assert_allclose(after.arrays["vertex_colors"], rgba[:, :3], atol=1e-6)
    np.testing.assert_array_equal(after.arrays["vertex_colors"], before.arrays["vertex_colors"])


FAIL_SOFT_SCRIPT = """
import json, logging
from pathlib import Path
import bpy, addon_utils
import numpy as np

repo = Path(bpy.utils.user_resource("EXTENSIONS")) / "user_default"
repo.mkdir(parents=True, exist_ok=True)
(repo / "segany").symlink_to(ADDON, target_is_directory=True)
addon_utils.enable("bl_ext.user_default.segany", default_set=True, handle_error=None)
from bl_ext.user_default.segany import overlay

records = []
handler = logging.Handler()
handler.emit = lambda record: records.append(record.getMessage())
logging.getLogger("segany.overlay").addHandler(handler)

def points():
    me = bpy.data.meshes.new("pts")
    me.vertices.add(500)
    me.vertices.foreach_set("co", np.random.default_rng(1).normal(size=1500).astype(np.float32))
    ob = bpy.data.objects.new("pts", me)
    bpy.context.scene.collection.objects.link(ob)
    return ob

out = {}
ob = points()
preview = overlay.PointOverlay(ob, (0.9, 0.2, 0.1, 1.0))
preview.show(np.ones(500, np.float32), 0.5)
for _ in range(3):
    preview._draw()  # what Blender calls on every viewport redraw
out["error"], out["logged"] = preview.error, records
preview.close()
again = overlay.PointOverlay(ob, (0.9, 0.2, 0.1, 1.0))
again.show(np.ones(500, np.float32), 0.5)
bpy.data.objects.remove(ob)
again._draw()
out["after_remove"] = [again.error, again.target() is None]
again.show(np.ones(500, np.float32), 0.5)
out["coords_after_remove"] = len(again.coords)
again.close()
out["active"] = len(overlay.active())
print("RESULT" + json.dumps(out))
"""


def test_the_draw_callback_fails_soft_and_draws_nothing_once_the_object_is_gone(tmp_path: Path) -> None:
    """Headless, gpu refuses to draw: the callback says so once (log and the tool's header text) and then
    stays quiet. With its object deleted it returns before touching gpu, and new scores draw nothing.
    In a fresh Blender: once anything in the process has rendered (a workbench render in another test),
    gpu has a context and draws without complaint, so the refusal exists only in a process that has not."""
    proc = run_blender(f"ADDON = {str(ADDON)!r}\n" + FAIL_SOFT_SCRIPT, user_dir=tmp_path / "user")
    out = json.loads(proc.stdout.split("RESULT", 1)[1].strip().splitlines()[0])
    assert out["error"].startswith("selection overlay cannot draw: ")  # gpu's reason differs between versions
    assert out["logged"] == [out["error"]]
    assert out["after_remove"] == ["", True] and out["coords_after_remove"] == 0 and out["active"] == 0


UNREGISTER_SCRIPT = """
import json, os
from pathlib import Path
import bpy, addon_utils

repo = Path(bpy.utils.user_resource("EXTENSIONS")) / "user_default"
repo.mkdir(parents=True, exist_ok=True)
(repo / "segany").symlink_to(ADDON, target_is_directory=True)
PKG = "bl_ext.user_default.segany"
addon_utils.enable(PKG, default_set=True, handle_error=None)
from bl_ext.user_default.segany import overlay

def points():
    me = bpy.data.meshes.new("pts")
    me.vertices.add(10)
    ob = bpy.data.objects.new("pts", me)
    bpy.context.scene.collection.objects.link(ob)
    return ob

def gone(handle):
    try:
        bpy.types.SpaceView3D.draw_handler_remove(handle, "WINDOW")
    except ValueError:
        return True
    return False

out = {}
first = overlay.PointOverlay(points(), (1, 0, 0, 1))
handle = first.handle
bpy.ops.wm.read_homefile(use_empty=True)  # a new file: load_post removes the overlays
out["after_load"] = [len(overlay.active()), gone(handle)]
handles = [overlay.PointOverlay(points(), (1, 0, 0, 1)).handle for _ in range(2)]
out["before_disable"] = len(overlay.active())
addon_utils.disable(PKG, default_set=True)
out["after_disable"] = [len(overlay.active()), all(gone(h) for h in handles)]
print("RESULT" + json.dumps(out))
"""


def test_a_new_file_and_unregister_remove_every_overlay(tmp_path: Path) -> None:
    proc = run_blender(f"ADDON = {str(ADDON)!r}\n" + UNREGISTER_SCRIPT, user_dir=tmp_path / "user")
    out = json.loads(proc.stdout.split("RESULT", 1)[1].strip().splitlines()[0])
    assert out == {"after_load": [0, True], "before_disable": 2, "after_disable": [0, True]}
