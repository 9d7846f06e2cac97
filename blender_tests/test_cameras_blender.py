"""Our Blender camera conversion against bpy's own projection (bpy_extras.object_utils.world_to_camera_view)."""

import bpy
import numpy as np
import pytest
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Matrix, Vector

from segany.cameras import Cameras, from_blender, look_at, to_blender


@pytest.fixture
def camera():
    """A real camera object in the current scene, removed afterwards."""
    scene = bpy.context.scene
    data = bpy.data.cameras.new("segany_test_cam")
    obj = bpy.data.objects.new("segany_test_cam", data)
    scene.collection.objects.link(obj)
    old_camera = scene.camera
    scene.camera = obj
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    yield scene, obj
    scene.camera = old_camera
    bpy.data.objects.remove(obj)
    bpy.data.cameras.remove(data)


def bpy_pixels(scene, obj, pts: np.ndarray) -> np.ndarray:
    """Pixel (u, v) from the top-left and depth, as Blender computes them."""
    rx, ry = scene.render.resolution_x, scene.render.resolution_y
    out = []
    for p in pts:
        ndc = world_to_camera_view(scene, obj, Vector(p.tolist()))
        out.append([ndc.x * rx, (1.0 - ndc.y) * ry, ndc.z])
    return np.array(out)


def our_pixels(cams: Cameras, pts: np.ndarray) -> np.ndarray:
    vm, k = cams.viewmats[0].astype(np.float64), cams.Ks[0].astype(np.float64)
    cam = (vm[:3, :3] @ pts.T).T + vm[:3, 3]
    uvw = (k @ cam.T).T
    return np.concatenate([uvw[:, :2] / uvw[:, 2:], cam[:, 2:]], axis=1)


CASES = [
    ("AUTO", 640, 480, 0.0, 0.0),
    ("AUTO", 300, 500, 0.15, -0.1),
    ("HORIZONTAL", 300, 500, 0.0, 0.2),
    ("HORIZONTAL", 512, 256, -0.1, 0.05),
    ("VERTICAL", 640, 360, 0.1, 0.1),
    ("VERTICAL", 200, 400, 0.0, 0.0),
    ("AUTO", 256, 256, 0.3, -0.3),
]


@pytest.mark.parametrize(("fit", "rx", "ry", "sx", "sy"), CASES)
def test_from_blender_matches_bpy_projection(camera, fit, rx, ry, sx, sy):
    scene, obj = camera
    cam = obj.data
    obj.location = (3.0, -4.0, 2.5)
    obj.rotation_euler = (1.1, 0.2, 0.6)
    obj.scale = (1.5, 1.5, 1.5)  # object scale must not change the view
    cam.lens, cam.sensor_width, cam.sensor_height, cam.sensor_fit = 35.0, 36.0, 20.0, fit
    cam.shift_x, cam.shift_y = sx, sy
    scene.render.resolution_x, scene.render.resolution_y = rx, ry
    bpy.context.view_layer.update()
    ours = from_blender(
        np.array(obj.matrix_world), cam.lens, cam.sensor_width, cam.sensor_height, cam.sensor_fit, rx, ry,
        cam.shift_x, cam.shift_y,
    )  # fmt: skip
    pts = np.random.default_rng(0).normal(size=(12, 3))
    np.testing.assert_allclose(our_pixels(ours, pts), bpy_pixels(scene, obj, pts), atol=1e-3)


@pytest.mark.parametrize("res", [(640, 480), (240, 400)])
def test_to_blender_round_trip_through_bpy(camera, res):
    """Our camera -> Blender settings on a real camera -> bpy projects points where we do."""
    scene, obj = camera
    rx, ry = res
    vm = look_at(np.array([5.0, -3.0, 2.0]), np.array([0.2, 0.1, 0.4]))
    k = np.array([[300.0, 0, rx / 2 + 20], [0, 300.0, ry / 2 - 15], [0, 0, 1]])
    ours = Cameras(vm[None], k[None], rx, ry)
    b = to_blender(ours, 0)
    obj.matrix_world = Matrix(b["matrix_world"])
    obj.data.lens, obj.data.sensor_width, obj.data.sensor_fit = b["lens"], b["sensor_width"], b["sensor_fit"]
    obj.data.shift_x, obj.data.shift_y = b["shift_x"], b["shift_y"]
    scene.render.resolution_x, scene.render.resolution_y = b["res_x"], b["res_y"]
    bpy.context.view_layer.update()
    pts = np.random.default_rng(1).normal(size=(10, 3))
    np.testing.assert_allclose(bpy_pixels(scene, obj, pts), our_pixels(ours, pts), atol=1e-3)
    back = from_blender(
        np.array(obj.matrix_world), obj.data.lens, obj.data.sensor_width, obj.data.sensor_height,
        obj.data.sensor_fit, rx, ry, obj.data.shift_x, obj.data.shift_y,
    )  # fmt: skip
    np.testing.assert_allclose(back.viewmats, ours.viewmats, atol=1e-5)
    np.testing.assert_allclose(back.Ks, ours.Ks, rtol=1e-5)
