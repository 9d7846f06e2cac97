"""Point clouds from .xyz text and .npz archives (PLY point clouds live in plyio).

.xyz: one point per line, `x y z` or `x y z r g b` (colours 0..1 or 0..255), `#` comments.
.npz: positions under `xyz`, `means3d` or `points`; optional `rgb` / `colors` (uint8 or float),
`normals`, `labels`; other keys (cameras shipped alongside, say) are ignored. Array shapes are read
from the .npy headers inside the archive and checked against the limits before any data is loaded;
pickled object arrays are never loaded.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import numpy as np

from ..errors import SegAnyError
from ..options import listed
from ..scene import PointScene, check_limits
from .reasons import failure
from .sniff import count_occurrences

XYZ_KEYS = ("xyz", "means3d", "points")
RGB_KEYS = ("rgb", "colors")


def _unit_colors(rgb: np.ndarray | None) -> np.ndarray | None:
    """uint8 or 0..255 floats -> [0, 1] floats; [0, 1] floats unchanged."""
    if rgb is None:
        return None
    if rgb.dtype.kind in "ui" or rgb.max(initial=0) > 1.0:
        return (rgb.astype(np.float32) / 255.0).clip(0, 1)
    return rgb.astype(np.float32)


def read_xyz(path: Path, limits: dict[str, int] | None = None) -> PointScene:
    """Whitespace-separated text points."""
    # numpy reads in universal-newline mode, so a lone \r ends a line too (old Mac files); \r\n ends one line
    n_lf, n_cr, n_crlf = count_occurrences(path, (b"\n", b"\r", b"\r\n"), start=b"")
    check_limits("points", {"xyz": n_lf + n_cr - n_crlf + 1}, limits)
    try:
        with warnings.catch_warnings():  # an empty file is reported below as invalid_geometry, not warned about
            warnings.simplefilter("ignore", UserWarning)
            data = np.loadtxt(path, dtype=np.float64, comments="#", ndmin=2)
    except ValueError as e:
        raise SegAnyError("corrupt_file", f"{path.name}: not a table of numbers ({failure(e)})") from e
    if data.size == 0:
        raise SegAnyError("invalid_geometry", f"{path.name} holds no points")
    if data.shape[1] not in (3, 6):
        raise SegAnyError("corrupt_file", f"{path.name} has {data.shape[1]} columns; expected x y z or x y z r g b")
    rgb = _unit_colors(data[:, 3:6]) if data.shape[1] == 6 else None
    return PointScene(xyz=data[:, :3], rgb=rgb)


def _npz_shapes(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array in the archive, from the .npy headers alone."""
    shapes = {}
    try:
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                if not name.endswith(".npy"):
                    continue
                with z.open(name) as f:
                    version = np.lib.format.read_magic(f)
                    read = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read(f)
                shapes[name[:-4]] = (shape, dtype)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise SegAnyError("corrupt_file", f"{path.name}: not a readable .npz archive ({failure(e)})") from e
    return shapes


def _first(keys: tuple[str, ...], present: dict) -> str | None:
    return next((k for k in keys if k in present), None)


def read_npz(path: Path, limits: dict[str, int] | None = None) -> PointScene:
    """Named arrays -> PointScene; refuses object arrays and oversized clouds before loading."""
    shapes = _npz_shapes(path)
    key = _first(XYZ_KEYS, shapes)
    if key is None:
        raise SegAnyError(
            "invalid_array", f"{path.name} has no point array; expected one of {XYZ_KEYS}, got {listed(sorted(shapes))}"
        )
    wanted = {"xyz": key, "rgb": _first(RGB_KEYS, shapes), "normals": _first(("normals",), shapes),
              "labels": _first(("labels",), shapes)}  # fmt: skip
    for field, name in wanted.items():
        if name is not None and shapes[name][1].hasobject:
            raise SegAnyError("invalid_array", f"{path.name}: array {name!r} holds Python objects; refusing to load it")
        if name is not None and len(shapes[name][0]) == 0:
            raise SegAnyError("invalid_array", f"{path.name}: {field} array {name!r} is a scalar")
    check_limits("points", {f: shapes[n][0][0] for f, n in wanted.items() if n is not None}, limits)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {f: z[n] for f, n in wanted.items() if n is not None}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise SegAnyError("corrupt_file", f"{path.name}: an array could not be read ({failure(e)})") from e
    if "rgb" in arrays:
        rgb = arrays["rgb"]
        arrays["rgb"] = _unit_colors(rgb[:, :3] if rgb.ndim == 2 and rgb.shape[1] == 4 else rgb)  # drop alpha
    return PointScene(**arrays)
