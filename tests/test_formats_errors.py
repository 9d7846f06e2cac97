"""Every way a scene file can be wrong gets its own code and a message a person can act on."""

import os
import resource
import struct
from pathlib import Path

import numpy as np
import pytest
import trimesh
from plyfile import PlyData, PlyElement

from segany.errors import SegAnyError
from segany.formats import load_scene, write_labelled_ply, write_mesh_ply
from segany.scene import MeshScene

TINY = {"max_elements": 10, "max_faces": 10}


def code(fn, *args, **kw) -> SegAnyError:
    with pytest.raises(SegAnyError) as info:
        fn(*args, **kw)
    assert info.value.message  # always a sentence, never empty
    return info.value


def mesh_ply(path: Path, verts: np.ndarray, faces: np.ndarray, text: bool = False) -> Path:
    v = np.array([tuple(p) for p in verts], dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    f = np.empty(len(faces), dtype=[("vertex_indices", "i4", (3,))])
    f["vertex_indices"] = faces
    PlyData([PlyElement.describe(v, "vertex"), PlyElement.describe(f, "face")], text=text).write(str(path))
    return path


TETRA_V = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
TETRA_F = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])


def test_missing_file_and_directory(tmp_path):
    assert code(load_scene, tmp_path / "nope.ply").code == "not_found"
    assert code(load_scene, tmp_path).code == "not_found"


def test_unknown_format(tmp_path):
    (tmp_path / "a.docx").write_bytes(b"\x00\x01 hello")
    e = code(load_scene, tmp_path / "a.docx")
    assert e.code == "unknown_format" and ".ply" in e.message


def test_garbage_with_a_ply_name(tmp_path):
    (tmp_path / "g.ply").write_bytes(os.urandom(2000))
    assert code(load_scene, tmp_path / "g.ply").code == "corrupt_file"
    (tmp_path / "h.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex zz\nend_header\n")
    assert code(load_scene, tmp_path / "h.ply").code == "corrupt_file"
    (tmp_path / "e.ply").write_bytes(b"")
    assert code(load_scene, tmp_path / "e.ply").code == "corrupt_file"


@pytest.mark.parametrize("text", [False, True])
def test_truncated_ply(tmp_path, text):
    path = mesh_ply(tmp_path / "t.ply", TETRA_V, TETRA_F, text=text)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 20])
    e = code(load_scene, path)
    assert e.code == "corrupt_file"


def test_header_promising_huge_counts_is_refused_before_allocating(tmp_path):
    """A 100-byte file that claims 10^11 faces: refused from the header, memory stays flat."""
    header = b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
    header += b"property float z\nelement face 100000000000\nproperty list uchar int vertex_indices\nend_header\n"
    (tmp_path / "huge.ply").write_bytes(header + bytes(36 + 13))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    e = code(load_scene, tmp_path / "huge.ply", limits={"max_faces": 10**12})
    assert e.code == "corrupt_file" and "truncated" in e.message
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB: nothing big allocated
    assert code(load_scene, tmp_path / "huge.ply").code == "too_large"  # default limit hits first


def test_nan_vertex(tmp_path):
    v = TETRA_V.copy()
    v[2, 1] = np.nan
    e = code(load_scene, mesh_ply(tmp_path / "n.ply", v, TETRA_F))
    assert e.code == "invalid_geometry" and "NaN" in e.message
    (tmp_path / "n.xyz").write_text("0 0 0\n1 nan 1\n")
    assert code(load_scene, tmp_path / "n.xyz").code == "invalid_geometry"
    (tmp_path / "i.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 inf 0\nf 1 2 3\n")
    assert code(load_scene, tmp_path / "i.obj").code == "invalid_geometry"


def test_face_index_out_of_range(tmp_path):
    e = code(load_scene, mesh_ply(tmp_path / "o.ply", TETRA_V, TETRA_F + 1))
    assert e.code == "invalid_geometry" and "4 vertices" in e.message
    (tmp_path / "o.off").write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n")
    assert code(load_scene, tmp_path / "o.off").code == "invalid_geometry"
    (tmp_path / "o.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n")
    assert code(load_scene, tmp_path / "o.obj").code == "invalid_geometry"


def test_empty_geometry(tmp_path):
    header = (
        b"ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
    )
    (tmp_path / "empty.ply").write_bytes(header)
    assert code(load_scene, tmp_path / "empty.ply").code == "invalid_geometry"
    (tmp_path / "empty.obj").write_text("# nothing\n")
    assert code(load_scene, tmp_path / "empty.obj").code == "invalid_geometry"
    (tmp_path / "empty.xyz").write_text("# nothing\n")
    assert code(load_scene, tmp_path / "empty.xyz").code == "invalid_geometry"


def test_degenerate_faces_are_kept_and_reported(tmp_path):
    faces = np.vstack([TETRA_F, [[0, 1, 1]], [[0, 0, 0]]])
    s = load_scene(mesh_ply(tmp_path / "d.ply", TETRA_V, faces))
    assert len(s.faces) == 6
    assert any("2 degenerate" in w for w in s.warnings)


def test_wrong_shapes_and_dtypes(tmp_path):
    np.savez(tmp_path / "a.npz", xyz=np.zeros((5, 2)))
    assert code(load_scene, tmp_path / "a.npz").code == "invalid_array"
    np.savez(tmp_path / "b.npz", xyz=np.zeros((5, 3)), rgb=np.zeros((4, 3)))
    assert code(load_scene, tmp_path / "b.npz").code == "invalid_array"
    np.savez(tmp_path / "c.npz", something=np.zeros(3))
    assert code(load_scene, tmp_path / "c.npz").code == "invalid_array"
    np.savez(tmp_path / "d.npz", xyz=np.array([object(), 1], dtype=object))
    assert code(load_scene, tmp_path / "d.npz").code == "invalid_array"
    (tmp_path / "e.npz").write_bytes(b"PK\x03\x04" + os.urandom(100))
    assert code(load_scene, tmp_path / "e.npz").code == "corrupt_file"
    (tmp_path / "f.xyz").write_text("0 0\n1 1\n")
    assert code(load_scene, tmp_path / "f.xyz").code == "corrupt_file"
    m = MeshScene(TETRA_V, TETRA_F)
    assert code(write_mesh_ply, tmp_path / "w.ply", m, scores=np.zeros(3)).code == "invalid_array"
    assert code(write_mesh_ply, tmp_path / "w.ply", m, colors=np.zeros((4, 4))).code == "invalid_array"
    assert code(write_labelled_ply, tmp_path / "w.ply", m, np.zeros(7)).code == "invalid_array"


@pytest.mark.parametrize("ext", ["ply", "obj", "off", "stl", "glb"])
def test_mesh_over_the_limit(tmp_path, ext):
    ico = trimesh.creation.icosphere(subdivisions=1)  # 42 vertices, 80 faces
    ico.export(tmp_path / f"m.{ext}")
    e = code(load_scene, tmp_path / f"m.{ext}", limits=TINY)
    assert e.code == "too_large" and "limit" in e.message
    assert load_scene(tmp_path / f"m.{ext}", limits={"max_elements": 1000, "max_faces": 1000}).n_elements == 42


def test_points_over_the_limit(tmp_path):
    np.savez(tmp_path / "p.npz", xyz=np.zeros((11, 3)))
    assert code(load_scene, tmp_path / "p.npz", limits=TINY).code == "too_large"
    (tmp_path / "p.xyz").write_text("0 0 0\n" * 11)
    assert code(load_scene, tmp_path / "p.xyz", limits=TINY).code == "too_large"


def test_corrupt_trimesh_formats(tmp_path):
    (tmp_path / "b.glb").write_bytes(b"glTF" + struct.pack("<III", 2, 10**9, 10**8) + b"JSON")
    assert code(load_scene, tmp_path / "b.glb").code == "corrupt_file"
    (tmp_path / "b.stl").write_bytes(b"\x00" * 80 + struct.pack("<I", 1000) + b"\x00" * 50)
    assert code(load_scene, tmp_path / "b.stl").code == "corrupt_file"
    (tmp_path / "b.off").write_text("OFF\nnot numbers\n")
    assert code(load_scene, tmp_path / "b.off").code == "corrupt_file"
    (tmp_path / "t.off").write_text("OFF\n4 2 0\n0 0 0\n1 0 0\n")
    assert code(load_scene, tmp_path / "t.off").code == "corrupt_file"


def test_unwritable_target(tmp_path):
    m = MeshScene(TETRA_V, TETRA_F)
    assert code(write_mesh_ply, tmp_path / "no" / "such" / "dir.ply", m).code == "io_error"
    (tmp_path / "a_file").write_text("x")
    assert code(write_mesh_ply, tmp_path / "a_file" / "m.ply", m).code == "io_error"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_interrupted_write_keeps_the_old_file(tmp_path):
    """A disk that fills up mid-write (simulated: the writer raises ENOSPC after some bytes) changes nothing."""
    import errno

    from segany.formats.writers import atomic_write

    target = tmp_path / "m.ply"
    write_mesh_ply(target, MeshScene(TETRA_V, TETRA_F))
    before = target.read_bytes()

    def half_then_full(f):
        f.write(b"ply\nformat binary_little_endian 1.0\n")
        raise OSError(errno.ENOSPC, "No space left on device")

    e = code(atomic_write, target, half_then_full)
    assert e.code == "io_error" and "No space left" in e.message
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.ply"]  # no temp file left behind
