"""Camera convention, view samplers and the Blender conversion in pure numpy."""

import numpy as np
import pytest

from segany.cameras import (
    Cameras,
    bounding_sphere,
    cameras_for_scene,
    follow_camera,
    from_blender,
    look_at,
    orbit_cameras,
    to_blender,
)
from segany.errors import SegAnyError
from segany.scene import PointScene


def project(cams: Cameras, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (B, N, 2) and camera depths (B, N) of world points."""
    homo = np.concatenate([pts, np.ones((len(pts), 1))], axis=1)
    cam = np.einsum("bij,nj->bni", cams.viewmats.astype(np.float64), homo)[..., :3]
    uvw = np.einsum("bij,bnj->bni", cams.Ks.astype(np.float64), cam)
    return uvw[..., :2] / uvw[..., 2:], cam[..., 2]


def test_projection_of_known_points():
    """Camera at (0, -5, 0) looking along +y with z up: x right, z up in the image (v decreases)."""
    vm = look_at(np.array([0.0, -5, 0]), np.zeros(3))
    k = np.array([[100.0, 0, 64], [0, 100, 48], [0, 0, 1]])
    cams = Cameras(vm[None], k[None], 128, 96)
    uv, depth = project(cams, np.array([[0.0, 0, 0], [1, 0, 0], [0, 0, 1], [0, 5, 0]]))
    np.testing.assert_allclose(uv[0, 0], [64, 48], atol=1e-4)
    np.testing.assert_allclose(uv[0, 1], [64 + 20, 48], atol=1e-4)  # 1 unit right at depth 5 -> 100/5 px
    np.testing.assert_allclose(uv[0, 2], [64, 48 - 20], atol=1e-4)  # up in the world is up in the image
    np.testing.assert_allclose(depth[0], [5, 5, 5, 10], atol=1e-5)
    np.testing.assert_allclose(cams.centers[0], [0, -5, 0], atol=1e-5)


def test_orbit_cameras_see_the_centre_and_the_whole_sphere():
    center, radius = np.array([1.0, -2.0, 0.5]), 2.0
    cams = orbit_cameras(center, radius, 40, 160, 120, fov_deg=50)
    assert len(cams) == 40
    uv, depth = project(cams, center[None])
    np.testing.assert_allclose(uv[:, 0], np.tile([80, 60], (40, 1)), atol=1e-3)
    dist = np.linalg.norm(cams.centers - center, axis=1)
    np.testing.assert_allclose(dist, radius / np.sin(np.radians(25)), rtol=1e-5)
    # every point of the sphere is in front and inside the image
    rng = np.random.default_rng(0)
    d = rng.normal(size=(500, 3))
    pts = center + radius * d / np.linalg.norm(d, axis=1, keepdims=True)
    uv, depth = project(cams, pts)
    assert (depth > 0).all()
    assert (uv[..., 0] >= -1e-3).all() and (uv[..., 0] <= 160 + 1e-3).all()
    assert (uv[..., 1] >= -1e-3).all() and (uv[..., 1] <= 120 + 1e-3).all()
    # elevations stay in the band and the views are spread out (no two cameras nearly coincide)
    dirs = (cams.centers - center) / dist[:, None]
    elev = np.degrees(np.arcsin(dirs[:, 2]))
    assert elev.min() >= -30 - 1e-4 and elev.max() <= 60 + 1e-4
    cos = dirs @ dirs.T - 2 * np.eye(40)
    assert np.degrees(np.arccos(cos.max())) > 10
    # image up is world up: the camera's x axis is horizontal
    assert np.abs(cams.viewmats[:, 0, 2]).max() < 1e-6


def test_orbit_seed_and_full_sphere():
    a = orbit_cameras(np.zeros(3), 1.0, 8, 64, 64, seed=0)
    b = orbit_cameras(np.zeros(3), 1.0, 8, 64, 64, seed=1)
    assert not np.allclose(a.viewmats, b.viewmats)
    full = orbit_cameras(np.zeros(3), 1.0, 12, 64, 64, elevation_range=(-90, 90))
    assert np.isfinite(full.viewmats).all()
    with pytest.raises(SegAnyError):
        orbit_cameras(np.zeros(3), 0.0, 8, 64, 64)


def test_cameras_for_scene_uses_the_bounding_sphere():
    rng = np.random.default_rng(2)
    xyz = rng.uniform(-1, 1, size=(200, 3)) * [3, 1, 0.5] + [10, 0, 0]
    scene = PointScene(xyz=xyz)
    center, radius = bounding_sphere(scene)
    assert np.linalg.norm(scene.xyz - center, axis=1).max() <= radius + 1e-5
    cams = cameras_for_scene(scene, 6, 96, 64, fov_deg=40)
    uv, depth = project(cams, scene.xyz.astype(np.float64))
    assert (depth > 0).all() and (uv[..., 1] >= 0).all() and (uv[..., 1] <= 64).all()


def test_follow_camera():
    vm = look_at(np.array([4.0, -6, 3]), np.array([0.5, 0, 0.2]))
    k = np.array([[120.0, 0, 70], [0, 120, 50], [0, 0, 1]])
    target = np.array([0.5, 0, 0.2])
    cams = follow_camera(vm, k, 140, 100, 9, jitter_deg=12, target=target)
    np.testing.assert_allclose(cams.viewmats[0], vm, atol=1e-6)
    uv, _ = project(cams, target[None])
    np.testing.assert_allclose(uv[:, 0], np.tile([70, 50], (9, 1)), atol=1e-3)
    d0 = np.linalg.norm(cams.centers[0] - target)
    np.testing.assert_allclose(np.linalg.norm(cams.centers - target, axis=1), d0, rtol=1e-5)
    angles = np.degrees(np.arccos(((cams.centers - target) / d0) @ ((cams.centers[0] - target) / d0)).clip(-1, 1))
    assert angles[1:].max() <= 12 + 1e-3 and angles[1:].min() > 0.5
    # default target: the point on the view axis nearest the origin
    dflt = follow_camera(vm, k, 140, 100, 3)
    assert len(dflt) == 3


@pytest.mark.parametrize("fit", ["AUTO", "HORIZONTAL", "VERTICAL"])
@pytest.mark.parametrize("res", [(640, 480), (300, 500)])
def test_from_blender_axes_and_intrinsics(fit, res):
    """A Blender camera at the origin with identity rotation looks down -Z with +Y up."""
    rx, ry = res
    cams = from_blender(np.eye(4), 50.0, 36.0, 24.0, fit, rx, ry, 0.1, -0.05)
    uv, depth = project(cams, np.array([[0.0, 0, -10], [0, 1, -10], [1, 0, -10]]))
    assert depth[0, 0] == pytest.approx(10)
    assert uv[0, 1, 1] < uv[0, 0, 1]  # +Y (up) is smaller v
    assert uv[0, 2, 0] > uv[0, 0, 0]  # +X is right
    horizontal = fit == "HORIZONTAL" or (fit == "AUTO" and rx >= ry)
    side = rx if horizontal else ry
    sensor = 24.0 if fit == "VERTICAL" else 36.0
    assert cams.Ks[0, 0, 0] == pytest.approx(50.0 * side / sensor, rel=1e-5)
    assert cams.Ks[0, 0, 2] == pytest.approx(rx / 2 - 0.1 * side, rel=1e-5)
    assert cams.Ks[0, 1, 2] == pytest.approx(ry / 2 - 0.05 * side, rel=1e-5)


def test_blender_round_trip_numpy():
    rng = np.random.default_rng(3)
    for res in [(640, 480), (256, 512), (300, 300)]:
        vm = look_at(rng.normal(size=3) * 5, rng.normal(size=3))
        k = np.array([[400.0, 0, res[0] / 2 + 13], [0, 400.0, res[1] / 2 - 7], [0, 0, 1]])
        cams = Cameras(vm[None], k[None], *res)
        b = to_blender(cams, 0)
        back = from_blender(
            np.array(b["matrix_world"]), b["lens"], b["sensor_width"], 24.0, b["sensor_fit"],
            b["res_x"], b["res_y"], b["shift_x"], b["shift_y"],
        )  # fmt: skip
        np.testing.assert_allclose(back.viewmats, cams.viewmats, atol=1e-5)
        np.testing.assert_allclose(back.Ks, cams.Ks, rtol=1e-5)


def test_from_blender_ignores_object_scale():
    m = np.diag([2.0, 2.0, 2.0, 1.0])
    m[:3, 3] = [1, 2, 3]
    a = from_blender(m, 35, 36, 24, "AUTO", 100, 100)
    m[:3, :3] = np.eye(3)
    b = from_blender(m, 35, 36, 24, "AUTO", 100, 100)
    np.testing.assert_allclose(a.viewmats, b.viewmats, atol=1e-6)
    with pytest.raises(SegAnyError):
        from_blender(m, 35, 36, 24, "SIDEWAYS", 100, 100)


def test_splat_views_report_the_camera_depth_of_a_semi_transparent_splat():
    """A lone splat at 60% opacity, 5 units in front of the camera: the depth map says 5, not 5 / alpha."""
    from segany.render import render
    from segany.scene import SplatScene

    scene = SplatScene(
        means=np.zeros((1, 3), np.float32),
        quats=np.array([[1.0, 0, 0, 0]], np.float32),
        log_scales=np.full((1, 3), np.log(0.5), np.float32),
        logit_opacities=np.array([np.log(0.6 / 0.4)], np.float32),
        sh=np.zeros((1, 1, 3), np.float32),
    )
    cams = Cameras(
        viewmats=look_at(np.array([0.0, -5.0, 0.0]), np.zeros(3))[None].astype(np.float32),
        Ks=np.array([[[40.0, 0, 16], [0, 40.0, 16], [0, 0, 1]]], np.float32),
        width=32,
        height=32,
    )
    views = render(scene, cams).views
    centre = views.depth[0, 16, 16]
    assert views.ids[0, 16, 16] == 0
    assert centre == pytest.approx(5.0, rel=0.02)
