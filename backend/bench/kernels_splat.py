"""Benchmark rows for splat rasterization and point-cloud volume rendering (called by `segany bench kernels`).

Every figure has its baseline from the same run: the per-Gaussian torch rasterizer (the plain way to write
3DGS in torch) for splats, a plain fixed-step marcher without empty-space skipping for volumes, and on CUDA
gsplat's own `rasterization` called directly.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from segany.bench.report import Row, timeit
from segany.formats import load_scene
from segany.kernels.splat_raster import rasterize_splats, rasterize_splats_reference
from segany.kernels.volume import T_MIN, DensityGrid, build_density_grid, camera_rays, render_volume
from segany.samples import shared_data_dir

DATA = shared_data_dir() / "splats"
GARDEN = DATA / "garden_points.npz"
DONUT = DATA / "donut.ply"


def torus_scene(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """n flat Gaussians tiling a torus (R=1, r=0.4) like a trained object scene: oriented along the surface,
    log-normal sizes around the sample spacing, opacities 0.3..1."""
    g = torch.Generator().manual_seed(seed)
    big, small = 1.0, 0.4
    u = torch.rand(n, generator=g) * 2 * math.pi
    v = torch.rand(n, generator=g) * 2 * math.pi
    ring = big + small * torch.cos(v)
    means = torch.stack([ring * torch.cos(u), ring * torch.sin(u), small * torch.sin(v)], dim=1)
    normal = torch.stack([torch.cos(v) * torch.cos(u), torch.cos(v) * torch.sin(u), torch.sin(v)], dim=1)
    # Quaternion taking +z to the normal, then a random spin about the normal.
    z = torch.tensor([0.0, 0.0, 1.0]).expand_as(normal)
    axis = torch.nn.functional.normalize(torch.cross(z, normal, dim=1), dim=1)
    half = 0.5 * torch.acos((normal * z).sum(1).clamp(-1, 1))
    w1, x1, y1, z1 = torch.cos(half), *(axis * torch.sin(half)[:, None]).unbind(1)
    spin = 0.5 * torch.rand(n, generator=g) * math.pi
    w2, z2 = torch.cos(spin), torch.sin(spin)
    quats = torch.stack([w1 * w2 - z1 * z2, x1 * w2 + y1 * z2, y1 * w2 - x1 * z2, w1 * z2 + z1 * w2], dim=1)
    spacing = math.sqrt(4 * math.pi**2 * big * small / n)
    tangent = spacing * torch.exp(0.4 * torch.randn(n, 2, generator=g))
    scales = torch.cat([tangent, 0.15 * tangent.min(1, keepdim=True).values], dim=1)
    return means, quats, scales, 0.3 + 0.7 * torch.rand(n, generator=g)


def orbit_camera(size: int, dist: float, elev: float, fov_deg: float = 50.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One OpenCV camera on the +x side looking at the origin, z up."""
    eye = torch.tensor([dist * math.cos(elev), 0.0, dist * math.sin(elev)])
    fwd = -eye / eye.norm()
    right = torch.nn.functional.normalize(torch.cross(fwd, torch.tensor([0.0, 0.0, 1.0]), dim=0), dim=0)
    rot = torch.stack([right, torch.cross(fwd, right, dim=0), fwd])
    vm = torch.eye(4)
    vm[:3, :3], vm[:3, 3] = rot, -rot @ eye
    f = 0.5 * size / math.tan(math.radians(fov_deg) / 2)
    k = torch.tensor([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]])
    return vm[None], k[None]


def _splat_fwd_bwd(scene: tuple, feats: torch.Tensor, vm: torch.Tensor, ks: torch.Tensor, size: int, fn) -> None:
    f = feats.detach().requires_grad_()
    out = fn(*scene, viewmats=vm, Ks=ks, width=size, height=size, features=f).features
    out.square().sum().backward()


def _measure(fn, repeat: int) -> tuple[float, float]:
    """Median wall and process-CPU seconds after one warm-up run. On a busy shared machine the wall time
    mostly measures waiting for a core; with one torch thread the CPU time is what an idle machine's wall
    time would be."""
    fn()
    walls, cpus = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return float(np.median(walls)), float(np.median(cpus))


def _pair(
    case: str, ours: tuple[float, float], base: tuple[float, float], baseline: str, target: str | None
) -> list[Row]:
    """The same measurement as wall time and as process CPU time (see `_measure`)."""
    return [
        Row(case, "wall time", ours[0], "s", baseline, base[0], target),
        Row(case, "process CPU time", ours[1], "s", baseline, base[1], target),
    ]


def _splat_rows(name: str, scene: tuple, size: int, channels: int, n_sub: int, repeat: int) -> list[Row]:
    """Our tiled CPU path vs the per-Gaussian baseline on `n_sub` Gaussians, extrapolated linearly in N."""
    n = scene[0].shape[0]
    vm, ks = orbit_camera(size, 3.4, 0.6) if name.startswith("torus") else _donut_camera(scene[0], size)
    feats = torch.randn(n, channels, generator=torch.Generator().manual_seed(1))
    ours = _measure(lambda: _splat_fwd_bwd(scene, feats, vm, ks, size, rasterize_splats), repeat=repeat)
    pick = torch.randperm(n, generator=torch.Generator().manual_seed(2))[:n_sub]
    sub = tuple(t[pick] for t in scene)
    base = _measure(lambda: _splat_fwd_bwd(sub, feats[pick], vm, ks, size, rasterize_splats_reference), repeat=1)
    case = (
        f"splat fwd+bwd, {name} {n:,} G, {size}², {channels} ch (baseline on {n_sub} G, ×{n / n_sub:.0f} linear in N)"
    )
    scaled = (base[0] * n / n_sub, base[1] * n / n_sub)
    return _pair(case, ours, scaled, "per-Gaussian torch", "< 0.5 s on 2 cores" if n >= 100_000 else None)


def _donut_scene() -> tuple[torch.Tensor, ...]:
    d = load_scene(DONUT)
    return (
        torch.from_numpy(d.means),
        torch.from_numpy(d.quats),
        torch.from_numpy(d.log_scales).exp(),
        torch.sigmoid(torch.from_numpy(d.logit_opacities)),
    )


def _donut_camera(means: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    vm, ks = orbit_camera(size, 0.3, 0.6, fov_deg=45.0)
    vm[0, :3, 3] -= vm[0, :3, :3] @ means.mean(0)
    return vm, ks


def plain_march(
    grid: DensityGrid, vm: torch.Tensor, ks: torch.Tensor, width: int, height: int, step: float
) -> torch.Tensor:
    """The baseline marcher: every ray samples its whole box span at a fixed step, no skipping; returns alpha."""
    origins, dirs, _ = camera_rays(vm, ks, width, height)
    inv = 1.0 / torch.where(dirs.abs() < 1e-12, torch.full_like(dirs, 1e-12), dirs)
    ta, tb = (grid.lo - origins) * inv, (grid.hi - origins) * inv
    t0 = torch.minimum(ta, tb).max(1).values.clamp_min(0.01)
    t1 = torch.maximum(ta, tb).min(1).values
    n_steps = int(((t1 - t0).max() / step).ceil().clamp_min(0))
    dims = torch.tensor(grid.shape)
    flat = grid.density.reshape(-1)
    trans = torch.ones_like(t0)
    for k0 in range(0, n_steps, 32):
        t = t0[:, None] + (torch.arange(k0, min(k0 + 32, n_steps)) + 0.5) * step
        ijk = torch.floor((origins[:, None] + t[..., None] * dirs[:, None] - grid.lo) / grid.voxel).long()
        ijk = torch.minimum(ijk.clamp_min(0), dims - 1)
        sigma = flat[(ijk[..., 0] * dims[1] + ijk[..., 1]) * dims[2] + ijk[..., 2]] * (t < t1[:, None])
        keep = torch.cumprod(torch.exp(-sigma * step), dim=1) * trans[:, None]
        trans = torch.where(trans >= T_MIN, keep[:, -1], trans)
    return 1 - trans


def _volume_rows(scale: int, resolution: int, repeat: int) -> list[Row]:
    d = np.load(GARDEN)
    pts = torch.tensor(d["means3d"])
    cols = torch.tensor(d["colors"]).float() / 255
    ks = torch.tensor(d["Ks"]).clone()
    ks[:, :2] /= scale
    vm = torch.tensor(d["viewmats"])
    w, h = int(d["width"]) // scale, int(d["height"]) // scale
    box = torch.tensor(np.percentile(d["means3d"], [1, 99], axis=0), dtype=torch.float32)
    build = _measure(lambda: build_density_grid(pts, resolution, aabb=box), repeat=repeat)
    grid = build_density_grid(pts, resolution, aabb=box)
    step = 0.5 * grid.voxel
    ours = _measure(lambda: render_volume(grid, vm, ks, w, h, values=cols, step=step), repeat=repeat)
    base = _measure(lambda: plain_march(grid, vm, ks, w, h, step), repeat=1)
    case = (
        f"volume, garden {len(pts):,} pts, grid {'×'.join(map(str, grid.shape))} built in {build[1]:.2f} s, "
        f"{len(vm)} cams {w}×{h}, rgb"
    )
    return _pair(case, ours, base, "fixed-step marcher, no skipping, alpha only", None)


def _cuda_rows(quick: bool) -> list[Row]:
    from gsplat import rasterization

    n, w, h, c = (20_000, 320, 180, 32) if quick else (1_000_000, 1920, 1080, 32)
    scene = tuple(t.cuda() for t in torus_scene(n))
    vm, ks = orbit_camera(w, 3.4, 0.6)
    ks[0, 1, 2] = h / 2
    vm, ks = vm.cuda(), ks.cuda()
    feats = torch.randn(n, c, device="cuda")

    def ours(backend: str) -> None:
        f = feats.detach().requires_grad_()
        r = rasterize_splats(*scene, viewmats=vm, Ks=ks, width=w, height=h, features=f, backend=backend)
        r.features.square().sum().backward()
        torch.cuda.synchronize()

    def raw() -> None:
        f = feats.detach().requires_grad_()
        img, _, _ = rasterization(*scene, f, vm, ks, w, h, render_mode="RGB+ED", packed=False)
        img[..., :c].square().sum().backward()
        torch.cuda.synchronize()

    base = timeit(raw, repeat=5)
    name = f"{n:,} Gaussians (torus), {w}×{h}, {c} ch, fwd+bwd"
    via_api = timeit(lambda: ours("cuda"), repeat=5)
    torch_path = timeit(lambda: ours("torch"), repeat=2)
    return [
        Row(f"splat CUDA via rasterize_splats, {name}", "time", via_api, "s", "gsplat.rasterization direct", base),
        Row(f"splat CUDA, our tiled torch path, {name}", "time", torch_path, "s", "gsplat.rasterization direct", base),
    ]


def bench_rows(quick: bool) -> list[Row]:
    """Splat and volume rows; quick = tiny sizes for the CI smoke test."""
    if quick:
        rows = _splat_rows("torus", torus_scene(3000), 64, 8, n_sub=20, repeat=1)
        rows += _volume_rows(scale=8, resolution=48, repeat=1)
    else:
        rows = _splat_rows("torus", torus_scene(100_000), 256, 32, n_sub=200, repeat=5)
        rows += _splat_rows("donut.ply", _donut_scene(), 256, 32, n_sub=200, repeat=5)
        rows += _volume_rows(scale=2, resolution=256, repeat=3)
    if torch.cuda.is_available():
        rows += _cuda_rows(quick)
    return rows
