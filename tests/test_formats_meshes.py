"""Mesh files through trimesh and plyfile: every format, parts, colours, labels, the mesh PLY writer."""

import numpy as np
import pytest
import trimesh
from plyfile import PlyData, PlyElement

from segany.formats import detect_format, load_scene, load_scene_with_labels, write_labelled_ply, write_mesh_ply
from segany.scene import MeshScene


def two_parts() -> tuple[trimesh.Trimesh, trimesh.Trimesh]:
    box = trimesh.creation.box()
    ball = trimesh.creation.icosphere(subdivisions=1)
    ball.apply_translation([3.0, 0, 0])
    return box, ball


@pytest.mark.parametrize("ext", ["obj", "ply", "off", "stl", "glb"])
def test_single_mesh_every_format(tmp_path, ext):
    box = trimesh.creation.box()
    path = tmp_path / f"box.{ext}"
    box.export(path)
    s = load_scene(path)
    assert isinstance(s, MeshScene)
    assert len(s.faces) == 12 and len(s.vertices) == 8
    assert s.face_parts is None
    # same geometry: every triangle's area and the total volume match
    m = trimesh.Trimesh(s.vertices, s.faces, process=False)
    assert m.area == pytest.approx(box.area, rel=1e-6)
    assert abs(m.volume) == pytest.approx(box.volume, rel=1e-6)


@pytest.mark.parametrize("ext", ["glb", "gltf", "obj"])
def test_multi_part_files_keep_part_ids(tmp_path, ext):
    box, ball = two_parts()
    path = tmp_path / f"parts.{ext}"
    trimesh.Scene({"box": box, "ball": ball}).export(path)
    s = load_scene(path, allow_references=ext == "gltf")  # trimesh writes a .gltf's buffers to .bin files
    assert s.face_parts is not None
    sizes = sorted(np.bincount(s.face_parts).tolist())
    assert sizes == sorted([len(box.faces), len(ball.faces)])
    assert len(s.vertices) == len(box.vertices) + len(ball.vertices)  # unused vertices of each part dropped
    # the faces of the part with the ball's face count lie around x = 3
    ball_part = int(np.argmax(np.bincount(s.face_parts) == len(ball.faces)))
    centers = s.vertices[s.faces[s.face_parts == ball_part]].mean(axis=(0, 1))
    assert centers[0] == pytest.approx(3.0, abs=0.05)


def test_glb_node_transforms_are_applied(tmp_path):
    box, _ = two_parts()
    sc = trimesh.Scene()
    sc.add_geometry(box, node_name="a", transform=trimesh.transformations.translation_matrix([0, 0, 5]))
    sc.add_geometry(box.copy(), node_name="b")
    sc.export(tmp_path / "t.glb")
    s = load_scene(tmp_path / "t.glb")
    z = [s.vertices[s.faces[s.face_parts == p]][..., 2].mean() for p in (0, 1)]
    assert sorted(np.round(z, 3)) == [0.0, 5.0]


@pytest.mark.parametrize("ext", ["ply", "glb"])
def test_vertex_colours_are_kept(tmp_path, ext):
    box = trimesh.creation.box()
    rgba = np.zeros((8, 4), np.uint8)
    rgba[:, 0] = np.arange(8) * 30
    rgba[:, 3] = 255
    box.visual.vertex_colors = rgba
    box.export(tmp_path / f"c.{ext}")
    s = load_scene(tmp_path / f"c.{ext}")
    assert s.vertex_colors is not None
    # vertex order may differ between formats: compare colours by position
    order_ref = np.lexsort(box.vertices.T)
    order = np.lexsort(s.vertices.T)
    np.testing.assert_allclose(s.vertex_colors[order, 0], rgba[order_ref, 0] / 255.0, atol=1 / 255)


def test_ply_polygons_labels_and_parts(tmp_path):
    """A quad and a triangle with face labels: the quad is fan-split and its label repeated."""
    v = np.array([(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0), (0, 0, 1)], dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    faces = np.empty(2, dtype=[("vertex_indices", "O"), ("label", "i4")])
    faces["vertex_indices"] = [np.array([0, 1, 2, 3]), np.array([0, 1, 4])]
    faces["label"] = [7, 9]
    for text in (False, True):
        path = tmp_path / f"poly_{text}.ply"
        PlyData([PlyElement.describe(v, "vertex"), PlyElement.describe(faces, "face")], text=text).write(str(path))
        s, labels = load_scene_with_labels(path)
        np.testing.assert_array_equal(s.faces, [[0, 1, 2], [0, 2, 3], [0, 1, 4]])
        np.testing.assert_array_equal(labels, [7, 7, 9])


def test_psb_style_off_keeps_face_order(tmp_path):
    text = "OFF\n4 4 0\n0 0 0\n1 0 0\n0 1 0\n0 0 1\n3 0 2 1\n3 0 1 3\n3 0 3 2\n3 1 2 3\n"
    (tmp_path / "t.off").write_text(text)
    s = load_scene(tmp_path / "t.off")
    np.testing.assert_array_equal(s.faces, [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])


def test_write_mesh_ply_scores_and_colours(tmp_path):
    box = trimesh.creation.box()
    s = MeshScene(box.vertices, box.faces)
    scores = np.linspace(0, 1, 8).astype(np.float32)
    colors = np.tile([1.0, 0.5, 0.0], (8, 1))
    write_mesh_ply(tmp_path / "out.ply", s, scores=scores, colors=colors)
    ply = PlyData.read(str(tmp_path / "out.ply"))
    vtx = ply["vertex"]
    assert vtx.ply_property("score").val_dtype == "f4"
    assert vtx.ply_property("red").val_dtype == "u1"
    np.testing.assert_array_equal(vtx["score"], scores)
    np.testing.assert_array_equal(vtx["green"], np.full(8, 128))
    back = load_scene(tmp_path / "out.ply")
    np.testing.assert_array_equal(back.faces, s.faces)
    np.testing.assert_array_equal(back.vertices, s.vertices)
    np.testing.assert_allclose(back.vertex_colors, colors, atol=1 / 255)
    # trimesh, an independent reader, sees the same mesh
    tm = trimesh.load(tmp_path / "out.ply", process=False)
    np.testing.assert_array_equal(tm.faces, s.faces)


def test_mesh_labels_round_trip(tmp_path):
    box, ball = two_parts()
    trimesh.Scene({"box": box, "ball": ball}).export(tmp_path / "p.glb")
    s = load_scene(tmp_path / "p.glb")
    face_labels = (np.arange(len(s.faces)) % 5).astype(np.int32)
    write_labelled_ply(tmp_path / "f.ply", s, face_labels)
    back, got = load_scene_with_labels(tmp_path / "f.ply")
    np.testing.assert_array_equal(got, face_labels)
    np.testing.assert_array_equal(back.face_parts, s.face_parts)
    vertex_labels = np.arange(len(s.vertices)) % 3
    write_labelled_ply(tmp_path / "v.ply", s, vertex_labels)
    np.testing.assert_array_equal(load_scene_with_labels(tmp_path / "v.ply")[1], vertex_labels)


def test_content_beats_extension(tmp_path):
    box = trimesh.creation.box()
    box.export(tmp_path / "box.ply")
    (tmp_path / "box.data").write_bytes((tmp_path / "box.ply").read_bytes())
    assert detect_format(tmp_path / "box.data") == "ply"
    assert len(load_scene(tmp_path / "box.data").faces) == 12


def test_a_large_mesh_ply_round_trips(tmp_path):
    """327,680 triangles through the numpy-packed writer and the memory-mapped face reader (their speed is a
    benchmark's business, not a test's)."""
    m = trimesh.creation.icosphere(subdivisions=7)
    s = MeshScene(m.vertices, m.faces)
    scores = np.linspace(0.0, 1.0, len(s.vertices), dtype=np.float32)
    write_mesh_ply(tmp_path / "big.ply", s, scores=scores)
    back = load_scene(tmp_path / "big.ply")
    np.testing.assert_array_equal(back.faces, s.faces)
    np.testing.assert_array_equal(back.vertices, s.vertices)


def test_obj_groups_are_parts(tmp_path):
    text = "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\ng top\nf 1 2 3\nf 1 2 4\ng side\nf 1 3 4\n"
    (tmp_path / "g.obj").write_text(text)
    s = load_scene(tmp_path / "g.obj")
    assert sorted(np.bincount(s.face_parts).tolist()) == [1, 2]
    assert len(s.vertices) == 4 + 3  # each part keeps only the vertices it uses
