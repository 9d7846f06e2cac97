"""Splat objects in both Blender layouts, read into scene arrays, results written back, 3DGS PLY export.

The raw layout comes from Blender 5.0's own PLY importer on the real donut.ply; the decoded (5.3+)
layout is built as a point cloud with the attribute names and meanings of Blender 5.3's importer
(bpy 5.0.1 has point clouds but not that importer). The backend's own converters and PLY reader are the
independent references.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    DONUT,
    TINY,
    camera_view,
    decoded_pointcloud,
    import_donut,
    pointcloud_from_mesh,
    raw_donut,
)
from plyfile import PlyData

from segany.samples import shared_data_dir


def test_this_blenders_ply_importer_reads_as_the_file(addon: object, fresh_scene: object) -> None:
    """Whatever this Blender's importer makes of a 3DGS PLY reads back as the file: the raw layout (up to 5.0)
    bit for bit; 5.3's decoded point cloud up to its own conversions (sigmoid opacity, unit quaternions)."""
    from bl_ext.user_default.segany import scene_read

    ob = import_donut()
    scene = scene_read.read_object(ob)
    layout = "raw" if ob.type == "MESH" else "decoded"
    assert scene.kind == "splats" and scene.layout == layout and scene.n_elements == 45624
    v = PlyData.read(str(DONUT))["vertex"]
    quats = np.stack([v[f"rot_{i}"] for i in range(4)], 1)
    if layout == "decoded":
        quats = quats / np.linalg.norm(quats, axis=1, keepdims=True)
    np.testing.assert_array_equal(scene.arrays["means"], np.stack([v["x"], v["y"], v["z"]], 1))
    np.testing.assert_allclose(scene.arrays["quats"], quats, atol=1e-6)
    np.testing.assert_allclose(scene.arrays["log_scales"], np.stack([v[f"scale_{i}"] for i in range(3)], 1), atol=1e-5)
    np.testing.assert_allclose(scene.arrays["logit_opacities"], v["opacity"], atol=1e-3)  # logits up to about 9
    np.testing.assert_allclose(scene.arrays["sh"][:, 0], np.stack([v[f"f_dc_{i}"] for i in range(3)], 1), atol=1e-5)


def test_raw_layout_reads_as_the_file_and_as_the_backend_converts_it(addon: object, fresh_scene: object) -> None:
    from bl_ext.user_default.segany import scene_read

    from segany.formats.gaussians import splats_from_blender_raw

    ob = raw_donut()
    assert ob.type == "MESH" and len(ob.data.polygons) == 0
    scene = scene_read.read_object(ob)
    assert scene.kind == "splats" and scene.layout == "raw" and scene.n_elements == 45624
    v = PlyData.read(str(DONUT))["vertex"]
    np.testing.assert_array_equal(scene.arrays["means"], np.stack([v["x"], v["y"], v["z"]], 1))
    np.testing.assert_array_equal(scene.arrays["logit_opacities"], v["opacity"])
    np.testing.assert_array_equal(scene.arrays["quats"][:, 0], v["rot_0"])
    np.testing.assert_array_equal(scene.arrays["sh"][:, 0, 2], v["f_dc_2"])
    names = [a.name for a in ob.data.attributes if not a.name.startswith(".")]
    attrs = {a: scene_read.read_attribute(ob.data, a) for a in names}
    ref = splats_from_blender_raw(attrs)
    for key in ("means", "quats", "log_scales", "logit_opacities", "sh"):
        np.testing.assert_array_equal(scene.arrays[key], getattr(ref, key), err_msg=key)


def test_decoded_pointcloud_layout_matches_the_backend_converter(addon: object, fresh_scene: object) -> None:
    from bl_ext.user_default.segany import scene_read

    from segany.formats.gaussians import splats_from_blender_decoded

    rng = np.random.default_rng(0)
    n = 500
    arrays = {
        "means": rng.normal(size=(n, 3)).astype(np.float32),
        "quats": (q := rng.normal(size=(n, 4)).astype(np.float32)) / np.linalg.norm(q, axis=1, keepdims=True),
        "log_scales": rng.normal(-3, 0.5, size=(n, 3)).astype(np.float32),
        "logit_opacities": rng.normal(0, 2, size=n).astype(np.float32),
        "sh": rng.normal(0, 0.3, size=(n, 4, 3)).astype(np.float32),
    }
    ob = decoded_pointcloud(arrays)
    scene = scene_read.read_object(ob)
    assert scene.kind == "splats" and scene.layout == "decoded" and scene.n_elements == n
    for key in arrays:
        np.testing.assert_allclose(scene.arrays[key], arrays[key], rtol=1e-4, atol=2e-4, err_msg=key)
    attrs = {
        a.name: scene_read.read_attribute(ob.data, a.name) for a in ob.data.attributes if not a.name.startswith(".")
    }
    ref = splats_from_blender_decoded(attrs)
    for key in arrays:
        np.testing.assert_allclose(scene.arrays[key], getattr(ref, key), rtol=1e-5, atol=1e-5, err_msg=key)


@pytest.mark.parametrize("layout", ["raw", "decoded"])
def test_results_written_back_keep_the_original_attributes(addon: object, fresh_scene: object, layout: str) -> None:
    from bl_ext.user_default.segany import results, scene_read

    ob = raw_donut()
    if layout == "decoded":
        ob = decoded_pointcloud(scene_read.read_object(ob).arrays, "donut53")
    before = {a.name: (a.data_type, a.domain) for a in ob.data.attributes}
    originals = {k: scene_read.read_attribute(ob.data, k) for k in before if not k.startswith(".")}
    n = scene_read.read_object(ob).n_elements
    scores = np.linspace(0, 1, n, dtype=np.float32)
    results.apply(ob, scores, 0.5, "attribute", "segany_part")
    results.apply(ob, scores, 0.5, "bool_attribute", "segany_part_mask")
    results.show_preview(ob.data, scores, 0.5, (1, 0, 0, 1))
    after = {a.name: (a.data_type, a.domain) for a in ob.data.attributes}
    assert {k: v for k, v in after.items() if k in before} == before
    for k, v in originals.items():
        np.testing.assert_array_equal(scene_read.read_attribute(ob.data, k), v, err_msg=k)
    np.testing.assert_array_equal(scene_read.read_attribute(ob.data, "segany_part"), scores)
    np.testing.assert_array_equal(scene_read.read_attribute(ob.data, "segany_part_mask"), scores >= 0.5)
    assert scene_read.read_object(ob).kind == "splats"  # still a splat object with our extras


@pytest.mark.parametrize("layout", ["raw", "decoded"])
def test_export_segment_as_standard_3dgs_ply(addon: object, fresh_scene: object, tmp_path: Path, layout: str) -> None:
    from bl_ext.user_default.segany import results, scene_read

    from segany.formats import load_scene

    ob = raw_donut()
    if layout == "decoded":
        ob = decoded_pointcloud(scene_read.read_object(ob).arrays, "donut53")
    arrays = scene_read.read_object(ob).arrays
    mask = arrays["means"][:, 2] > np.median(arrays["means"][:, 2])
    path = tmp_path / "segment.ply"
    assert results.export_splat_ply(ob, str(path), mask) == int(mask.sum())
    ply = PlyData.read(str(path))
    names = [p.name for p in ply["vertex"].properties]
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert names[-8:] == ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    back = load_scene(path)
    assert back.kind == "splats" and back.n_elements == int(mask.sum())
    np.testing.assert_array_equal(back.means, arrays["means"][mask])
    np.testing.assert_array_equal(back.logit_opacities, arrays["logit_opacities"][mask])
    np.testing.assert_array_equal(back.sh, arrays["sh"][mask])
    if layout == "raw":  # the raw layout round-trips the original file's values bit for bit
        v = PlyData.read(str(DONUT))["vertex"]
        np.testing.assert_array_equal(back.log_scales[:, 1], v["scale_1"][mask])


def test_higher_sh_degree_round_trips_through_both_layouts(addon: object, fresh_scene: object, tmp_path: Path) -> None:
    """f_rest_* are channel-major in the PLY; the decoded layout keeps one attribute per coefficient."""
    import bpy
    from bl_ext.user_default.segany import scene_read, splat_layout

    rng = np.random.default_rng(1)
    n, k = 64, 9
    arrays = {
        "means": rng.normal(size=(n, 3)).astype(np.float32),
        "quats": np.tile(np.float32([1, 0, 0, 0]), (n, 1)),
        "log_scales": np.full((n, 3), -2, np.float32),
        "logit_opacities": np.zeros(n, np.float32),
        "sh": rng.normal(size=(n, k, 3)).astype(np.float32),
    }
    path = tmp_path / "sh2.ply"
    splat_layout.write_ply(str(path), arrays)
    assert bpy.ops.wm.ply_import(filepath=str(path)) == {"FINISHED"}
    raw = scene_read.read_object(bpy.context.active_object)
    np.testing.assert_array_equal(raw.arrays["sh"], arrays["sh"])
    dec = scene_read.read_object(decoded_pointcloud(arrays, "sh2_53"))
    np.testing.assert_allclose(dec.arrays["sh"], arrays["sh"], atol=1e-6)


@pytest.mark.parametrize("layout", ["raw", "decoded"])
def test_point_picker_finds_the_front_gaussian_under_the_cursor(
    addon: object, fresh_scene: object, layout: str
) -> None:
    """Both splat layouts have nothing to ray-cast: the click tool's picker projects the Gaussians with a
    real camera's matrices (object moved, so the object transform matters too)."""
    from bl_ext.user_default.segany import pick_math, picking, scene_read

    ob = raw_donut()
    if layout == "decoded":
        ob = decoded_pointcloud(scene_read.read_object(ob).arrays, "donut53")
    ob.location = (0.5, -0.2, 0.3)
    w, h = 400, 300
    persp = camera_view((0.0, -3.0, 0.8), (1.3, 0.0, 0.0), w, h)
    picker = picking.picker_for(ob, radius_px=6)
    assert isinstance(picker, picking.PointPicker)
    local = scene_read.positions(ob.data)
    xy, depth = pick_math.project(local, np.array(persp @ ob.matrix_world), w, h)
    inside = np.flatnonzero((xy[:, 0] > 50) & (xy[:, 0] < w - 50) & (xy[:, 1] > 50) & (xy[:, 1] < h - 50))
    front = inside[np.argmin(depth[inside])]
    assert picker.pick_matrix(persp, w, h, tuple(xy[front])) == front
    assert picker.pick_matrix(persp, w, h, (-500.0, -500.0)) == -1


@pytest.mark.parametrize("layout", ["raw", "decoded"])
def test_separate_makes_an_object_of_the_segments_gaussians(addon: object, fresh_scene: object, layout: str) -> None:
    """'New object from the segment' on splats: the 5.0 mesh goes through bmesh, the 5.3 point cloud
    (no bmesh) through a geometry-nodes Delete Geometry; both keep every 3DGS attribute of the kept ones."""
    import bpy
    from bl_ext.user_default.segany import results, scene_read

    ob = raw_donut()
    if layout == "decoded":
        ob = decoded_pointcloud(scene_read.read_object(ob).arrays, "donut53")
    arrays = scene_read.read_object(ob).arrays
    scores = (arrays["means"][:, 0] > 0).astype(np.float32)
    mask = scores >= 0.5
    part = results.apply(ob, scores, 0.5, "object", "donut_part")
    assert part.type == ob.type and part.name in bpy.context.scene.objects
    assert "segany_drop" not in part.data.attributes and not part.modifiers
    kept = scene_read.read_object(part)
    assert kept.kind == "splats" and kept.layout == scene_read.read_object(ob).layout
    assert kept.n_elements == int(mask.sum()) and scene_read.read_object(ob).n_elements == len(mask)
    for key in ("means", "quats", "log_scales", "logit_opacities", "sh"):
        np.testing.assert_array_equal(kept.arrays[key], arrays[key][mask], err_msg=key)


def test_plain_point_cloud_is_sent_as_points_and_segmented_by_sa3d(rt: object, fresh_scene: object) -> None:
    """A real point cloud (a subset of the garden scan) as a Blender point cloud with its colours: sent as
    a `points` scene with rgb (point clouds have no active colour attribute; Blender 4.2 has the property,
    always None, and its colours were lost), segmented by SA3D, scores written back beside the originals."""
    import bpy
    from bl_ext.user_default.segany import api, scene_read

    from segany.scene import PointScene

    garden = np.load(shared_data_dir() / "splats" / "garden_points.npz")
    keep = np.random.default_rng(0).choice(len(garden["means3d"]), 4000, replace=False)
    xyz, rgb = garden["means3d"][keep], garden["colors"][keep].astype(np.float32) / 255
    me = bpy.data.meshes.new("garden")
    me.vertices.add(len(xyz))
    me.vertices.foreach_set("co", xyz.ravel())
    me.color_attributes.new("Col", "FLOAT_COLOR", "POINT").data.foreach_set(
        "color", np.hstack([rgb, np.ones((len(rgb), 1), np.float32)]).ravel()
    )
    ob = pointcloud_from_mesh(me, "garden")
    scene = scene_read.read_object(ob)
    assert ob.type == "POINTCLOUD" and scene.kind == "points" and scene.n_elements == len(xyz)
    np.testing.assert_array_equal(scene.arrays["xyz"], xyz)
    np.testing.assert_allclose(scene.arrays["rgb"], rgb, atol=1e-6)
    PointScene(**scene.arrays)  # the backend accepts exactly these arrays
    before = {a.name: (a.data_type, a.domain) for a in ob.data.attributes}
    done = api.segment(ob, clicks=[(0, 1)], method="sa3d", options=TINY, output="attribute", name="part")
    np.testing.assert_array_equal(scene_read.read_attribute(ob.data, "part"), done.scores)
    assert done.scores.shape == (len(xyz),) and 0 < done.count < len(xyz)
    after = {a.name: (a.data_type, a.domain) for a in ob.data.attributes}
    assert {k: v for k, v in after.items() if k in before} == before
    np.testing.assert_allclose(scene_read.read_object(ob).arrays["rgb"], rgb, atol=1e-6)


def test_segment_operator_on_splats_is_one_undo_step(rt: object, fresh_scene: object) -> None:
    """bpy.ops.segany.segment (SA3D on the donut) pushes its own undo step: undo removes the segment, its
    scores and its output, and leaves the 3DGS attributes; redo brings the segment back."""
    import bpy

    name = import_donut().name
    names = sorted(a.name for a in bpy.data.objects[name].data.attributes)
    bpy.ops.ed.undo_push(message="donut imported")
    opts = json.dumps(TINY)
    assert bpy.ops.segany.segment("EXEC_DEFAULT", True, clicks="0", method="sa3d", options=opts,
                                  output="attribute", name="ring") == {"FINISHED"}  # fmt: skip
    ob = bpy.data.objects[name]
    assert "ring" in ob.data.attributes and len(ob.segany_segments) == 1
    bpy.ops.ed.undo()
    ob = bpy.data.objects[name]
    assert sorted(a.name for a in ob.data.attributes) == names and len(ob.segany_segments) == 0
    bpy.ops.ed.redo()
    ob = bpy.data.objects[name]
    assert "ring" in ob.data.attributes and ob.segany_segments[0].name == "ring"


@pytest.mark.parametrize(
    ("layout", "output"), [("raw", "material"), ("decoded", "vertex_group"), ("decoded", "face_set")]
)
def test_an_output_the_object_cannot_hold_is_refused_before_anything_is_written(
    addon: object, fresh_scene: object, layout: str, output: str
) -> None:
    from bl_ext.user_default.segany import actions, scene_read

    ob = raw_donut()
    if layout == "decoded":
        ob = decoded_pointcloud(scene_read.read_object(ob).arrays, "donut53")
    names = sorted(a.name for a in ob.data.attributes)
    scores = np.linspace(0, 1, scene_read.read_object(ob).n_elements, dtype=np.float32)
    with pytest.raises(ValueError, match="use 'attribute' for splats and points"):
        actions.accept(ob, scores, 0.5, output, "part")
    assert sorted(a.name for a in ob.data.attributes) == names and len(ob.segany_segments) == 0
