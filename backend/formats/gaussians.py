"""3D Gaussian splats between the 3DGS PLY layout, Blender's attributes and SplatScene.

The 3DGS PLY (Kerbl et al. 2023) stores pre-activation values: log-scales, logit-opacity, quaternion
(w, x, y, z) in rot_0..3, the SH DC term in f_dc_0..2 and the higher SH coefficients channel-major in
f_rest_*: all K-1 coefficients of red, then of green, then of blue. SplatScene keeps the same
parameterisation with sh (N, K, 3), so a file round-trips bit for bit.

Blender 5.0's PLY importer makes a vertex-only mesh whose float attributes are exactly the PLY
properties (raw values). Blender 5.3's native importer makes a GAUSSIAN_SPLAT point cloud whose
attributes are decoded (source: blender io/ply/importer/ply_import_gsplat.cc and io/common/IO_gsplat):
  position       float3   centre
  radiance:base  float4   (f_dc_0, f_dc_1, f_dc_2, sigmoid(opacity)): the DC *coefficient*, not a colour
  scale          float3   exp(scale_i)
  rotation       quat     (w, x, y, z) = normalised (rot_0..rot_3)
  radiance:sh_j  float3   SH coefficient j+1 for (r, g, b), j = 0..K-2
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import SegAnyError
from ..scene import SplatScene

SH_C0 = 0.28209479177387814  # Y_0^0: colour = 0.5 + SH_C0 * f_dc in 3DGS renderers
_EPS = 1e-7  # keeps logit / log finite for opacities of exactly 0 or 1 and zero scales

SPLAT_REQUIRED = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
                  "rot_0", "rot_1", "rot_2", "rot_3")  # fmt: skip


def is_splat_fields(names: set[str] | list[str]) -> bool:
    """True when a PLY vertex element carries the 3DGS properties."""
    return set(SPLAT_REQUIRED) <= set(names)


def missing_splat_fields(names: set[str] | list[str]) -> list[str]:
    """The 3DGS properties a vertex element lacks once it has any that only 3DGS uses (f_dc_*, scale_*, rot_*).

    Such a file was meant as splats; reading it as a plain point cloud would drop the Gaussians unseen.
    A gap in f_rest_* counts too, since the coefficients after it would be dropped.
    """
    names = set(names)
    if not names & {n for n in SPLAT_REQUIRED if n.startswith(("f_dc_", "scale_", "rot_"))}:
        return []
    missing = [n for n in SPLAT_REQUIRED if n not in names]
    n_rest = count_rest(names)
    if sum(n.startswith("f_rest_") for n in names) > n_rest:
        missing.append(f"f_rest_{n_rest}")
    return missing


def count_rest(names: list[str] | set[str]) -> int:
    """How many consecutive f_rest_i properties there are (0, 9, 24, 45, ...)."""
    names = set(names)
    n = 0
    while f"f_rest_{n}" in names:
        n += 1
    return n


def sh_from_dc_rest(f_dc: np.ndarray, f_rest: np.ndarray) -> np.ndarray:
    """(N, 3) DC plus (N, 3*(K-1)) channel-major rest -> (N, K, 3)."""
    n = len(f_dc)
    if f_rest.shape[1] % 3:
        raise SegAnyError("corrupt_file", f"{f_rest.shape[1]} f_rest properties is not a multiple of 3")
    k1 = f_rest.shape[1] // 3
    sh = np.empty((n, k1 + 1, 3), np.float32)
    sh[:, 0] = f_dc
    sh[:, 1:] = f_rest.reshape(n, 3, k1).transpose(0, 2, 1)
    return sh


def rest_from_sh(sh: np.ndarray) -> np.ndarray:
    """(N, K, 3) -> channel-major f_rest (N, 3*(K-1)), the inverse of sh_from_dc_rest."""
    n = len(sh)
    return np.ascontiguousarray(sh[:, 1:, :].transpose(0, 2, 1).reshape(n, -1))


def splats_from_fields(block: Callable[[list[str]], np.ndarray], names: list[str] | set[str]) -> SplatScene:
    """SplatScene from raw 3DGS PLY values; `block(keys)` returns those columns as an (N, len(keys)) array."""
    n_rest = count_rest(names)
    dc = block(["f_dc_0", "f_dc_1", "f_dc_2"])
    f_rest = block([f"f_rest_{i}" for i in range(n_rest)]) if n_rest else np.zeros((len(dc), 0), np.float32)
    return SplatScene(
        means=block(["x", "y", "z"]),
        quats=block(["rot_0", "rot_1", "rot_2", "rot_3"]),
        log_scales=block(["scale_0", "scale_1", "scale_2"]),
        logit_opacities=block(["opacity"])[:, 0],
        sh=sh_from_dc_rest(dc, f_rest),
    )


def splat_matrix(scene: SplatScene) -> tuple[list[str], np.ndarray]:
    """The standard 3DGS PLY vertex layout: property names in the order viewers expect and one float32
    (N, P) matrix whose rows are the binary records (x y z nx ny nz f_dc_* f_rest_* opacity scale_* rot_*)."""
    n_rest = 3 * (scene.sh.shape[1] - 1)
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(n_rest)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    blocks = [scene.means, np.zeros_like(scene.means), scene.sh[:, 0], rest_from_sh(scene.sh),
              scene.logit_opacities[:, None], scene.log_scales, scene.quats]  # fmt: skip
    return names, np.concatenate(blocks, axis=1, dtype=np.float32)


def _attr(attrs: dict[str, np.ndarray], name: str, width: int | None, n: int | None) -> np.ndarray:
    if name not in attrs:
        raise SegAnyError("invalid_array", f"the splat attributes lack {name!r}; got {sorted(attrs)[:12]}")
    a = np.asarray(attrs[name])
    if a.dtype.kind not in "fiu":
        raise SegAnyError("invalid_array", f"attribute {name!r} has dtype {a.dtype}, expected numbers")
    want = (n if n is not None else a.shape[0],) + ((width,) if width else ())
    if a.ndim != len(want) or a.shape != want:
        raise SegAnyError("invalid_array", f"attribute {name!r} has shape {a.shape}, expected {want}")
    return a.astype(np.float32, copy=False)


def _positions(attrs: dict[str, np.ndarray]) -> np.ndarray:
    for key in ("position", "positions"):
        if key in attrs:
            return _attr(attrs, key, 3, None)
    if {"x", "y", "z"} <= set(attrs):
        return np.stack([_attr(attrs, k, None, None) for k in "xyz"], axis=1)
    raise SegAnyError("invalid_array", "the splat attributes lack 'position' (N, 3)")


def splats_from_blender_raw(attrs: dict[str, np.ndarray]) -> SplatScene:
    """Blender 5.0 importer: a vertex-only mesh with 'position' and the raw PLY properties as attributes."""
    pos = _positions(attrs)
    n = len(pos)
    cols = {k: _attr(attrs, k, None, n) for k in SPLAT_REQUIRED[3:]}
    n_rest = count_rest(attrs)
    cols.update({f"f_rest_{i}": _attr(attrs, f"f_rest_{i}", None, n) for i in range(n_rest)})
    cols.update(x=pos[:, 0], y=pos[:, 1], z=pos[:, 2])
    return splats_from_fields(lambda keys: np.stack([cols[k] for k in keys], axis=1), cols.keys())


def splats_from_blender_decoded(attrs: dict[str, np.ndarray]) -> SplatScene:
    """Blender 5.3+ native splat point cloud (decoded values) -> 3DGS parameterisation.

    `radiance:base` is (N, 4) = DC coefficient rgb + opacity in 0..1; an (N, 3) base with a separate
    (N,) `opacity` is accepted too. Opacities of exactly 0 or 1 and zero scales are clamped so the
    logit / log stay finite.
    """
    pos = _positions(attrs)
    n = len(pos)
    base = np.asarray(attrs.get("radiance:base", np.zeros((0, 0))))
    if base.ndim == 2 and base.shape[1] == 3:
        dc = _attr(attrs, "radiance:base", 3, n)
        opacity = _attr(attrs, "opacity", None, n)
    else:
        base = _attr(attrs, "radiance:base", 4, n)
        dc, opacity = base[:, :3], base[:, 3]
    opacity = np.clip(opacity.astype(np.float64), _EPS, 1.0 - _EPS)
    scale = np.maximum(_attr(attrs, "scale", 3, n).astype(np.float64), _EPS)
    rot = _attr(attrs, "rotation", 4, n)
    k1 = 0
    while f"radiance:sh_{k1}" in attrs:
        k1 += 1
    rest = [_attr(attrs, f"radiance:sh_{j}", 3, n) for j in range(k1)]
    sh = np.stack([dc, *rest], axis=1)
    return SplatScene(
        means=pos,
        quats=rot,
        log_scales=np.log(scale).astype(np.float32),
        logit_opacities=np.log(opacity / (1.0 - opacity)).astype(np.float32),
        sh=sh,
    )
