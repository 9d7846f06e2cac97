"""Scene arrays: validation codes, limits before allocation, content hashing."""

import numpy as np
import pytest

from segany.errors import SegAnyError
from segany.scene import MeshScene, PointScene, SplatScene, scene_arrays, scene_from_arrays, scene_id


def tetra() -> MeshScene:
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    return MeshScene(v, f)


def code_of(fn) -> str:
    with pytest.raises(SegAnyError) as info:
        fn()
    return info.value.code


def test_mesh_validation_codes():
    m = tetra()
    assert code_of(lambda: MeshScene(np.zeros((0, 3)), np.zeros((0, 3)))) == "invalid_geometry"
    bad = m.vertices.copy()
    bad[2, 1] = np.nan
    assert code_of(lambda: MeshScene(bad, m.faces)) == "invalid_geometry"
    assert code_of(lambda: MeshScene(m.vertices, m.faces + 1)) == "invalid_geometry"
    assert code_of(lambda: MeshScene(m.vertices[:, :2], m.faces)) == "invalid_array"
    assert code_of(lambda: MeshScene(m.vertices.astype(str), m.faces)) == "invalid_array"
    assert code_of(lambda: MeshScene(m.vertices, m.faces, vertex_colors=np.ones((3, 3)))) == "invalid_array"


def test_degenerate_faces_kept_and_reported():
    m = tetra()
    faces = np.vstack([m.faces, [[0, 0, 1]]])
    d = MeshScene(m.vertices, faces)
    assert len(d.faces) == 5
    assert any("degenerate" in w for w in d.warnings)


def test_splat_and_point_validation():
    n = 5
    good = dict(
        means=np.zeros((n, 3)),
        quats=np.tile([1, 0, 0, 0], (n, 1)),
        log_scales=np.zeros((n, 3)),
        logit_opacities=np.zeros(n),
        sh=np.zeros((n, 4, 3)),
    )
    assert SplatScene(**good).sh_degree == 1
    assert code_of(lambda: SplatScene(**{**good, "sh": np.zeros((n, 3, 3))})) == "invalid_array"
    assert code_of(lambda: SplatScene(**{**good, "quats": np.zeros((n - 1, 4))})) == "invalid_array"
    assert code_of(lambda: PointScene(np.zeros((3, 3)), labels=np.zeros(2))) == "invalid_array"
    assert code_of(lambda: PointScene(np.full((3, 3), np.inf))) == "invalid_geometry"


def test_limits_checked_before_construction():
    arrays = scene_arrays(tetra())
    assert code_of(lambda: scene_from_arrays("mesh", arrays, {"max_elements": 3})) == "too_large"
    assert code_of(lambda: scene_from_arrays("cube", arrays)) == "bad_request"
    assert code_of(lambda: scene_from_arrays("mesh", {**arrays, "extra": np.zeros(3)})) == "invalid_array"


def test_scene_id_is_content_hash():
    a, b = tetra(), tetra()
    assert scene_id(a) == scene_id(b)
    moved = MeshScene(a.vertices + 1e-3, a.faces)
    assert scene_id(moved) != scene_id(a)
    assert scene_id(scene_from_arrays("mesh", scene_arrays(a))) == scene_id(a)
