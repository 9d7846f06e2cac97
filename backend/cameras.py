"""Cameras inside the backend use the OpenCV convention.

x right, y down, z forward; `viewmats` are world-to-camera 4×4; `Ks` are pixel intrinsics
[[fx, 0, cx], [0, fy, cy], [0, 0, 1]] with pixel centres at +0.5 (pixel (0, 0) covers [0, 1)²).
A world point X projects to u = fx·Xc/Zc + cx, v = fy·Yc/Zc + cy with Xc = R·X + t.

The world is Blender's: right-handed, +Z up. Blender's camera looks down its local −Z with +Y up and
+X right, so OpenCV camera axes = Blender camera axes × diag(1, −1, −1):
    viewmat = diag(1, −1, −1, 1) · inverse(normalised matrix_world).
Blender's intrinsics follow `BKE_camera_params_compute_viewplane`: the sensor fit picks the image side
the sensor size maps to (AUTO: sensor_width on the longer side; HORIZONTAL: sensor_width on the width;
VERTICAL: sensor_height on the height), f_px = lens · side_px / sensor_mm, and the shifts move the
principal point by shift · side_px (x to the left, y downwards in pixels, since Blender's y is up).
Square pixels are assumed (pixel_aspect 1) and render resolution is taken at 100 %.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import SegAnyError
from .scene import MeshScene, PointScene, Scene, SplatScene

WORLD_UP = np.array([0.0, 0.0, 1.0])
_FLIP = np.diag([1.0, -1.0, -1.0, 1.0])  # Blender camera axes <-> OpenCV camera axes


@dataclass
class Cameras:
    """A batch of B pinhole cameras sharing one image size."""

    viewmats: np.ndarray  # (B, 4, 4) float32, world -> camera (OpenCV)
    Ks: np.ndarray  # (B, 3, 3) float32
    width: int
    height: int

    def __post_init__(self) -> None:
        for name in ("viewmats", "Ks"):  # checked before the float32 cast, which turns values past 3.4e38 into Inf
            given = np.asarray(getattr(self, name), dtype=np.float64)
            if not np.isfinite(given).all():
                raise SegAnyError("invalid_array", f"camera {name} contain NaN or Inf")
            if np.abs(given).max(initial=0.0) > np.finfo(np.float32).max:
                raise SegAnyError(
                    "invalid_array",
                    f"camera {name} reach {np.abs(given).max():.3g}, beyond float32's 3.4e38: the scene is too large "
                    "or too far from the origin to be viewed; scale it down or move it nearer the origin",
                )
        self.viewmats = np.ascontiguousarray(np.asarray(self.viewmats, dtype=np.float32).reshape(-1, 4, 4))
        self.Ks = np.ascontiguousarray(np.asarray(self.Ks, dtype=np.float32).reshape(-1, 3, 3))
        if len(self.viewmats) != len(self.Ks):
            raise SegAnyError("invalid_array", f"{len(self.viewmats)} viewmats but {len(self.Ks)} intrinsics")
        if not (0 < self.width <= 16384 and 0 < self.height <= 16384):
            raise SegAnyError("invalid_array", f"image size {self.width}×{self.height} is out of range")

    def __len__(self) -> int:
        return len(self.viewmats)

    def __getitem__(self, idx: int | slice | np.ndarray) -> Cameras:
        vm, ks = self.viewmats[idx], self.Ks[idx]
        return Cameras(vm, ks, self.width, self.height)

    @property
    def centers(self) -> np.ndarray:
        """Camera centres in world space, (B, 3)."""
        r, t = self.viewmats[:, :3, :3], self.viewmats[:, :3, 3]
        return -np.einsum("bji,bj->bi", r, t)


def intrinsics(width: int, height: int, fov_deg: float) -> np.ndarray:
    """Square-pixel K whose field of view is `fov_deg` across the shorter image side, centred."""
    if not 0.0 < fov_deg < 180.0:
        raise SegAnyError("invalid_array", f"fov_deg must lie in (0, 180); got {fov_deg}")
    f = 0.5 * min(width, height) / np.tan(np.radians(fov_deg) / 2)
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=np.float64)


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = WORLD_UP) -> np.ndarray:
    """World-to-camera (OpenCV) 4×4 for a camera at `eye` looking at `target`, `up` pointing up in the image."""
    eye, target, up = (np.asarray(a, dtype=np.float64) for a in (eye, target, up))
    z = target - eye
    dist = np.linalg.norm(z)
    if dist == 0:
        raise SegAnyError("invalid_array", "camera position and target coincide")
    z = z / dist
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-8:  # looking straight along `up`: any perpendicular will do
        x = np.cross(z, np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.9 else np.array([1.0, 0.0, 0.0]))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    m = np.eye(4)
    m[:3, :3] = np.stack([x, y, z])
    m[:3, 3] = -m[:3, :3] @ eye
    return m


def _fibonacci_directions(n: int, elevation_range: tuple[float, float], seed: int) -> np.ndarray:
    """n unit vectors spread evenly (equal area) over the band of elevations, azimuth offset by `seed`."""
    lo, hi = np.radians(np.clip(sorted(elevation_range), -90.0, 90.0))
    i = np.arange(n) + 0.5
    z = np.sin(lo) + (np.sin(hi) - np.sin(lo)) * i / n  # uniform in z = uniform in area on the sphere
    golden = np.pi * (3.0 - np.sqrt(5.0))
    phi = golden * np.arange(n) + np.random.default_rng(seed).uniform(0, 2 * np.pi)
    r = np.sqrt(np.clip(1.0 - z**2, 0.0, 1.0))
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def orbit_cameras(
    center: np.ndarray,
    radius: float,
    n: int,
    width: int,
    height: int,
    fov_deg: float = 45.0,
    elevation_range: tuple[float, float] = (-30.0, 60.0),
    seed: int = 0,
) -> Cameras:
    """n cameras spread evenly (Fibonacci) around a bounding sphere, all looking at its centre.

    The distance is chosen so the whole sphere fits the shorter image side; elevations are degrees
    above the world XY plane (Blender's ground), so views come mostly from the side and above.
    """
    if n < 1 or not np.isfinite(radius) or radius <= 0:
        raise SegAnyError("invalid_array", f"need n >= 1 and a positive radius; got n={n}, radius={radius}")
    center = np.asarray(center, dtype=np.float64).reshape(3)
    dist = radius / np.sin(np.radians(fov_deg) / 2)
    eyes = center + dist * _fibonacci_directions(n, elevation_range, seed)
    viewmats = np.stack([look_at(e, center) for e in eyes])
    ks = np.repeat(intrinsics(width, height, fov_deg)[None], n, axis=0)
    return Cameras(viewmats, ks, width, height)


def bounding_sphere(scene: Scene) -> tuple[np.ndarray, float]:
    """Centre (of the bounding box) and radius enclosing every vertex / Gaussian mean / point."""
    if isinstance(scene, MeshScene):
        pts = scene.vertices
    elif isinstance(scene, SplatScene):
        pts = scene.means
    elif isinstance(scene, PointScene):
        pts = scene.xyz
    else:
        raise SegAnyError("bad_request", f"not a scene: {type(scene).__name__}")
    pts = pts.astype(np.float64)
    center = (pts.min(axis=0) + pts.max(axis=0)) / 2
    radius = float(np.sqrt(((pts - center) ** 2).sum(axis=1).max()))
    return center, max(radius, 1e-6 * max(1.0, float(np.abs(center).max())), 1e-9)


def near_plane(scene: Scene, default: float) -> float:
    """A rasterizer's near plane for this scene: its `default`, or a tenth of the scene's radius when smaller.

    A fixed near plane clips away a whole scene much smaller than it: `cameras_for_scene` views from 2.6
    radii, and with the mesh raster's 1e-3 units every mesh under ~4e-4 units rendered empty (iSeg failed).
    Every surface lies 1.6 radii or more from those cameras, so a tenth of the radius clips none of it, and
    scenes over ten times the default keep the default.
    """
    return min(default, 0.1 * bounding_sphere(scene)[1])


def cameras_for_scene(
    scene: Scene,
    n: int,
    width: int,
    height: int,
    fov_deg: float = 45.0,
    elevation_range: tuple[float, float] = (-30.0, 60.0),
    seed: int = 0,
) -> Cameras:
    """orbit_cameras around the scene's bounding sphere, so the whole scene fits every view."""
    center, radius = bounding_sphere(scene)
    return orbit_cameras(center, radius, n, width, height, fov_deg, elevation_range, seed)


def _rotate(v: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues rotation of v about a unit axis."""
    return v * np.cos(angle) + np.cross(axis, v) * np.sin(angle) + axis * (axis @ v) * (1 - np.cos(angle))


def follow_camera(
    viewmat: np.ndarray,
    K: np.ndarray,
    width: int,
    height: int,
    n: int,
    jitter_deg: float = 10.0,
    target: np.ndarray | None = None,
) -> Cameras:
    """n views near a given camera (the artist's viewport), all looking at the same target.

    View 0 is the camera itself. The others sit on a sunflower pattern of directions within
    `jitter_deg` of the original viewing direction, at the same distance from the target, keeping the
    camera's own up vector so the image does not roll. `target` defaults to the point on the view axis
    nearest the world origin (one unit ahead when the origin is behind the camera).
    """
    vm = np.asarray(viewmat, dtype=np.float64).reshape(4, 4)
    rot, eye = vm[:3, :3], -vm[:3, :3].T @ vm[:3, 3]
    forward, up = rot[2], -rot[1]
    if target is None:
        depth = float(forward @ (np.zeros(3) - eye))
        target = eye + forward * (depth if depth > 1e-6 else 1.0)
    target = np.asarray(target, dtype=np.float64).reshape(3)
    offset = eye - target
    views = [vm]
    golden = np.pi * (3.0 - np.sqrt(5.0))
    for i in range(1, n):
        tilt = np.radians(jitter_deg) * np.sqrt(i / max(n - 1, 1))
        axis = _rotate(rot[0], forward, golden * i)  # a direction perpendicular to the view axis
        new_eye = target + _rotate(offset, axis / np.linalg.norm(axis), tilt)
        views.append(look_at(new_eye, target, up))
    ks = np.repeat(np.asarray(K, dtype=np.float64).reshape(1, 3, 3), n, axis=0)
    return Cameras(np.stack(views), ks, width, height)


def _fit(sensor_fit: str, res_x: int, res_y: int) -> str:
    if sensor_fit not in ("AUTO", "HORIZONTAL", "VERTICAL"):
        raise SegAnyError("invalid_array", f"sensor_fit must be AUTO, HORIZONTAL or VERTICAL; got {sensor_fit!r}")
    if sensor_fit == "AUTO":
        return "HORIZONTAL" if res_x >= res_y else "VERTICAL"
    return sensor_fit


def from_blender(
    matrix_world: np.ndarray,
    lens_mm: float,
    sensor_width_mm: float,
    sensor_height_mm: float,
    sensor_fit: str,
    res_x: int,
    res_y: int,
    shift_x: float = 0.0,
    shift_y: float = 0.0,
) -> Cameras:
    """One Cameras entry from a Blender perspective camera (object matrix_world and camera data)."""
    m = np.asarray(matrix_world, dtype=np.float64).reshape(4, 4)
    rot = m[:3, :3] / np.linalg.norm(m[:3, :3], axis=0)  # drop object scale, as Blender's view matrix does
    cam_to_world = np.eye(4)
    cam_to_world[:3, :3], cam_to_world[:3, 3] = rot, m[:3, 3]
    viewmat = _FLIP @ np.linalg.inv(cam_to_world)
    fit = _fit(sensor_fit, res_x, res_y)
    sensor = sensor_height_mm if sensor_fit == "VERTICAL" else sensor_width_mm
    side = res_x if fit == "HORIZONTAL" else res_y
    f = lens_mm * side / sensor
    k = np.array([[f, 0, res_x / 2 - shift_x * side], [0, f, res_y / 2 + shift_y * side], [0, 0, 1]])
    return Cameras(viewmat[None], k[None], res_x, res_y)


def to_blender(cameras: Cameras, index: int = 0) -> dict:
    """Blender camera settings reproducing camera `index`: sensor_fit AUTO with a 36 mm sensor.

    Returns matrix_world (4×4 nested lists, camera-to-world in Blender axes), lens, sensor_width,
    sensor_fit, shift_x, shift_y, res_x, res_y. Blender has one focal length, so fx is used (fy is
    expected to equal it) and skew is ignored.
    """
    vm = cameras.viewmats[index].astype(np.float64)
    k = cameras.Ks[index].astype(np.float64)
    w, h = cameras.width, cameras.height
    side = max(w, h)
    sensor = 36.0
    return {
        "matrix_world": (np.linalg.inv(vm) @ _FLIP).tolist(),
        "lens": float(k[0, 0] * sensor / side),
        "sensor_width": sensor,
        "sensor_fit": "AUTO",
        "shift_x": float((w / 2 - k[0, 2]) / side),
        "shift_y": float((k[1, 2] - h / 2) / side),
        "res_x": w,
        "res_y": h,
    }
