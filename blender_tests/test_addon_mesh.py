"""Meshes: reading original vertices, picking on the original mesh under modifiers, every output form,
undo of the operators, and picking splats / points by projection against Blender's own projection."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import grid_mesh


def _grid_scores(ob: object) -> tuple[np.ndarray, np.ndarray]:
    from bl_ext.user_default.segany import scene_read

    xyz = scene_read.positions(ob.data)
    scores = np.clip(0.5 + xyz[:, 0], 0, 1).astype(np.float32)  # right half of a size-2 grid above 0.5
    return scores, scores >= 0.5


def test_read_mesh_uses_original_vertices_under_modifiers(addon: object, fresh_scene: object) -> None:
    from bl_ext.user_default.segany import scene_read

    from segany.scene import MeshScene

    ob = grid_mesh(x=8, y=6)
    ob.modifiers.new("subsurf", "SUBSURF").levels = 2
    scene = scene_read.read_object(ob)
    assert scene.kind == "mesh" and scene.n_elements == 48
    assert scene.arrays["faces"].shape == (2 * 7 * 5, 3) and scene.arrays["faces"].max() == 47
    MeshScene(**scene.arrays)  # the backend accepts exactly these arrays


def test_pick_with_bvh_of_the_original_mesh_returns_original_vertex(addon: object, fresh_scene: object) -> None:
    import bpy
    from bl_ext.user_default.segany import picking
    from mathutils import Vector

    ob = grid_mesh(x=5, y=5, size=2.0)  # vertices at -1, -0.5, 0, 0.5, 1
    ob.modifiers.new("subsurf", "SUBSURF").levels = 2
    ob.location = (3.0, 0.0, 0.0)
    bpy.context.view_layer.update()
    picker = picking.MeshPicker(ob)
    co = np.array([v.co[:] for v in ob.data.vertices])
    for target in (0, 7, 12, 24):
        x, y, _ = co[target]
        inward = -0.1 * np.sign([x, y])  # a little towards the centre, still nearest to the target
        hit = picker.pick_ray(Vector((3.0 + x + inward[0], y + inward[1], 5.0)), Vector((0, 0, -1)))
        assert hit == target
    assert picker.pick_ray(Vector((10, 10, 5)), Vector((0, 0, -1))) == -1
    evaluated = ob.evaluated_get(bpy.context.evaluated_depsgraph_get())
    ok, _loc, _n, face = evaluated.ray_cast(Vector((0.9, 0.9, 5.0)), Vector((0, 0, -1)))
    assert ok and face >= len(ob.data.polygons)  # what the BVH of the original mesh avoids


def test_projection_pick_matches_blenders_location_3d_to_region_2d(addon: object) -> None:
    from types import SimpleNamespace

    from bl_ext.user_default.segany import pick_math
    from bpy_extras.view3d_utils import location_3d_to_region_2d
    from mathutils import Matrix, Vector

    rng = np.random.default_rng(0)
    pts = rng.uniform(-1, 1, size=(200, 3)).astype(np.float32)
    proj = Matrix(((1.8, 0, 0, 0), (0, 2.4, 0, 0), (0, 0, -1.002, -0.2002), (0, 0, -1, 0)))
    view = Matrix.Translation((0.1, -0.2, -5.0)) @ Matrix.Rotation(0.3, 4, "Y")
    persp = proj @ view
    region = SimpleNamespace(width=640, height=480)
    rv3d = SimpleNamespace(perspective_matrix=persp)  # the two fields the Blender function reads
    xy, depth = pick_math.project(pts, np.array(persp), 640, 480)
    for i in range(0, 200, 17):
        ref = location_3d_to_region_2d(region, rv3d, Vector(pts[i]))
        np.testing.assert_allclose(xy[i], ref[:], atol=1e-3)
    target = 42
    near = pick_math.pick_projected(pts, np.array(persp), 640, 480, tuple(xy[target] + 0.5), radius_px=2)
    assert near == target
    eye = np.array(view.inverted().translation, np.float32)
    front = (pts[target] + eye) / 2  # on the same line of sight, nearer to the eye
    both = np.vstack([pts, front[None]]).astype(np.float32)
    picked = pick_math.pick_projected(both, np.array(persp), 640, 480, tuple(xy[target]), radius_px=2)
    assert picked == 200 and depth[target] > 0


@pytest.mark.parametrize(
    "output", ["vertex_group", "attribute", "bool_attribute", "selection", "material", "face_set", "object"]
)
def test_every_output_form(addon: object, fresh_scene: object, output: str) -> None:
    import bpy
    from bl_ext.user_default.segany import results, scene_read

    ob = grid_mesh(x=12, y=12)
    scores, mask = _grid_scores(ob)
    made = results.apply(ob, scores, 0.5, output, "part", (0.1, 0.8, 0.2, 1.0), binary=False)
    me = ob.data
    if output == "vertex_group":
        w = np.array([next((g.weight for g in v.groups if g.group == made.index), 0.0) for v in me.vertices])
        np.testing.assert_allclose(w, np.where(mask, scores, 0), atol=1 / 255)
    elif output == "attribute":
        np.testing.assert_array_equal(scene_read.read_attribute(me, "part"), scores)
    elif output == "bool_attribute":
        np.testing.assert_array_equal(scene_read.read_attribute(me, "part"), mask)
    elif output == "selection":
        sel = np.array([v.select for v in me.vertices])
        np.testing.assert_array_equal(sel, mask)
        faces = np.array([all(mask[i] for i in p.vertices) for p in me.polygons])
        np.testing.assert_array_equal(np.array([p.select for p in me.polygons]), faces)
    elif output == "material":
        assert made == 1 and me.materials[0] is None and me.materials[made].diffuse_color[1] == pytest.approx(0.8)
        assert sum(1 for p in me.polygons if p.material_index == made) > 0
    elif output == "face_set":
        attr = me.attributes[".sculpt_face_set"]
        fs = np.empty(len(me.polygons), np.int32)
        attr.data.foreach_get("value", fs)
        centers = np.array([p.center.x for p in me.polygons])
        assert (fs[centers > 0.1] == made).all() and (fs[centers < -0.1] != made).all()
    else:
        assert made.name == "part" and made in bpy.context.scene.objects.values()
        assert len(made.data.vertices) == int(mask.sum()) and len(ob.data.vertices) == 144


def test_vertex_group_binary_and_rewrite(addon: object, fresh_scene: object) -> None:
    from bl_ext.user_default.segany import results

    ob = grid_mesh(x=10, y=10)
    scores, mask = _grid_scores(ob)
    vg = results.write_vertex_group(ob, "part", scores, 0.5, binary=True)
    members = {v.index for v in ob.data.vertices for g in v.groups if g.group == vg.index}
    assert members == set(np.flatnonzero(mask).tolist())
    vg = results.write_vertex_group(ob, "part", 1 - scores, 0.5, binary=True)  # same name: replaced
    members = {v.index for v in ob.data.vertices for g in v.groups if g.group == vg.index}
    assert members == set(np.flatnonzero(1 - scores >= 0.5).tolist()) and len(ob.vertex_groups) == 1


def test_size_mismatch_is_refused_with_a_clear_message(addon: object, fresh_scene: object) -> None:
    from bl_ext.user_default.segany import results

    ob = grid_mesh(x=4, y=4)
    with pytest.raises(ValueError, match="geometry changed"):
        results.apply(ob, np.zeros(5, np.float32), 0.5, "attribute", "x")


def test_a_segment_saved_as_vertex_group_applies_as_attributes_beside_it(addon: object, fresh_scene: object) -> None:
    """The sidebar's default flow: keep the segment as the vertex group "Segment", then Apply Segment as a
    float and as a boolean attribute. Blender refuses an attribute named like a vertex group (4.2–5.0:
    `attributes.new` returns None, which raised AttributeError; 5.3 renames it, a new name per apply): the
    attribute is "Segment.001", the same one each time."""
    import bpy
    from bl_ext.user_default.segany import actions, results, scene_read

    ob = grid_mesh(name="vg_grid", x=8, y=8)
    scores, mask = _grid_scores(ob)
    actions.accept(ob, scores, 0.5, "vertex_group", "Segment")
    assert "Segment" in ob.vertex_groups
    for _ in range(2):
        assert bpy.ops.segany.segment_apply("EXEC_DEFAULT", output="attribute") == {"FINISHED"}
        np.testing.assert_array_equal(scene_read.read_attribute(ob.data, "Segment.001"), scores)
    assert bpy.ops.segany.segment_apply("EXEC_DEFAULT", output="bool_attribute") == {"FINISHED"}
    np.testing.assert_array_equal(scene_read.read_attribute(ob.data, "Segment.001"), mask)
    assert [a.name for a in ob.data.attributes if a.name.startswith("Segment")] == ["Segment.001"]
    assert [g.name for g in ob.vertex_groups] == ["Segment"]
    with pytest.raises(ValueError, match="refused an attribute named ''"):
        results.apply(ob, scores, 0.5, "attribute", "")  # Blender would call it "Attribute"
    assert "Attribute" not in ob.data.attributes


def test_segment_operators_push_their_own_undo_steps(addon: object, fresh_scene: object) -> None:
    """Undo after an operator returns to the state just before it (its own step), not further back.

    Python calls push an undo step only when asked (the `undo` positional argument of bpy.ops), as a
    button or shortcut always does; the step is pushed because the operators carry the UNDO flag.
    """
    import bpy
    from bl_ext.user_default.segany import actions

    ob = grid_mesh(name="undo_grid", x=8, y=8)
    scores, _ = _grid_scores(ob)
    bpy.ops.ed.undo_push(message="grid")
    actions.accept(ob, scores, 0.5, "attribute", "kept")
    bpy.ops.ed.undo_push(message="segment kept")
    assert bpy.ops.segany.segment_apply("EXEC_DEFAULT", True, output="vertex_group") == {"FINISHED"}
    ob = bpy.data.objects["undo_grid"]
    assert "kept" in ob.vertex_groups
    bpy.ops.ed.undo()
    ob = bpy.data.objects["undo_grid"]
    assert "kept" not in ob.vertex_groups and len(ob.segany_segments) == 1
    assert bpy.ops.segany.segment_remove("EXEC_DEFAULT", True) == {"FINISHED"}
    ob = bpy.data.objects["undo_grid"]
    assert len(ob.segany_segments) == 0 and "segany_score_0" not in ob.data.attributes
    bpy.ops.ed.undo()
    ob = bpy.data.objects["undo_grid"]
    assert len(ob.segany_segments) == 1 and "segany_score_0" in ob.data.attributes
    bpy.ops.ed.redo()
    ob = bpy.data.objects["undo_grid"]
    assert len(ob.segany_segments) == 0


def test_picker_is_cached_per_geometry_and_follows_the_object(addon: object, fresh_scene: object) -> None:
    import bpy
    from bl_ext.user_default.segany import picking
    from mathutils import Vector

    ob = grid_mesh(x=5, y=5)
    first = picking.cached_picker(ob, 1, "scene-a")
    assert picking.cached_picker(ob, 1, "scene-a") is first
    ob.location = (10.0, 0.0, 0.0)
    bpy.context.view_layer.update()
    moved = picking.cached_picker(ob, 1, "scene-a")
    assert moved is first and moved.pick_ray(Vector((10.0, 0.0, 5.0)), Vector((0, 0, -1))) == 12
    assert picking.cached_picker(ob, 1, "scene-b") is not first  # new geometry: rebuilt
    picking.forget_pickers()
    assert picking.cached_picker(ob, 1, "scene-b") is not first


def test_selection_output_in_edit_mode_selects_through_bmesh(addon: object, fresh_scene: object) -> None:
    """In Edit Mode the mesh data is the edit BMesh: the selection goes there and survives leaving it."""
    import bmesh
    import bpy
    from bl_ext.user_default.segany import results

    ob = grid_mesh(name="edit_grid", x=10, y=10)
    scores, mask = _grid_scores(ob)
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        assert results.apply(ob, scores, 0.5, "selection", "part") == int(mask.sum())
        bm = bmesh.from_edit_mesh(ob.data)
        np.testing.assert_array_equal([v.select for v in bm.verts], mask)
        faces = [all(mask[v.index] for v in f.verts) for f in bm.faces]
        np.testing.assert_array_equal([f.select for f in bm.faces], faces)
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
    np.testing.assert_array_equal([v.select for v in ob.data.vertices], mask)


def test_every_operator_that_changes_blender_data_is_undoable(addon: object) -> None:
    """UNDO on exactly the operators that write Blender data; backend, prepare, cancel and the PLY export
    (a file outside the .blend) change none. The undo steps themselves are exercised above and in
    test_addon_splats (segment); the click tool and label cannot run here (modal; no `sas` method yet)."""
    import bpy
    from bl_ext.user_default.segany import registration

    undoable = {cls.bl_idname for cls in registration.CLASSES if "UNDO" in getattr(cls, "bl_options", set())}
    assert undoable == {"segany.segment", "segany.segment_apply", "segany.segment_remove", "segany.label",
                        "segany.click_tool", "segany.everything"}  # fmt: skip
    assert all(hasattr(bpy.types, f"SEGANY_OT_{name.split('.')[1]}") for name in undoable)  # registered
