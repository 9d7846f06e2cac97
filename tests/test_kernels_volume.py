"""Point-cloud volume rendering against a per-ray Python loop, finite differences, and the real garden scene."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from segany.errors import SegAnyError
from segany.kernels.volume import build_density_grid, render_volume
from segany.samples import shared_data_dir

GARDEN = shared_data_dir() / "splats" / "garden_points.npz"  # read in place, never copied


def sparse_points() -> torch.Tensor:
    """Points at least 6 voxels apart (resolution 16 over the box), so every occupied voxel has one nearest
    point-holding voxel, plus a pair sharing a voxel."""
    pts = [[0.1, 0.1, 0.1], [0.9, 0.2, 0.15], [0.5, 0.8, 0.5], [0.15, 0.7, 0.9], [0.85, 0.85, 0.85], [0.5, 0.3, 0.6]]
    pts.append([0.505, 0.305, 0.605])
    return torch.tensor(pts, dtype=torch.float64)


def look_from(eye: list[float], target: list[float], w: int, h: int, f: float) -> tuple[torch.Tensor, torch.Tensor]:
    eye_t, tgt = np.array(eye), np.array(target)
    fwd = (tgt - eye_t) / np.linalg.norm(tgt - eye_t)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    rot = np.stack([right, np.cross(fwd, right), fwd])
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = rot, -rot @ eye_t
    k = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]])
    return torch.tensor(m[None]), torch.tensor(k[None])


def trilinear(dense: np.ndarray, has: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Blend the values of the 8 voxel centres around grid coordinate g, leaving out voxels without a value."""
    base = np.floor(g - 0.5).astype(int)
    frac = g - 0.5 - base
    acc, norm = np.zeros(dense.shape[-1]), 0.0
    for corner in np.ndindex(2, 2, 2):
        ijk = base + np.array(corner)
        if (ijk < 0).any() or (ijk >= np.array(has.shape)).any() or not has[tuple(ijk)]:
            continue
        wgt = np.prod(np.where(np.array(corner) == 1, frac, 1 - frac))
        acc += wgt * dense[tuple(ijk)]
        norm += wgt
    return acc / norm


def per_ray_reference(grid, vm, ks, w, h, step, voxel_values=None, interp="nearest"):
    """March every pixel's ray on its own from where it enters the box, one fixed step at a time."""
    dens = grid.density.numpy()
    lo, hi = grid.lo.numpy(), grid.hi.numpy()
    rot, trans = vm[0, :3, :3].numpy(), vm[0, :3, 3].numpy()
    origin = -rot.T @ trans
    k = ks[0].numpy()
    alpha, depth = np.zeros((h, w)), np.zeros((h, w))
    vals = None if voxel_values is None else np.zeros((h, w, voxel_values.shape[-1]))
    for y in range(h):
        for x in range(w):
            dc = np.array([(x + 0.5 - k[0, 2]) / k[0, 0], (y + 0.5 - k[1, 2]) / k[1, 1], 1.0])
            dc /= np.linalg.norm(dc)
            d = rot.T @ dc
            with np.errstate(divide="ignore"):
                ta, tb = (lo - origin) / d, (hi - origin) / d
            t0, t1 = max(np.minimum(ta, tb).max(), 0.01), np.maximum(ta, tb).min()
            trans_, kk = 1.0, 0
            while True:
                t = t0 + (kk + 0.5) * step
                if t >= t1 or trans_ < 1e-4:
                    break
                ijk = np.clip(np.floor((origin + t * d - lo) / grid.voxel).astype(int), 0, np.array(dens.shape) - 1)
                sigma = dens[tuple(ijk)]
                wgt = trans_ * (1 - math.exp(-sigma * step))
                alpha[y, x] += wgt
                depth[y, x] += wgt * t * dc[2]
                if vals is not None and sigma > 0:
                    if interp == "nearest":
                        vals[y, x] += wgt * voxel_values[tuple(ijk)]
                    else:
                        vals[y, x] += wgt * trilinear(voxel_values, dens > 0, (origin + t * d - lo) / grid.voxel)
                trans_ *= math.exp(-sigma * step)
                kk += 1
            depth[y, x] = depth[y, x] / alpha[y, x] if alpha[y, x] > 0 else 0.0
    return alpha, depth, vals


def test_density_grid_matches_the_splatting_formula():
    pts = sparse_points()
    g = build_density_grid(pts, resolution=16, kernel_sigma=0.7, density_scale=3.0)
    centres_idx = torch.floor((pts - g.lo) / g.voxel).long()
    r = math.ceil(2.5 * 0.7)
    want = np.zeros(g.shape)
    for p in centres_idx.numpy():
        for off in np.ndindex(2 * r + 1, 2 * r + 1, 2 * r + 1):
            q = p + np.array(off) - r
            if (q >= 0).all() and (q < np.array(g.shape)).all():
                want[tuple(q)] += math.exp(-0.5 * float(((np.array(off) - r) ** 2).sum()) / 0.7**2)
    want *= 3.0
    want = np.where(want >= 0.01, want / g.voxel, 0.0)
    np.testing.assert_allclose(g.density.numpy(), want, rtol=1e-6, atol=1e-8)
    assert (g.point_voxel >= 0).all()
    assert g.blocks().any() and not g.blocks().all(), "blocks far from every point are empty and skipped"


def test_march_matches_per_ray_reference_with_voxel_values():
    pts = sparse_points()
    g = build_density_grid(pts, resolution=16)
    vm, ks = look_from([2.2, -1.5, 1.6], [0.5, 0.5, 0.5], 12, 9, 11.0)
    n_vox = g.voxel_ids.numel()
    vox_vals = torch.randn(n_vox, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    step = 0.37 * g.voxel
    r = render_volume(g, vm, ks, 12, 9, values=vox_vals, values_on="voxels", step=step, interp="nearest")
    dense = np.zeros((*g.shape, 2))
    dense.reshape(-1, 2)[g.voxel_ids.numpy()] = vox_vals.numpy()
    alpha, depth, vals = per_ray_reference(g, vm, ks, 12, 9, step, dense)
    assert alpha.max() > 0.5 and alpha.min() == 0.0, "some rays hit points, some miss everything"
    np.testing.assert_allclose(r.alpha[0].numpy(), alpha, atol=1e-9)
    np.testing.assert_allclose(r.depth[0].numpy(), depth, atol=1e-9)
    np.testing.assert_allclose(r.values[0].numpy(), vals, atol=1e-9)
    s = r.samples
    assert (s.weights > 0).all() and (s.t_ends > s.t_starts).all()
    assert (torch.diff(s.ray_ids) >= 0).all(), "samples are grouped by ray"
    smooth = render_volume(g, vm, ks, 12, 9, values=vox_vals, values_on="voxels", step=step)
    _, _, want = per_ray_reference(g, vm, ks, 12, 9, step, dense, interp="trilinear")
    np.testing.assert_allclose(smooth.values[0].numpy(), want, atol=1e-9)


def test_point_values_take_the_nearest_point_voxel_mean():
    pts = sparse_points()
    g = build_density_grid(pts, resolution=16)
    vals = torch.arange(7, dtype=torch.float64)[:, None] * torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    vm, ks = look_from([2.2, -1.5, 1.6], [0.5, 0.5, 0.5], 12, 9, 11.0)
    step = 0.5 * g.voxel
    r = render_volume(g, vm, ks, 12, 9, values=vals, step=step, interp="nearest")
    cells = np.floor((pts.numpy() - g.lo.numpy()) / g.voxel).astype(int)
    dense = np.zeros((*g.shape, 2))
    for ijk in zip(*np.nonzero(g.density.numpy() > 0), strict=True):
        dist = ((cells - np.array(ijk)) ** 2).sum(1)
        near = dist == dist.min()
        dense[ijk] = vals.numpy()[near].mean(0)
    _, _, want = per_ray_reference(g, vm, ks, 12, 9, step, dense)
    np.testing.assert_allclose(r.values[0].numpy(), want, atol=1e-9)


def test_value_gradients_by_finite_differences():
    pts = sparse_points()
    g = build_density_grid(pts, resolution=16)
    vm, ks = look_from([2.2, -1.5, 1.6], [0.5, 0.5, 0.5], 8, 6, 7.5)
    gen = torch.Generator().manual_seed(1)
    vals = torch.rand(7, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    wts = torch.randn(1, 6, 8, 3, dtype=torch.float64, generator=gen)

    def loss(v: torch.Tensor) -> torch.Tensor:
        return (render_volume(g, vm, ks, 8, 6, values=v).values * wts).sum() ** 2

    loss(vals).backward()
    eps = 1e-6
    for idx in np.ndindex(7, 3):
        up, dn = vals.detach().clone(), vals.detach().clone()
        up[idx] += eps
        dn[idx] -= eps
        fd = (loss(up) - loss(dn)).item() / (2 * eps)
        assert abs(fd - vals.grad[idx].item()) < 1e-6 * max(1.0, abs(fd)), (idx, fd, vals.grad[idx].item())


def test_bad_inputs_raise_actionable_errors():
    with pytest.raises(SegAnyError) as e:
        build_density_grid(torch.zeros(0, 3))
    assert e.value.code == "invalid_array"
    g = build_density_grid(sparse_points(), resolution=8)
    vm, ks = look_from([2.2, -1.5, 1.6], [0.5, 0.5, 0.5], 4, 4, 4.0)
    with pytest.raises(SegAnyError) as e:
        render_volume(g, vm, ks, 4, 4, values=torch.zeros(3, 1))
    assert e.value.code == "invalid_array"
    with pytest.raises(SegAnyError) as e:
        render_volume(g, vm, ks, 4, 4, values=torch.zeros(7, 1), values_on="faces")
    assert e.value.code == "bad_request"


def garden(scale: int) -> tuple:
    d = np.load(GARDEN)
    pts = torch.tensor(d["means3d"])
    cols = torch.tensor(d["colors"]).float() / 255
    ks = torch.tensor(d["Ks"]).clone()
    ks[:, :2] /= scale
    box = torch.tensor(np.percentile(d["means3d"], [1, 99], axis=0), dtype=torch.float32)
    return pts, cols, torch.tensor(d["viewmats"]), ks, int(d["width"]) // scale, int(d["height"]) // scale, box


def test_garden_renders_from_its_real_camera(tmp_path: Path):
    from PIL import Image

    pts, cols, vm, ks, w, h, box = garden(4)
    g = build_density_grid(pts, resolution=128, aabb=box)
    r = render_volume(g, vm[:1], ks[:1], w, h, values=cols)
    Image.fromarray((r.values[0].clamp(0, 1).numpy() * 255).astype(np.uint8)).save(tmp_path / "garden.png")
    assert r.alpha[0, h // 3 :].mean() > 0.97, "the table, the ground and the plants fill the lower two thirds"
    centre = r.depth[0, h // 2 - 5 : h // 2 + 5, w // 2 - 5 : w // 2 + 5]
    assert 0.5 < centre.median() < 2.0, f"the table is 1-1.5 units in front of the camera, {centre.median():.2f}"
    top, bottom = r.values[0, : h // 4].reshape(-1, 3), r.values[0, -h // 4 :].reshape(-1, 3)
    assert top[:, 1].mean() > top[:, 2].mean(), "green plants at the top"
    assert bottom.mean() > 0.25, "lit ground and table at the bottom"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_cuda_nerfacc_matches_cpu_path():
    pts, cols, vm, ks, w, h, box = garden(4)
    g = build_density_grid(pts, resolution=128, aabb=box)
    cpu = render_volume(g, vm[:1], ks[:1], w, h, values=cols)
    gc = build_density_grid(pts.cuda(), resolution=128, aabb=box.cuda())
    gpu = render_volume(gc, vm[:1].cuda(), ks[:1].cuda(), w, h, values=cols.cuda(), backend="cuda")
    for name in ("alpha", "values"):
        diff = (getattr(gpu, name).cpu() - getattr(cpu, name)).abs()
        assert diff.mean() < 0.02 and (diff < 0.1).float().mean() > 0.97, name
    same = render_volume(gc, vm[:1].cuda(), ks[:1].cuda(), w, h, values=cols.cuda(), backend="torch")
    torch.testing.assert_close(same.values.cpu(), cpu.values, atol=1e-4, rtol=1e-4)
