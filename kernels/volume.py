"""Volume rendering of point clouds: a density grid splatted from the points, ray marching with empty-space
skipping, per-sample weights, and rendered depth / alpha / per-point (or per-voxel) values with gradients.

Point clouds have no surface, so SA3D-style lifting renders them as a fog that is dense where points are:
each point adds a small Gaussian bump of optical thickness to a voxel grid. Rays walk the grid's 4³-voxel
blocks, leap over runs of empty blocks with a chessboard distance transform (the empty-space skipping) and
sample only inside blocks that hold density, at a fixed step, with weight w = T·(1 − exp(−σδ)) and T the
transmittance before the sample. On CUDA tensors the sampling and the weights come from nerfacc
(`OccGridEstimator` over our occupancy, `render_weight_from_density`); elsewhere a vectorized torch
implementation does the same. Compositing is one index_add per output on both paths (what nerfacc's
`accumulate_along_rays` does), so gradients reach the per-point or per-voxel values by autograd.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from segany.errors import SegAnyError

BLOCK = 2  # voxels per side of the empty-space-skipping blocks
T_MIN = 1e-4  # rays stop once transmittance falls under this (nerfacc's early_stop_eps)


@dataclass
class DensityGrid:
    """Dense voxel grid over an axis-aligned box with cubic voxels of side `voxel`."""

    density: Tensor  # (X, Y, Z) σ per unit length
    lo: Tensor  # (3,) box corner
    voxel: float
    point_voxel: Tensor  # (P,) flat voxel id of each point, -1 outside the box
    value_voxel: Tensor  # (X·Y·Z,) flat id of the voxel whose points give this voxel its value, -1 none

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.density.shape)  # type: ignore[return-value]

    @property
    def occupied(self) -> Tensor:
        """(X, Y, Z) bool: voxels with density (the ones rays sample)."""
        return self.density > 0

    @property
    def voxel_ids(self) -> Tensor:
        """Flat ids of the occupied voxels: the row order of per-voxel `values` in `render_volume`."""
        return torch.nonzero(self.occupied.reshape(-1)).flatten()

    @property
    def hi(self) -> Tensor:
        return self.lo + self.voxel * torch.tensor(self.shape, dtype=self.lo.dtype, device=self.lo.device)

    def blocks(self) -> Tensor:
        """(⌈X/4⌉, ⌈Y/4⌉, ⌈Z/4⌉) bool: blocks holding any occupied voxel."""
        occ = self.occupied.float()[None, None]
        return F.max_pool3d(occ, BLOCK, stride=BLOCK, ceil_mode=True)[0, 0] > 0


def _gaussian_blur3d(grid: Tensor, sigma: float) -> Tensor:
    """Separable blur with an unnormalised Gaussian (peak 1): a lone point keeps thickness 1 in its voxel."""
    r = max(1, math.ceil(2.5 * sigma))
    x = torch.arange(-r, r + 1, dtype=grid.dtype, device=grid.device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    out = grid[None, None]
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = 2 * r + 1
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = r
        out = F.conv3d(F.pad(out, pad), k.reshape(shape))
    return out[0, 0]


def build_density_grid(
    points: Tensor,
    resolution: int = 128,
    aabb: Tensor | None = None,
    kernel_sigma: float = 0.7,
    density_scale: float = 3.0,
    min_thickness: float = 0.01,
) -> DensityGrid:
    """Splat points into a voxel grid: σ = density_scale · Σ_points exp(−d²/2s²) / voxel, s = kernel_sigma voxels.

    `resolution` voxels along the box's longest side (cubic voxels). A voxel holding one point has optical
    thickness `density_scale` (alpha 1 − e^−3 ≈ 0.95 by default); voxels thinner than `min_thickness` are
    empty, so rays skip them. Points outside `aabb` (lo, hi as (2, 3); padded by the kernel's reach) are
    ignored: pass a box around the region of interest for scenes with far-away background points.
    """
    if points.ndim != 2 or points.shape[1] != 3 or points.shape[0] == 0:
        raise SegAnyError("invalid_array", f"points has shape {tuple(points.shape)}, expected (P, 3) with P > 0")
    if not 2 <= resolution <= 512:
        raise SegAnyError("too_large", f"resolution {resolution} is out of range 2..512 (512³ floats are 0.5 GB)")
    pts = points.detach() if points.is_floating_point() else points.detach().float()
    if aabb is None:
        lo, hi = pts.min(0).values, pts.max(0).values
    else:
        lo, hi = aabb.to(pts).reshape(2, 3)
    extent = float((hi - lo).max())
    if not extent > 0:
        raise SegAnyError("invalid_geometry", "the points (or the aabb) span no volume")
    pad = (kernel_sigma * 2.5 + 1) * extent / resolution
    lo, hi = lo - pad, hi + pad
    voxel = float((hi - lo).max()) / resolution
    dims = torch.ceil((hi - lo) / voxel).long().clamp_min(1)
    nx, ny, nz = (int(d) for d in dims)
    ijk = torch.floor((pts - lo) / voxel).long()
    inside = ((ijk >= 0) & (ijk < dims)).all(dim=1)
    flat = (ijk[:, 0] * ny + ijk[:, 1]) * nz + ijk[:, 2]
    point_voxel = torch.where(inside, flat, torch.full_like(flat, -1))
    counts = torch.bincount(flat[inside], minlength=nx * ny * nz).to(pts.dtype).reshape(nx, ny, nz)
    thickness = density_scale * _gaussian_blur3d(counts, kernel_sigma)
    density = torch.where(thickness >= min_thickness, thickness / voxel, torch.zeros_like(thickness))
    return DensityGrid(density, lo, voxel, point_voxel, _value_sources(counts, density > 0))


def _value_sources(counts: Tensor, occupied: Tensor) -> Tensor:
    """For each occupied voxel the nearest voxel that holds points (itself if it does); -1 elsewhere."""
    from scipy.spatial import cKDTree

    has = (counts > 0).reshape(-1)
    src = torch.full((counts.numel(),), -1, dtype=torch.long, device=counts.device)
    with_pts = torch.nonzero(has).flatten()
    src[with_pts] = with_pts
    todo = torch.nonzero(occupied.reshape(-1) & ~has).flatten()
    if todo.numel() and with_pts.numel():
        shape = counts.shape
        tree = cKDTree(torch.stack(torch.unravel_index(with_pts, shape), 1).cpu().numpy())
        _, nearest = tree.query(torch.stack(torch.unravel_index(todo, shape), 1).cpu().numpy())
        src[todo] = with_pts[torch.from_numpy(nearest).to(counts.device)]
    return src


@dataclass
class Samples:
    """Per-sample record, ray-major and front to back: which ray, its interval, voxel and weight."""

    ray_ids: Tensor  # (S,) int64 over B·H·W
    t_starts: Tensor  # (S,) distance along the unit ray direction
    t_ends: Tensor  # (S,)
    voxel_ids: Tensor  # (S,) flat voxel id
    weights: Tensor  # (S,) T·(1 − exp(−σδ))


@dataclass
class VolumeRender:
    """Renders of B views; `depth` is the expected camera z (Σ w·z / alpha, 0 where alpha is 0)."""

    depth: Tensor  # (B, H, W)
    alpha: Tensor  # (B, H, W)
    values: Tensor | None  # (B, H, W, C)
    samples: Samples


def camera_rays(viewmats: Tensor, Ks: Tensor, width: int, height: int) -> tuple[Tensor, Tensor, Tensor]:
    """World origins and unit directions through pixel centres (B·H·W, 3), and each direction's camera z."""
    dev, dtype = viewmats.device, viewmats.dtype
    ys, xs = torch.meshgrid(
        torch.arange(height, device=dev, dtype=dtype) + 0.5,
        torch.arange(width, device=dev, dtype=dtype) + 0.5,
        indexing="ij",
    )
    fx, fy = Ks[:, 0, 0, None, None], Ks[:, 1, 1, None, None]
    cx, cy = Ks[:, 0, 2, None, None], Ks[:, 1, 2, None, None]
    u, v = (xs - cx) / fx, (ys - cy) / fy
    d_cam = F.normalize(torch.stack([u, v, torch.ones_like(u)], dim=-1), dim=-1)
    rot, trans = viewmats[:, :3, :3], viewmats[:, :3, 3]
    dirs = torch.einsum("bji,bhwj->bhwi", rot, d_cam)
    origins = (-torch.einsum("bji,bj->bi", rot, trans))[:, None, None].expand_as(dirs)
    return origins.reshape(-1, 3), dirs.reshape(-1, 3), d_cam[..., 2].reshape(-1)


def _ray_box(origins: Tensor, dirs: Tensor, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    inv = 1.0 / torch.where(dirs.abs() < 1e-12, torch.full_like(dirs, 1e-12), dirs)
    ta, tb = (lo - origins) * inv, (hi - origins) * inv
    return torch.minimum(ta, tb).max(dim=1).values, torch.maximum(ta, tb).min(dim=1).values


def _samples_in(
    grid: DensityGrid, o: Tensor, d: Tensor, base: Tensor, ta: Tensor, tb: Tensor, step: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Fixed-step samples of rays (o, d) within [ta, tb), on the per-ray grid t = base + (k + ½)·step so that
    consecutive blocks never sample the same point twice. Returns (row, t_mid, voxel, σ), row-major."""
    k0 = torch.ceil((ta - base) / step - 0.5).long()
    n = (torch.ceil((tb - base) / step - 0.5).long() - k0).clamp_min(0)
    total = int(n.sum())
    row = torch.repeat_interleave(torch.arange(n.numel(), device=n.device), n, output_size=total)
    k = k0[row] + torch.arange(total, device=n.device) - (torch.cumsum(n, 0) - n)[row]
    t_mid = base[row] + (k.to(base.dtype) + 0.5) * step
    nx, ny, nz = grid.shape
    ijk = torch.floor((o[row] + t_mid[:, None] * d[row] - grid.lo) / grid.voxel).long()
    ijk = torch.minimum(ijk.clamp_min(0), torch.tensor([nx - 1, ny - 1, nz - 1], device=ijk.device))
    vox = (ijk[:, 0] * ny + ijk[:, 1]) * nz + ijk[:, 2]
    return row, t_mid, vox, grid.density.reshape(-1)[vox]


def _block_distance(blocks: Tensor) -> Tensor:
    """Chessboard distance (in blocks) from each block to the nearest occupied one; 0 on occupied blocks."""
    from scipy.ndimage import distance_transform_cdt

    if not bool(blocks.any()):
        return torch.full(blocks.shape, max(blocks.shape), dtype=torch.long, device=blocks.device)
    dist = distance_transform_cdt(~blocks.cpu().numpy(), metric="chessboard")
    return torch.from_numpy(dist).long().to(blocks.device)


def _march_torch(
    grid: DensityGrid, origins: Tensor, dirs: Tensor, near: float, far: float, step: float
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """March all rays at once over the 4³-voxel blocks, front to back: a ray in an occupied block samples it
    and moves to the next block; a ray in an empty block leaps out of the whole cube of blocks that the
    distance transform says is empty (the empty-space skipping). Samples are weighted as they come
    (w = T·(1 − e^{−σδ})) and rays retire once T < 1e-4.

    Returns (ray, t_start, t_end, voxel, weight) of the samples with density, front to back within each ray.
    """
    dist = _block_distance(grid.blocks()).reshape(-1)
    bdims = torch.tensor([-(-n // BLOCK) for n in grid.shape], device=origins.device)
    side = grid.voxel * BLOCK
    t0, t1 = _ray_box(origins, dirs, grid.lo, grid.hi)
    t0, t1 = t0.clamp_min(near), t1.clamp_max(far)
    rays = torch.nonzero(t1 > t0).flatten()
    safe_d = torch.where(dirs.abs() < 1e-12, torch.full_like(dirs, 1e-12), dirs)
    # Per-ray state in one float64 tensor (block lookups right at block faces must not round back into the
    # block a ray just left): [o 0:3, 1/d 3:6, d 6:9, t 9, t_end 10, t_start 11]; rays retire by one gather.
    fs = torch.cat([origins, 1.0 / safe_d, dirs, t0[:, None], t1[:, None], t0[:, None]], dim=1)[rays].double()
    lo = grid.lo.double()
    log_t = torch.zeros(rays.numel(), dtype=torch.float64, device=rays.device)
    outs: list[tuple[Tensor, ...]] = []
    while rays.numel():
        o, inv_d, t = fs[:, 0:3], fs[:, 3:6], fs[:, 9]
        idx = torch.floor((o + (t + 1e-7 * side)[:, None] * fs[:, 6:9] - lo) / side).long()
        idx = torch.minimum(idx.clamp_min(0), bdims - 1)
        k = dist[(idx[:, 0] * bdims[1] + idx[:, 1]) * bdims[2] + idx[:, 2]]
        # Exit of the empty cube of half-width k−1 around the block (just the block itself when k <= 1).
        reach = idx + torch.where(inv_d > 0, 1, 0) + torch.where(inv_d > 0, 1, -1) * (k - 1).clamp_min(0)[:, None]
        t_exit = ((reach.to(o.dtype) * side + lo - o) * inv_d).min(dim=1).values
        t_exit = torch.minimum(torch.maximum(t_exit, t + 1e-6 * side), fs[:, 10])
        occ = torch.nonzero((k == 0) & (t_exit > t)).flatten()
        if occ.numel():
            f_occ = fs[occ]
            row, t_mid, vox, sigma = _samples_in(
                grid, f_occ[:, 0:3], f_occ[:, 6:9], f_occ[:, 11], t[occ], t_exit[occ], step
            )
            keep = sigma > 0
            row, t_mid, vox, sigma = row[keep], t_mid[keep], vox[keep], sigma[keep]
            tau = (sigma * step).double()
            cs = torch.cumsum(tau, 0)
            first = torch.ones_like(row, dtype=torch.bool)
            first[1:] = row[1:] != row[:-1]
            seg = torch.cumsum(first.long(), 0) - 1
            excl = cs - tau - (cs - tau)[first][seg]
            trans = torch.exp(log_t[occ][row] - excl)
            w = torch.where(trans >= T_MIN, trans * -torch.expm1(-tau), torch.zeros_like(trans))
            live = w > 0
            outs.append((rays[occ][row][live], t_mid[live].to(sigma.dtype), vox[live], w[live].to(sigma.dtype)))
            log_t = log_t.index_add(0, occ[row], -tau)
        fs[:, 9] = t_exit
        alive = torch.nonzero((t_exit < fs[:, 10]) & (log_t >= math.log(T_MIN))).flatten()
        fs, log_t, rays = fs[alive], log_t[alive], rays[alive]
    if not outs:
        empty = torch.zeros(0, dtype=dirs.dtype, device=dirs.device)
        return torch.zeros(0, dtype=torch.long, device=dirs.device), empty, empty, empty.long(), empty
    ray, t_mid, vox, w = (torch.cat(v) for v in zip(*outs, strict=True))
    order = torch.sort(ray, stable=True).indices
    ray, t_mid, vox, w = ray[order], t_mid[order], vox[order], w[order]
    return ray, t_mid - 0.5 * step, t_mid + 0.5 * step, vox, w


def _sample_nerfacc(
    grid: DensityGrid, origins: Tensor, dirs: Tensor, near: float, far: float, step: float
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """nerfacc's CUDA occupancy-grid marcher over our grid (one level, our occupancy as its binaries)."""
    from nerfacc import OccGridEstimator, render_weight_from_density

    nx, ny, nz = grid.shape
    est = OccGridEstimator(torch.cat([grid.lo, grid.hi]), resolution=[nx, ny, nz], levels=1).to(origins.device)
    est.binaries = grid.occupied[None].clone()
    est.occs = grid.density.reshape(-1).clone()
    flat_density = grid.density.reshape(-1)
    hi_idx = torch.tensor([nx - 1, ny - 1, nz - 1], device=origins.device)

    def voxels_of(ray: Tensor, t_s: Tensor, t_e: Tensor) -> Tensor:
        pos = origins[ray] + (0.5 * (t_s + t_e))[:, None] * dirs[ray]
        ijk = torch.minimum(torch.floor((pos - grid.lo) / grid.voxel).long().clamp_min(0), hi_idx)
        return (ijk[:, 0] * ny + ijk[:, 1]) * nz + ijk[:, 2]

    def sigma_fn(t_s: Tensor, t_e: Tensor, ray: Tensor) -> Tensor:
        return flat_density[voxels_of(ray, t_s, t_e)]

    ray, t_s, t_e = est.sampling(
        origins, dirs, sigma_fn=sigma_fn, near_plane=near, far_plane=far, render_step_size=step, early_stop_eps=T_MIN
    )
    vox = voxels_of(ray, t_s, t_e)
    weights, _, _ = render_weight_from_density(t_s, t_e, flat_density[vox], ray_indices=ray, n_rays=len(origins))
    return ray, t_s, t_e, vox, weights


def _voxel_rows(grid: DensityGrid, values: Tensor, values_on: str) -> tuple[Tensor, Tensor]:
    """Per-voxel value table and, per flat voxel id, its row (-1 none): from points (mean of the points in the
    value-source voxel) or from the occupied-voxel list."""
    n_vox = grid.density.numel()
    dev = grid.density.device
    if values_on == "voxels":
        ids = grid.voxel_ids
        if values.shape[0] != ids.numel():
            raise SegAnyError("invalid_array", f"values has {values.shape[0]} rows, the grid {ids.numel()} voxels")
        row = torch.full((n_vox,), -1, dtype=torch.long, device=dev)
        row[ids] = torch.arange(ids.numel(), device=dev)
        return values, row
    if values.shape[0] != grid.point_voxel.numel():
        raise SegAnyError(
            "invalid_array", f"values has {values.shape[0]} rows, the grid {grid.point_voxel.numel()} points"
        )
    inside = grid.point_voxel >= 0
    pv = grid.point_voxel[inside]
    uniq, inv = torch.unique(pv, return_inverse=True)
    sums = torch.zeros(uniq.numel(), values.shape[1], dtype=values.dtype, device=dev).index_add(0, inv, values[inside])
    cnt = torch.bincount(inv, minlength=uniq.numel()).to(values.dtype)
    table = sums / cnt[:, None]
    row_of_point_voxel = torch.full((n_vox,), -1, dtype=torch.long, device=dev)
    row_of_point_voxel[uniq] = torch.arange(uniq.numel(), device=dev)
    src = grid.value_voxel
    row = torch.where(src >= 0, row_of_point_voxel[src.clamp_min(0)], torch.full_like(src, -1))
    return table, row


def _value_taps(grid: DensityGrid, row: Tensor, vox: Tensor, pos: Tensor, interp: str) -> list[tuple[Tensor, Tensor]]:
    """(value-table rows, weights) per sample for each tap of the interpolation; weights sum to 1 per sample."""
    if interp == "nearest":
        rows = row[vox]
        has = rows >= 0
        return [(rows.clamp_min(0), has.to(pos.dtype))]
    nx, ny, nz = grid.shape
    # A one-voxel border of "no value" around the row table spares the per-tap range checks.
    padded = F.pad(row.reshape(1, nx, ny, nz), (1, 1, 1, 1, 1, 1), value=-1).reshape(-1)
    g = (pos - grid.lo) / grid.voxel + 0.5  # padded voxel-centre coordinates
    base = torch.floor(g).long()
    frac = g - base
    dims = torch.tensor([nx + 2, ny + 2, nz + 2], device=pos.device)
    base = torch.minimum(base.clamp_min(0), dims - 2)
    stride = (ny + 2) * (nz + 2), nz + 2, 1
    axes = [((base[:, a] * stride[a], 1 - frac[:, a]), ((base[:, a] + 1) * stride[a], frac[:, a])) for a in range(3)]
    taps = []
    for (ox, wx), (oy, wy), (oz, wz) in itertools.product(*axes):
        rows = padded[ox + oy + oz]
        taps.append((rows.clamp_min(0), wx * wy * wz * (rows >= 0)))
    norm = torch.stack([w for _, w in taps]).sum(0).clamp_min(1e-12)
    return [(rows, w / norm) for rows, w in taps]


def render_volume(
    grid: DensityGrid,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    values: Tensor | None = None,
    values_on: str = "points",
    near: float = 0.01,
    far: float = 1e10,
    step: float | None = None,
    interp: str = "trilinear",
    backend: str = "auto",
) -> VolumeRender:
    """Render B views of the grid: expected depth, alpha, and `values` (P, C) per point (or (V, C) per occupied
    voxel with values_on="voxels") composited along rays, differentiable with respect to `values`.

    `interp`: "trilinear" blends the values of the 8 voxels around each sample (voxels without a value left
    out, the rest renormalised), "nearest" takes the sample's own voxel. Memory: samples × C per tap.
    `step` defaults to half a voxel. backend: "auto" (nerfacc for CUDA tensors, torch otherwise), "cuda",
    "torch" / "cpu".
    """
    if viewmats.ndim != 3 or viewmats.shape[1:] != (4, 4) or Ks.shape != (viewmats.shape[0], 3, 3):
        raise SegAnyError(
            "invalid_array", f"viewmats {tuple(viewmats.shape)} / Ks {tuple(Ks.shape)}: expected (B,4,4) / (B,3,3)"
        )
    if interp not in ("trilinear", "nearest"):
        raise SegAnyError("bad_request", f"interp must be 'trilinear' or 'nearest', not {interp!r}")
    if values_on not in ("points", "voxels"):
        raise SegAnyError("bad_request", f"values_on must be 'points' or 'voxels', not {values_on!r}")
    if values is not None and values.ndim != 2:
        raise SegAnyError("invalid_array", f"values has shape {tuple(values.shape)}, expected (rows, C)")
    if backend not in ("auto", "cuda", "cpu", "torch"):
        raise SegAnyError("bad_request", f"unknown backend {backend!r}; expected auto, cuda, cpu or torch")
    step = 0.5 * grid.voxel if step is None else step
    dtype = grid.density.dtype
    origins, dirs, dz = camera_rays(viewmats.to(dtype), Ks.to(dtype), width, height)
    n_rays = origins.shape[0]
    if backend == "cuda" or (backend == "auto" and grid.density.is_cuda):
        if not grid.density.is_cuda:
            raise SegAnyError("unsupported", "backend='cuda' needs the grid on a CUDA device")
        ray, t_s, t_e, vox, weights = _sample_nerfacc(grid, origins, dirs, near, far, step)
    else:
        ray, t_s, t_e, vox, weights = _march_torch(grid, origins, dirs, near, far, step)
    alpha = torch.zeros(n_rays, dtype=dtype, device=dirs.device).index_add(0, ray, weights)
    zsum = torch.zeros_like(alpha).index_add(0, ray, weights * 0.5 * (t_s + t_e) * dz[ray])
    depth = torch.where(alpha > 0, zsum / alpha.clamp_min(1e-10), torch.zeros_like(alpha))
    out = None
    if values is not None:
        table, row = _voxel_rows(grid, values, values_on)
        pos = origins[ray] + (0.5 * (t_s + t_e))[:, None] * dirs[ray]
        taps = _value_taps(grid, row, vox, pos, interp)
        per_sample = sum(coef[:, None].to(values.dtype) * table[rows] for rows, coef in taps)
        out = torch.zeros(n_rays, values.shape[1], dtype=values.dtype, device=values.device)
        out = out.index_add(0, ray, weights[:, None].to(values.dtype) * per_sample)
        out = out.reshape(-1, height, width, values.shape[1])
    b = viewmats.shape[0]
    return VolumeRender(
        depth=depth.reshape(b, height, width),
        alpha=alpha.reshape(b, height, width),
        values=out,
        samples=Samples(ray, t_s, t_e, vox, weights),
    )
