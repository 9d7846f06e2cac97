"""The click tool's live selection on splat and point objects, drawn as points over the 3D viewport.

A colour attribute shows nothing there: Blender 5.0's PLY importer makes a mesh of loose vertices, which
Solid mode does not draw in Object Mode, and point clouds may not show colour attributes. So the selected
elements are drawn with the `gpu` module from a `SpaceView3D` draw handler instead, in world space, at
most `MAX_POINTS` of them so a 1M-Gaussian scene stays interactive. They are drawn on top (no depth test):
inside point clouds that Blender draws as spheres, depth-tested centres would be hidden. The draw callback
only reads: it never writes Blender data, and it draws nothing once its object is gone.
"""

from __future__ import annotations

import logging

import bpy
import numpy as np

from . import scene_read

MAX_POINTS = 200_000
POINT_SIZE = 4.0
log = logging.getLogger("segany.overlay")


def overlay_points(
    positions: np.ndarray,
    matrix_world: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    color: tuple[float, ...],
    max_points: int = MAX_POINTS,
) -> tuple[np.ndarray, np.ndarray]:
    """World-space coordinates (M, 3) and RGBA colours (M, 4), float32, of the selected elements.

    Above max_points an evenly spaced subset of the selection is kept (the same scores give the same
    points), so the drawing cost stays bounded whatever the scene's size.
    """
    if max_points < 1:
        raise ValueError(f"max_points must be at least 1, got {max_points}")
    s = np.asarray(scores, np.float32)
    if len(s) != len(positions):
        raise ValueError(f"{len(s)} scores for {len(positions)} elements: the geometry changed")
    idx = np.flatnonzero(s >= threshold)
    if len(idx) > max_points:
        idx = idx[np.linspace(0, len(idx) - 1, max_points).astype(np.int64)]
    m = np.asarray(matrix_world, np.float64).reshape(4, 4)
    local = np.asarray(positions, np.float64)[idx]
    coords = (local @ m[:3, :3].T + m[:3, 3]).astype(np.float32)
    rgba = np.asarray((*color[:3], 1.0), np.float32)
    return coords, np.repeat(rgba[None, :], len(idx), axis=0)


def _point_shader() -> tuple[object, bool]:
    """The builtin shader for points and whether it takes a `size` uniform. POINT_FLAT_COLOR exists in newer
    Blender (5.0 has it); older versions reject the name with a ValueError and draw points with FLAT_COLOR
    and the point-size state instead."""
    import gpu

    try:
        return gpu.shader.from_builtin("POINT_FLAT_COLOR"), True
    except ValueError:
        return gpu.shader.from_builtin("FLAT_COLOR"), False


def _redraw_viewports() -> None:
    for window in getattr(bpy.context.window_manager, "windows", []):
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


class PointOverlay:
    """One click session's live selection on a splat / point object: a POST_VIEW draw handler from creation
    until close(). Same show / clear / close calls as the mesh colour-attribute preview."""

    def __init__(self, obj: bpy.types.Object, color: tuple[float, ...], max_points: int = MAX_POINTS) -> None:
        self.name = obj.name
        self.key = obj.session_uid
        self.color = color
        self.max_points = max_points
        self.positions = scene_read.positions(obj.data)  # local space, read once: clicks do not move points
        self.coords = np.zeros((0, 3), np.float32)
        self.colors = np.zeros((0, 4), np.float32)
        self.error = ""
        self._gpu: tuple[object, object, bool] | None = None  # shader, batch, sized: built on the next draw
        self.handle = bpy.types.SpaceView3D.draw_handler_add(self._draw, (), "WINDOW", "POST_VIEW")
        _ACTIVE.append(self)

    def target(self) -> bpy.types.Object | None:
        """The session's object, or None once it was deleted (looked up, never held across calls)."""
        obj = bpy.data.objects.get(self.name)
        return obj if obj is not None and obj.session_uid == self.key else None

    def show(self, scores: np.ndarray, threshold: float) -> None:
        obj = self.target()
        if obj is None:
            self.clear()
            return
        matrix = np.array(obj.matrix_world, np.float64)
        drawn = overlay_points(self.positions, matrix, scores, threshold, self.color, self.max_points)
        self.coords, self.colors = drawn
        self._gpu = None
        _redraw_viewports()

    def clear(self) -> None:
        self.coords = np.zeros((0, 3), np.float32)
        self.colors = np.zeros((0, 4), np.float32)
        self._gpu = None
        _redraw_viewports()

    def close(self) -> None:
        """Remove the draw handler (idempotent): session end, cancel, object deletion, unregister."""
        if self.handle is not None:
            bpy.types.SpaceView3D.draw_handler_remove(self.handle, "WINDOW")
            self.handle = None
            _redraw_viewports()
        if self in _ACTIVE:
            _ACTIVE.remove(self)

    def _draw(self) -> None:
        """The draw callback: reads only; a failure is reported once (log and `error`) and drawing stops."""
        if self.error or len(self.coords) == 0 or self.target() is None:
            return
        try:
            import gpu
            from gpu_extras.batch import batch_for_shader

            if self._gpu is None:
                shader, sized = _point_shader()
                batch = batch_for_shader(shader, "POINTS", {"pos": self.coords, "color": self.colors})
                self._gpu = (shader, batch, sized)
            shader, batch, sized = self._gpu
            gpu.state.point_size_set(POINT_SIZE)
            if sized:
                shader.uniform_float("size", POINT_SIZE)
            batch.draw(shader)
            gpu.state.point_size_set(1.0)
        except (SystemError, ValueError, RuntimeError) as exc:
            self.error = f"selection overlay cannot draw: {exc}"
            log.warning(self.error)


_ACTIVE: list[PointOverlay] = []


def active() -> list[PointOverlay]:
    """Overlays whose draw handler is registered (tests and unregister check that none are left)."""
    return list(_ACTIVE)


def remove_all() -> None:
    """Remove every overlay's draw handler (add-on unregister, a new file loaded)."""
    for item in list(_ACTIVE):
        item.close()
