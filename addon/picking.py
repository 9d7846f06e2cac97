"""Which element did the artist click? Meshes: a BVH of the ORIGINAL mesh (ray_cast on the evaluated
object would return face indices of the modifier result); the hit maps to the nearest original vertex of
the hit triangle. Splats and points: project every element to the screen (pick_math) and take the
front-most within a pixel radius."""

from __future__ import annotations

import numpy as np
from mathutils import Matrix, Vector
from mathutils.bvhtree import BVHTree

from . import pick_math, scene_read


class MeshPicker:
    """Built once per click-tool session, since building is the slow part; then a pick is one BVH query."""

    def __init__(self, obj: object) -> None:
        mesh = obj.data
        self.place(obj)
        self.vertices = scene_read.positions(mesh).astype(np.float64)
        self.tris = scene_read.triangles(mesh)
        self.tri_face = np.empty(len(self.tris), np.int32)
        mesh.loop_triangles.foreach_get("polygon_index", self.tri_face)
        self.loop_start = np.empty(len(mesh.polygons), np.int32)
        mesh.polygons.foreach_get("loop_start", self.loop_start)
        self.loop_total = np.empty(len(mesh.polygons), np.int32)
        mesh.polygons.foreach_get("loop_total", self.loop_total)
        self.loop_verts = np.empty(len(mesh.loops), np.int32)
        mesh.loops.foreach_get("vertex_index", self.loop_verts)
        self.bvh = BVHTree.FromPolygons(self.vertices.tolist(), self.tris.tolist(), all_triangles=True)

    def place(self, obj: object) -> None:
        """Follow the object's current transform (the BVH is in local space, so it survives moves)."""
        self.matrix = obj.matrix_world.copy()
        self.inverse = self.matrix.inverted_safe()

    def pick_ray(self, origin_world: Vector, direction_world: Vector) -> int:
        """Original vertex index under a world-space ray, or -1 on a miss."""
        origin = self.inverse @ Vector(origin_world)
        direction = (self.inverse.to_3x3() @ Vector(direction_world)).normalized()
        location, _normal, tri, _dist = self.bvh.ray_cast(origin, direction)
        if location is None:
            return -1
        face = self.tri_face[tri]
        start = self.loop_start[face]
        corners = self.loop_verts[start : start + self.loop_total[face]]  # all of the hit face, not one triangle
        return pick_math.nearest_corner(self.vertices[corners], np.asarray(location), corners)

    def pick_region(self, region: object, rv3d: object, xy: tuple[float, float]) -> int:
        from bpy_extras import view3d_utils

        origin = view3d_utils.region_2d_to_origin_3d(region, rv3d, xy)
        direction = view3d_utils.region_2d_to_vector_3d(region, rv3d, xy)
        return self.pick_ray(origin, direction)


class PointPicker:
    """Splats and point clouds: nothing to ray-cast, so project the points with the view's matrix."""

    def __init__(self, obj: object, radius_px: float = 12.0) -> None:
        self.points = scene_read.positions(obj.data)
        self.radius_px = radius_px
        self.place(obj)

    def place(self, obj: object) -> None:
        self.matrix = obj.matrix_world.copy()

    def pick_matrix(self, perspective: Matrix, width: int, height: int, xy: tuple[float, float]) -> int:
        """Pick with a region's perspective matrix (world → clip) and size; -1 when nothing is near."""
        m = np.asarray(perspective @ self.matrix, np.float64)
        return pick_math.pick_projected(self.points, m, width, height, xy, self.radius_px)

    def pick_region(self, region: object, rv3d: object, xy: tuple[float, float]) -> int:
        return self.pick_matrix(rv3d.perspective_matrix, region.width, region.height, xy)


def picker_for(obj: object, radius_px: float = 12.0) -> MeshPicker | PointPicker:
    if obj.type == "MESH" and len(obj.data.polygons) > 0:
        return MeshPicker(obj)
    return PointPicker(obj, radius_px)


_CACHE: dict[int, tuple[str, MeshPicker | PointPicker]] = {}


def cached_picker(obj: object, key: int, scene_id: str, radius_px: float = 12.0) -> MeshPicker | PointPicker:
    """The object's picker, rebuilt only when its geometry changed (a new scene id): building the BVH of a
    large mesh is slow (docs/journal.md), so the click tool does not pay it on every start."""
    hit = _CACHE.get(key)
    if hit is None or hit[0] != scene_id or not scene_id:
        hit = (scene_id, picker_for(obj, radius_px))
        _CACHE[key] = hit
    picker = hit[1]
    picker.place(obj)
    if isinstance(picker, PointPicker):
        picker.radius_px = radius_px
    return picker


def forget_pickers() -> None:
    """Drop cached pickers (a new file was loaded, or the add-on is unregistered)."""
    _CACHE.clear()
