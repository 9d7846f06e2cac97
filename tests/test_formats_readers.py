"""Readers read the named file and no other, never echo its bytes, and refuse half-made splat files (issue 16)."""

import base64
import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image
from plyfile import PlyData, PlyElement

from segany.errors import SegAnyError
from segany.formats import load_scene
from segany.formats.gaussians import SPLAT_REQUIRED
from segany.scene import PointScene

TINY = {"max_elements": 10, "max_faces": 10}
SECRET = "hunter2-do-not-echo"


def code(fn, *args, **kw) -> SegAnyError:
    with pytest.raises(SegAnyError) as info:
        fn(*args, **kw)
    assert SECRET not in info.value.message  # whatever went wrong, the file's text stays out of the message
    return info.value


def obj_with_material(tmp_path: Path) -> Path:
    """A red-textured OBJ whose .mtl and image sit in a folder beside it (trimesh resolves both from the OBJ's)."""
    (tmp_path / "materials").mkdir()
    Image.new("RGB", (2, 2), (255, 0, 0)).save(tmp_path / "materials" / "red.png")
    (tmp_path / "materials" / "red.mtl").write_text("newmtl red\nKd 1 1 1\nmap_Kd materials/red.png\n")
    obj = tmp_path / "tri.obj"
    obj.write_text(
        "mtllib materials/red.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\n"
        "vt 0 0\nvt 1 0\nvt 0 1\nvt 1 1\nusemtl red\nf 1/1 2/2 3/3\nf 1/1 3/3 4/4\n"
    )
    return obj


def test_obj_material_library_is_not_read_unless_allowed(tmp_path):
    obj = obj_with_material(tmp_path)
    refused = load_scene(obj)
    assert refused.vertex_colors is None or not np.allclose(refused.vertex_colors, [1, 0, 0])
    assert any("not read" in w and "allow" in w for w in refused.warnings), refused.warnings
    allowed = load_scene(obj, allow_references=True)
    np.testing.assert_allclose(allowed.vertex_colors, np.tile([1.0, 0.0, 0.0], (4, 1)), atol=1 / 255)
    assert not any("not read" in w for w in allowed.warnings)


def gltf_with_external_buffer(tmp_path: Path) -> Path:
    """A one-triangle glTF whose vertex buffer is a separate .bin file."""
    pts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=np.float32)
    (tmp_path / "tri.bin").write_bytes(pts.tobytes())
    doc = {
        "asset": {"version": "2.0"},
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
        "buffers": [{"byteLength": 36, "uri": "tri.bin"}],
        "bufferViews": [{"buffer": 0, "byteLength": 36}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
                       "min": [0, 0, 0], "max": [1, 1, 0]}],
    }  # fmt: skip
    path = tmp_path / "tri.gltf"
    path.write_text(json.dumps(doc))
    return path


def test_gltf_external_buffer_is_refused_unless_allowed(tmp_path):
    path = gltf_with_external_buffer(tmp_path)
    e = code(load_scene, path)
    assert e.code == "unsupported" and "allow" in e.message and "buffer" in e.message
    assert load_scene(path, allow_references=True).n_elements == 3
    # the same buffer inline (a data: URI) is part of the file and loads without permission
    doc = json.loads(path.read_text())
    doc["buffers"][0]["uri"] = (
        "data:application/octet-stream;base64," + base64.b64encode((tmp_path / "tri.bin").read_bytes()).decode()
    )
    path.write_text(json.dumps(doc))
    assert load_scene(path).n_elements == 3


def test_glb_image_elsewhere_is_not_read(tmp_path):
    box = trimesh.creation.box()
    box.export(tmp_path / "b.glb")
    raw = bytearray((tmp_path / "b.glb").read_bytes())
    json_len = int.from_bytes(raw[12:16], "little")
    doc = json.loads(raw[20 : 20 + json_len])
    doc["images"] = [{"uri": "../../etc/passwd"}]
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    rest = raw[20 + json_len :]
    out = b"glTF" + (2).to_bytes(4, "little") + (20 + len(text) + len(rest)).to_bytes(4, "little")
    out += len(text).to_bytes(4, "little") + b"JSON" + text + rest
    (tmp_path / "b.glb").write_bytes(out)
    scene = load_scene(tmp_path / "b.glb")  # the image is optional: the mesh loads, the reference is refused
    assert scene.n_elements == 8 and any("not read" in w for w in scene.warnings), scene.warnings


def test_messages_never_quote_the_file(tmp_path):
    (tmp_path / "a.xyz").write_text(f"0 0 0\n1 2 {SECRET}\n")
    e = code(load_scene, tmp_path / "a.xyz")
    assert e.code == "corrupt_file" and "data row 2, column 3" in e.message  # where, instead of what
    (tmp_path / "h.ply").write_bytes(f"ply\nformat ascii 1.0\nelement vertex {SECRET}\nend_header\n".encode())
    assert code(load_scene, tmp_path / "h.ply").code == "corrupt_file"
    (tmp_path / "d.ply").write_bytes(
        b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\n"
        + f"end_header\n0 0 0\n{SECRET} 1 1\n".encode()
    )
    assert code(load_scene, tmp_path / "d.ply").code == "corrupt_file"
    (tmp_path / "o.obj").write_text(f"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 {SECRET}\n")
    with pytest.raises(SegAnyError) as info:  # trimesh may also skip the bad face: then no face is left
        load_scene(tmp_path / "o.obj")
    assert SECRET not in info.value.message
    (tmp_path / "g.gltf").write_text('{"asset": {"version": "2.0"}, "meshes": [{"primitives": [{"attributes": '
                                     f'{{"POSITION": "{SECRET}"}}}}]}}]}}')  # fmt: skip
    assert code(load_scene, tmp_path / "g.gltf").code == "corrupt_file"


def splat_ply(path: Path, names: list[str], n: int = 5) -> Path:
    arr = np.zeros(n, dtype=[(k, "<f4") for k in names])
    for k in names:
        arr[k] = np.random.default_rng(0).normal(size=n)
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(path))
    return path


@pytest.mark.parametrize("drop", ["rot_3", "opacity", "f_dc_1", "scale_0"])
def test_splat_ply_missing_a_property_is_refused_by_name(tmp_path, drop):
    names = [k for k in SPLAT_REQUIRED if k != drop] + [f"f_rest_{i}" for i in range(9)]
    e = code(load_scene, splat_ply(tmp_path / "s.ply", names))
    assert e.code == "corrupt_file" and f"lacks {drop}" in e.message


def test_splat_ply_with_a_gap_in_f_rest_is_refused(tmp_path):
    names = [*SPLAT_REQUIRED, *(f"f_rest_{i}" for i in range(9) if i != 4)]
    e = code(load_scene, splat_ply(tmp_path / "s.ply", names))
    assert e.code == "corrupt_file" and "f_rest_4" in e.message


def test_plain_points_with_colours_are_still_points(tmp_path):
    scene = load_scene(splat_ply(tmp_path / "p.ply", ["x", "y", "z", "nx", "ny", "nz", "opacity"]))
    assert isinstance(scene, PointScene)


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_point_limit_holds_for_every_line_ending(tmp_path, ending):
    rows = [f"{i} {i % 3} {i % 5}" for i in range(11)]
    (tmp_path / "p.xyz").write_bytes(ending.join(rows).encode())
    assert code(load_scene, tmp_path / "p.xyz", limits=TINY).code == "too_large"
    assert load_scene(tmp_path / "p.xyz", limits={"max_elements": 11}).n_elements == 11


def test_obj_limit_holds_with_windows_line_endings(tmp_path):
    """trimesh splits OBJ lines at \n (after folding \r\n), so the pre-count does too; a lone \r is no line."""
    ico = trimesh.creation.icosphere(subdivisions=1)  # 42 vertices, 80 faces
    text = ico.export(file_type="obj").replace("\n", "\r\n")
    (tmp_path / "m.obj").write_bytes(text.encode())
    assert code(load_scene, tmp_path / "m.obj", limits=TINY).code == "too_large"
    assert load_scene(tmp_path / "m.obj").n_elements == 42


def test_npz_array_names_are_listed_briefly(tmp_path):
    np.savez(tmp_path / "a.npz", **{f"{SECRET}{i}" * 20: np.zeros(1) for i in range(200)})
    with pytest.raises(SegAnyError) as info:
        load_scene(tmp_path / "a.npz")
    assert info.value.code == "invalid_array" and len(info.value.message) < 1000 and "192 more" in info.value.message
