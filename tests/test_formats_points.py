"""Point clouds: PLY (uchar / float colours, normals, labels), .xyz text, .npz archives, the point writer."""

from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from segany.formats import load_scene, load_scene_with_labels, write_labelled_ply, write_point_ply
from segany.samples import shared_data_dir
from segany.scene import PointScene

GARDEN = shared_data_dir() / "splats" / "garden_points.npz"


def point_ply(path: Path, n: int, color_dtype: str | None = "u1", normals: bool = True, labels: bool = True) -> dict:
    rng = np.random.default_rng(1)
    cols = {"x": rng.normal(size=n), "y": rng.normal(size=n), "z": rng.normal(size=n)}
    dtype = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    if normals:
        nrm = rng.normal(size=(n, 3))
        nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
        cols.update(nx=nrm[:, 0], ny=nrm[:, 1], nz=nrm[:, 2])
        dtype += [("nx", "f4"), ("ny", "f4"), ("nz", "f4")]
    if color_dtype:
        hi = 255 if color_dtype == "u1" else 1.0
        for c in ("red", "green", "blue"):
            cols[c] = (rng.uniform(0, hi, size=n)).astype(color_dtype)
            dtype.append((c, color_dtype))
    if labels:
        cols["label"] = rng.integers(0, 4, size=n)
        dtype.append(("label", "i4"))
    arr = np.empty(n, dtype=dtype)
    for k, v in cols.items():
        arr[k] = v
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(path))
    return cols


@pytest.mark.parametrize("color_dtype", ["u1", "f4", None])
def test_point_ply(tmp_path, color_dtype):
    cols = point_ply(tmp_path / "p.ply", 100, color_dtype)
    s, labels = load_scene_with_labels(tmp_path / "p.ply")
    assert isinstance(s, PointScene) and s.n_elements == 100
    np.testing.assert_array_equal(s.xyz[:, 1], cols["y"].astype(np.float32))
    np.testing.assert_array_equal(labels, cols["label"])
    np.testing.assert_array_equal(s.labels, cols["label"])
    np.testing.assert_allclose(s.normals[:, 2], cols["nz"], atol=1e-6)
    if color_dtype == "u1":
        np.testing.assert_allclose(s.rgb[:, 0], cols["red"] / 255.0, atol=1e-6)
    elif color_dtype == "f4":
        np.testing.assert_allclose(s.rgb[:, 2], cols["blue"], atol=1e-6)
    else:
        assert s.rgb is None


def test_point_writer_round_trip(tmp_path):
    point_ply(tmp_path / "p.ply", 64)
    s = load_scene(tmp_path / "p.ply")
    new = (np.arange(64) % 7).astype(np.int32)
    write_point_ply(tmp_path / "out.ply", s, labels=new)
    back, labels = load_scene_with_labels(tmp_path / "out.ply")
    np.testing.assert_array_equal(labels, new)
    np.testing.assert_array_equal(back.xyz, s.xyz)
    np.testing.assert_array_equal(back.normals, s.normals)
    np.testing.assert_allclose(back.rgb, s.rgb, atol=0.5 / 255)
    assert PlyData.read(str(tmp_path / "out.ply"))["vertex"].ply_property("label").val_dtype == "i4"
    write_labelled_ply(tmp_path / "l.ply", s, new[::-1])
    np.testing.assert_array_equal(load_scene_with_labels(tmp_path / "l.ply")[1], new[::-1])


def test_xyz_text(tmp_path):
    (tmp_path / "a.xyz").write_text("# a comment\n0 0 0\n1 2 3\n4 5 6.5\n")
    s = load_scene(tmp_path / "a.xyz")
    np.testing.assert_array_equal(s.xyz, [[0, 0, 0], [1, 2, 3], [4, 5, 6.5]])
    assert s.rgb is None
    (tmp_path / "b.xyz").write_text("0 0 0 255 0 0\n1 1 1 0 128 255\n")
    s = load_scene(tmp_path / "b.xyz")
    np.testing.assert_allclose(s.rgb, [[1, 0, 0], [0, 128 / 255, 1]])
    (tmp_path / "c.xyz").write_text("0 0 0 1 0 0\n1 1 1 0 0.5 1\n")
    np.testing.assert_allclose(load_scene(tmp_path / "c.xyz").rgb, [[1, 0, 0], [0, 0.5, 1]])


def test_garden_npz():
    s = load_scene(GARDEN)  # means3d + uint8 colors (+ cameras, ignored)
    assert isinstance(s, PointScene) and s.n_elements == 138_766
    with np.load(GARDEN) as z:
        np.testing.assert_array_equal(s.xyz, z["means3d"])
        np.testing.assert_allclose(s.rgb, z["colors"] / 255.0, atol=1e-6)


def test_npz_keys(tmp_path):
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(10, 3))
    np.savez(tmp_path / "a.npz", points=xyz, rgb=rng.uniform(size=(10, 3)), normals=xyz, labels=np.arange(10))
    s, labels = load_scene_with_labels(tmp_path / "a.npz")
    np.testing.assert_array_equal(labels, np.arange(10))
    np.testing.assert_allclose(s.normals, xyz, atol=1e-6)
    np.savez(tmp_path / "b.npz", xyz=xyz.astype(np.float32))
    assert load_scene(tmp_path / "b.npz").rgb is None
