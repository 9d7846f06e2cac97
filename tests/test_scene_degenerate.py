"""Geometry every method would fail on later is refused at load with the reason; odd but workable geometry loads.

Issue 16 class 6: identical or collinear vertices, magnitudes near float max, and the spectral embedding's
eigen-solver giving up on many elements seen in few regions.
"""

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import trimesh

from segany.cameras import Cameras, cameras_for_scene, near_plane
from segany.errors import SegAnyError
from segany.formats import load_scene
from segany.priors import geometric
from segany.scene import MeshScene, PointScene, SplatScene


def code(fn, *args, **kw) -> SegAnyError:
    with pytest.raises(SegAnyError) as info:
        fn(*args, **kw)
    return info.value


def mesh_file(path: Path, vertices: np.ndarray, faces: np.ndarray) -> Path:
    """A binary PLY: float32 coordinates exactly, where an OBJ's decimals would round tiny ones to zero."""
    trimesh.Trimesh(vertices, faces, process=False).export(path)
    return path


STRIP = np.array([[i, i + 1, i + 2] for i in range(8)])


@pytest.mark.parametrize(
    "vertices",
    [np.ones((10, 3)), np.outer(np.arange(10.0), [1.0, 2.0, 3.0]), np.outer(np.arange(10.0), [0.0, 0.0, 1.0])],
    ids=["identical", "on a slanted line", "on an axis"],
)
def test_a_mesh_without_area_is_refused_at_load(tmp_path, vertices):
    e = code(load_scene, mesh_file(tmp_path / "m.ply", vertices, STRIP))
    assert e.code == "invalid_geometry" and "zero area" in e.message


def test_flat_and_tiny_meshes_load_without_degenerate_faces(tmp_path):
    box = trimesh.creation.box()
    flat = box.vertices.copy()
    flat[:, 2] = 0.0  # zero extent along one axis: a plane is a surface
    plane = load_scene(mesh_file(tmp_path / "flat.ply", flat, box.faces))
    assert plane.n_elements == 8 and len(cameras_for_scene(plane, 4, 32, 32)) == 4
    ico = trimesh.creation.icosphere(subdivisions=1)
    # a picometre-sized sphere: its squared edge lengths underflow float32, its faces are still fine
    tiny = load_scene(mesh_file(tmp_path / "tiny.ply", ico.vertices * 1e-12, ico.faces))
    assert not any("degenerate" in w for w in tiny.warnings), tiny.warnings


def test_points_at_one_place_are_refused_but_a_line_of_points_loads(tmp_path):
    np.savez(tmp_path / "same.npz", xyz=np.ones((20, 3)))
    e = code(load_scene, tmp_path / "same.npz")
    assert e.code == "invalid_geometry" and "same point" in e.message
    np.savez(tmp_path / "line.npz", xyz=np.outer(np.arange(20.0), [1.0, 2.0, 3.0]))
    assert load_scene(tmp_path / "line.npz").n_elements == 20


def test_coordinates_near_float_max_are_refused_at_load(tmp_path):
    ico = trimesh.creation.icosphere(subdivisions=1)
    e = code(load_scene, mesh_file(tmp_path / "huge.ply", ico.vertices * 1e38, ico.faces))
    assert e.code == "invalid_geometry" and "float32" in e.message
    assert load_scene(mesh_file(tmp_path / "big.ply", ico.vertices * 1e17, ico.faces)).n_elements == len(ico.vertices)
    rng = np.random.default_rng(0)
    e = code(PointScene, rng.uniform(-3e38, 3e38, (50, 3)))
    assert e.code == "invalid_geometry" and "float32" in e.message
    n = 4
    splats = dict(means=rng.normal(size=(n, 3)), quats=np.tile([1.0, 0, 0, 0], (n, 1)), log_scales=np.zeros((n, 3)),
                  logit_opacities=np.zeros(n), sh=np.zeros((n, 1, 3)))  # fmt: skip
    assert code(SplatScene, **{**splats, "means": splats["means"] * 1e37}).code == "invalid_geometry"
    e = code(SplatScene, **{**splats, "log_scales": np.full((n, 3), 100.0)})
    assert e.code == "invalid_geometry" and "log-scale" in e.message


def test_cameras_past_float32_say_so_instead_of_nan():
    viewmats = np.eye(4)[None].copy()
    viewmats[0, 2, 3] = 1e39
    e = code(Cameras, viewmats, np.eye(3)[None], 32, 32)
    assert e.code == "invalid_array" and "float32" in e.message and "NaN" not in e.message
    viewmats[0, 2, 3] = np.nan
    assert "NaN" in code(Cameras, viewmats, np.eye(3)[None], 32, 32).message


def test_spectral_embedding_survives_arpack_giving_up(monkeypatch):
    """ARPACK fails on tight clusters of singular values near 1, which a scene of many elements seen in few
    regions gives (measured: 300k elements × 100 regions, ~30 s before it gives up). That is too slow for a
    test, so ARPACK's give-up is simulated (svds raises for its default solver) and the fallback must give the
    embedding ARPACK gives when it converges, up to a rotation: the same inner products between elements."""
    rng = np.random.default_rng(0)
    a = sp.random(600, 120, density=0.05, random_state=1, format="csr") + sp.eye(600, 120, format="csr")
    a.data = np.abs(a.data) + rng.uniform(0.1, 1.0, a.nnz)
    dim = 7
    converged = geometric._spectral(a, dim)
    real_svds = geometric.svds

    def arpack_gives_up(z, k, **kw):
        if kw.get("solver", "arpack") == "arpack":
            raise geometric.ArpackNoConvergence("simulated", np.zeros(0), np.zeros((0, 0)))
        return real_svds(z, k, **kw)

    monkeypatch.setattr(geometric, "svds", arpack_gives_up)
    fallback = geometric._spectral(a, dim)
    assert fallback.shape == converged.shape and np.isfinite(fallback).all()
    np.testing.assert_allclose(fallback @ fallback.T, converged @ converged.T, atol=0.05)


@pytest.mark.parametrize("size", [1.0, 1e-4, 1e-6])
def test_small_scenes_are_seen_by_the_orbit_cameras(size):
    """The rasterizers' near planes (1e-3 units for meshes, 0.01 for Gaussians) used to clip a scene under
    ~4e-4 units away entirely; the near plane now shrinks with the scene and stays put for larger ones."""
    from segany.render import render
    from segany.render.mesh import KERNEL_NEAR

    ico = trimesh.creation.icosphere(subdivisions=2)
    rng = np.random.default_rng(0)
    for scene in (MeshScene(ico.vertices * size, ico.faces), PointScene(rng.normal(size=(300, 3)) * size)):
        views = render(scene, cameras_for_scene(scene, 2, 32, 32)).views
        assert (views.ids >= 0).mean() > 0.5, (scene.kind, size)
    assert near_plane(MeshScene(ico.vertices, ico.faces), KERNEL_NEAR) == KERNEL_NEAR
