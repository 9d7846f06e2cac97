"""One entry point for every scene file: sniff the format, check sizes, read, validate."""

from __future__ import annotations

import os

import numpy as np

from ..errors import SegAnyError
from ..scene import PointScene, Scene
from .meshes import read_mesh
from .plyio import read_ply
from .points import read_npz, read_xyz
from .sniff import check_readable, detect_format


def load_scene_with_labels(
    path: str | os.PathLike, limits: dict[str, int] | None = None, allow_references: bool = False
) -> tuple[Scene, np.ndarray | None]:
    """The scene plus an int label per element when the file has one, else None.

    Labels are per face for a mesh PLY with a face `label` property (per vertex when only the vertices
    carry one), per Gaussian / point otherwise. Other formats carry no labels except .npz `labels`.
    """
    p = check_readable(path)
    try:
        fmt = detect_format(p)
        if fmt == "ply":
            return read_ply(p, limits)
        if fmt == "xyz":
            scene: Scene = read_xyz(p, limits)
        elif fmt == "npz":
            scene = read_npz(p, limits)
        else:
            scene = read_mesh(p, fmt, limits, allow_references)
    except MemoryError as e:
        raise SegAnyError("too_large", f"{p.name} does not fit in memory") from e
    except OSError as e:  # permissions, a vanished file, a /proc or /sys file that refuses to be read
        raise SegAnyError("io_error", f"{p.name} could not be read: {e.strerror or type(e).__name__}") from e
    labels = scene.labels if isinstance(scene, PointScene) else None
    return scene, labels


def load_scene(path: str | os.PathLike, limits: dict[str, int] | None = None, allow_references: bool = False) -> Scene:
    """Read a mesh (OBJ/PLY/OFF/STL/GLB/glTF), 3DGS PLY or point cloud (PLY/XYZ/NPZ) as a validated Scene.

    `limits` overrides scene.DEFAULT_LIMITS; sizes are checked from headers before data is read.
    Raises SegAnyError: not_found, unknown_format, corrupt_file, invalid_geometry, invalid_array,
    too_large, io_error, unsupported (a glTF whose geometry lies in another file, without
    `allow_references`). Only the named file is read unless `allow_references`: OBJ material libraries
    and glTF buffers and images elsewhere on disk are refused. Allowed, they are read from the named
    file's folder and below (trimesh refuses paths that leave it). Non-fatal findings (degenerate faces,
    references not followed) are in `scene.warnings`.
    """
    return load_scene_with_labels(path, limits, allow_references)[0]
