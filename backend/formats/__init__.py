"""Scene files in and out: meshes, 3D Gaussian splats and point clouds, plus Blender's splat attributes."""

from .gaussians import SH_C0, splats_from_blender_decoded, splats_from_blender_raw
from .loader import load_scene, load_scene_with_labels
from .sniff import FORMATS, detect_format
from .writers import write_labelled_ply, write_mesh_ply, write_parts_ply, write_point_ply, write_splat_ply

__all__ = [
    "FORMATS",
    "SH_C0",
    "detect_format",
    "load_scene",
    "load_scene_with_labels",
    "splats_from_blender_decoded",
    "splats_from_blender_raw",
    "write_labelled_ply",
    "write_mesh_ply",
    "write_parts_ply",
    "write_point_ply",
    "write_splat_ply",
]
