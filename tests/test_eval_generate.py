"""Labelled splats and points from labelled meshes: real PLY files, and no label leaks into colour."""

from __future__ import annotations

import json

import numpy as np
from eval_shapes import split_box, write_psb

from segany.eval.data import iter_shapes
from segany.eval.generate import generate_labelled, points_from_mesh, shade, splats_from_mesh
from segany.scene import PointScene, SplatScene


def test_colours_do_not_depend_on_labels() -> None:
    shape = split_box()
    relabelled = np.random.default_rng(0).permutation(7)[shape.labels % 7] + 100
    for make in (splats_from_mesh, points_from_mesh):
        a, la = make(shape.scene, shape.labels, 4000, seed=3)
        b, lb = make(shape.scene, relabelled, 4000, seed=3)
        colour_a = a.sh if isinstance(a, SplatScene) else a.rgb
        colour_b = b.sh if isinstance(b, SplatScene) else b.rgb
        np.testing.assert_array_equal(colour_a, colour_b)  # same geometry, other labels: same colours
        assert not np.array_equal(la, lb)
    # and the colour is a function of the normal alone: grey Lambert shading, equal channels
    pts, labels = points_from_mesh(shape.scene, shape.labels, 4000, seed=3)
    np.testing.assert_allclose(pts.rgb, shade(pts.normals), atol=1e-6)
    top = pts.normals[:, 1] > 0.99  # the face y = +0.5 holds both labels: one colour across them
    assert set(np.unique(labels[top])) == {0, 1}
    assert len(np.unique(pts.rgb[top], axis=0)) == 1


def test_splats_lie_flat_on_their_faces() -> None:
    shape = split_box()
    splats, labels = splats_from_mesh(shape.scene, shape.labels, 2000, seed=1)
    assert len(labels) == splats.n_elements and set(np.unique(labels)) == {0, 1}
    w, x, y, z = splats.quats.T
    normal = np.stack([2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)], axis=1)  # R[:, 2]
    # on a box every normal is an axis; the shortest axis must be that normal
    assert np.allclose(np.abs(normal).max(axis=1), 1.0, atol=1e-5)
    assert (np.argmin(splats.log_scales, axis=1) == 2).all()
    far = np.abs(splats.means).max(axis=1)
    np.testing.assert_allclose(far, 0.5, atol=1e-6)  # on the surface


def test_generated_ply_files_round_trip_with_labels(tmp_path) -> None:
    src = write_psb(tmp_path / "psb", [split_box(2)])
    written = generate_labelled(src, tmp_path / "gen", n=1500)
    assert [p.name for p in written["splats"]] == ["box.ply"] and [p.name for p in written["points"]] == ["box.ply"]
    assert json.loads((tmp_path / "gen" / "splats" / "categories.json").read_text()) == {"box": "unknown"}
    for kind, cls in (("splats", SplatScene), ("points", PointScene)):
        (shape,) = list(iter_shapes(tmp_path / "gen" / kind))
        assert isinstance(shape.scene, cls) and shape.scene.n_elements == 1500
        assert len(shape.labels) == 1500 and set(np.unique(shape.labels)) == {0, 1}
        if isinstance(shape.scene, PointScene):
            assert shape.scene.labels is None  # ground truth is kept apart from what a method sees
        x = shape.scene.means[:, 0] if kind == "splats" else shape.scene.xyz[:, 0]
        assert ((x > 0) == (shape.labels == 1)).mean() > 0.99


def test_labelled_mesh_ply_directory_is_a_data_source(tmp_path) -> None:
    from segany.formats import write_labelled_ply

    box = split_box(2)
    (tmp_path / "meshes").mkdir()
    write_labelled_ply(tmp_path / "meshes" / "7.ply", box.scene, box.labels)
    (shape,) = list(iter_shapes(tmp_path / "meshes"))
    assert shape.id == "7" and shape.category == "human"  # PSB numbering when no categories.json
    np.testing.assert_array_equal(shape.labels, box.labels)
    written = generate_labelled(tmp_path / "meshes", tmp_path / "gen", kinds=("points",), n=500)
    assert [p.name for p in written["points"]] == ["7.ply"] and not (tmp_path / "gen" / "splats").exists()
