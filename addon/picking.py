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
    """Built once per click-tool session (about 0.1 s per 100K triangles), then each pick is microseconds."""

    def __init__(self, obj: object) -> None:
        mesh = obj.data
        self.matrix = obj.matrix_world.copy()
        self.inverse = self.matrix.inverted_safe()
        self.vertices = scene_read.positions(mesh).astype(np.float64)
        self.tris = scene_read.triangles(mesh)
        self.bvh = BVHTree.FromPolygons(self.vertices.tolist(), self.tris.tolist(), all_triangles=True)

    def pick_ray(self, origin_world: Vector, direction_world: Vector) -> int:
        """Original vertex index under a world-space ray, or -1 on a miss."""
        origin = self.inverse @ Vector(origin_world)
        direction = (self.inverse.to_3x3() @ Vector(direction_world)).normalized()
        location, _normal, tri, _dist = self.bvh.ray_cast(origin, direction)
        if location is None:
            return -1
        corners = self.tris[tri]
        return pick_math.nearest_corner(self.vertices[corners], np.asarray(location), corners)

    def pick_region(self, region: object, rv3d: object, xy: tuple[float, float]) -> int:
        from bpy_extras import view3d_utils

        origin = view3d_utils.region_2d_to_origin_3d(region, rv3d, xy)
        direction = view3d_utils.region_2d_to_vector_3d(region, rv3d, xy)
        return self.pick_ray(origin, direction)


class PointPicker:
    """Splats and point clouds: nothing to ray-cast, so project the points with the view's matrix."""

    def __init__(self, obj: object, radius_px: float = 12.0) -> None:
        self.matrix = obj.matrix_world.copy()
        self.points = scene_read.positions(obj.data)
        self.radius_px = radius_px

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
