"""Gaussian splats as Blender stores them, turned into the backend's `splats` scene arrays (no bpy here).

Two layouts exist:
- Blender 4.2–5.2 PLY import: a vertex-only mesh whose POINT attributes are the raw PLY properties
  (`f_dc_0..2`, `f_rest_*`, `opacity` as a logit, `scale_0..2` as logs, `rot_0..3` as w, x, y, z).
- Blender 5.3+ native splats (io/common/IO_gsplat): a point cloud with decoded values: `radiance:base`
  a float4 (f_dc_0..2 — the DC SH *coefficients*, not a colour — and the opacity in (0, 1)),
  `radiance:sh_<j>` for j = 0..K-2 (RGB of SH coefficient j+1), `scale` (linear) and `rotation` (a
  QUATERNION attribute, w, x, y, z). A 3-wide `radiance:base` with a separate `opacity` is read too.
The backend wants log-scales, logit-opacities, unit-free quaternions and SH as (N, K, 3), like the 3DGS PLY.
"""

from __future__ import annotations

import re

import numpy as np

RAW_REQUIRED = (
    "f_dc_0",
    "f_dc_1",
    "f_dc_2",
    "opacity",
    "scale_0",
    "scale_1",
    "scale_2",
    "rot_0",
    "rot_1",
    "rot_2",
    "rot_3",
)
DECODED_REQUIRED = ("radiance:base", "scale", "rotation")
_REST = re.compile(r"^f_rest_(\d+)$")
_SH = re.compile(r"^radiance:sh_(\d+)$")
_EPS = 1e-7


def detect(names: set[str] | list[str]) -> str | None:
    """'raw' (5.0 importer mesh), 'decoded' (5.3+ point cloud) or None when the attributes are not splats."""
    names = set(names)
    if all(n in names for n in RAW_REQUIRED):
        return "raw"
    if all(n in names for n in DECODED_REQUIRED):
        return "decoded"
    return None


def rest_names(names: set[str] | list[str]) -> list[str]:
    """`f_rest_*` attributes in index order; their count must be 3·(K-1) for K in 4, 9, 16, 25."""
    found = sorted((int(m.group(1)), n) for n in names if (m := _REST.match(n)))
    return [n for _, n in found]


def sh_names(names: set[str] | list[str]) -> list[str]:
    """`radiance:sh_<j>` attributes in coefficient order (j = 0..K-2)."""
    found = sorted((int(m.group(1)), n) for n in names if (m := _SH.match(n)))
    return [n for _, n in found]


def needed(layout: str, names: set[str] | list[str]) -> list[str]:
    """The attributes to read for a layout ('raw' or 'decoded'), in a stable order."""
    if layout == "raw":
        return [*RAW_REQUIRED, *rest_names(names)]
    return [*DECODED_REQUIRED, *sh_names(names), *(["opacity"] if "opacity" in set(names) else [])]


def from_raw(positions: np.ndarray, attrs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Scene arrays from the raw PLY-property attributes (values pass through untouched)."""
    n = len(positions)
    rest = rest_names(attrs)
    if len(rest) % 3:
        raise ValueError(f"{len(rest)} f_rest_* attributes; expected a multiple of 3")
    k = 1 + len(rest) // 3
    sh = np.empty((n, k, 3), np.float32)
    sh[:, 0, :] = np.stack([attrs[f"f_dc_{c}"] for c in range(3)], axis=1)
    if rest:
        # 3DGS stores f_rest channel-major: index = channel * (K-1) + (coefficient-1).
        sh[:, 1:, :] = np.stack([attrs[r] for r in rest], axis=1).reshape(n, 3, k - 1).transpose(0, 2, 1)
    return {
        "means": np.ascontiguousarray(positions, np.float32),
        "quats": np.stack([attrs[f"rot_{i}"] for i in range(4)], axis=1).astype(np.float32),
        "log_scales": np.stack([attrs[f"scale_{i}"] for i in range(3)], axis=1).astype(np.float32),
        "logit_opacities": np.asarray(attrs["opacity"], np.float32),
        "sh": sh,
    }


def from_decoded(positions: np.ndarray, attrs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Scene arrays from decoded point-cloud attributes: log of scales, logit of opacities."""
    n = len(positions)
    higher = sh_names(attrs)
    base = np.asarray(attrs["radiance:base"], np.float32).reshape(n, -1)
    opacity = base[:, 3] if base.shape[1] == 4 else np.asarray(attrs["opacity"], np.float32).reshape(n)
    sh = np.empty((n, 1 + len(higher), 3), np.float32)
    sh[:, 0, :] = base[:, :3]
    for i, name in enumerate(higher, start=1):
        sh[:, i, :] = np.asarray(attrs[name], np.float32).reshape(n, 3)
    opacity = np.clip(opacity.astype(np.float64), _EPS, 1.0 - _EPS)
    scale = np.maximum(np.asarray(attrs["scale"], np.float64).reshape(n, 3), _EPS)
    return {
        "means": np.ascontiguousarray(positions, np.float32),
        "quats": np.asarray(attrs["rotation"], np.float32).reshape(n, 4),
        "log_scales": np.log(scale).astype(np.float32),
        "logit_opacities": np.log(opacity / (1.0 - opacity)).astype(np.float32),
        "sh": sh,
    }


def to_decoded(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inverse of `from_decoded`: what a 5.3+ splat point cloud holds for these scene arrays."""
    sh = arrays["sh"]
    opacity = 1.0 / (1.0 + np.exp(-arrays["logit_opacities"].astype(np.float64)))
    out = {
        "radiance:base": np.concatenate([sh[:, 0, :], opacity[:, None]], axis=1).astype(np.float32),
        "scale": np.exp(arrays["log_scales"]).astype(np.float32),
        "rotation": np.ascontiguousarray(arrays["quats"], np.float32),
    }
    for j in range(sh.shape[1] - 1):
        out[f"radiance:sh_{j}"] = np.ascontiguousarray(sh[:, j + 1, :])
    return out


def ply_header(n: int, k: int) -> tuple[bytes, list[str]]:
    """The standard 3DGS PLY header (binary little endian, float32 properties) and its property order."""
    props = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    props += [f"f_rest_{i}" for i in range(3 * (k - 1))]
    props += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    lines = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    lines += [f"property float {p}" for p in props]
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii"), props


def write_ply(path: str, arrays: dict[str, np.ndarray], mask: np.ndarray | None = None) -> int:
    """Write the (selected) Gaussians as a standard 3DGS PLY that 3DGS viewers load; returns the count."""
    keep = np.ones(len(arrays["means"]), bool) if mask is None else np.asarray(mask, bool)
    sh = arrays["sh"][keep]
    n, k = sh.shape[0], sh.shape[1]
    header, props = ply_header(n, k)
    body = np.empty((n, len(props)), "<f4")
    body[:, 0:3] = arrays["means"][keep]
    body[:, 3:6] = 0.0
    body[:, 6:9] = sh[:, 0, :]
    r = 3 * (k - 1)
    body[:, 9 : 9 + r] = sh[:, 1:, :].transpose(0, 2, 1).reshape(n, r)
    body[:, 9 + r] = arrays["logit_opacities"][keep]
    body[:, 10 + r : 13 + r] = arrays["log_scales"][keep]
    body[:, 13 + r : 17 + r] = arrays["quats"][keep]
    with open(path, "wb") as fh:
        fh.write(header)
        fh.write(body.tobytes())
    return n
