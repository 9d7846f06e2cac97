"""Mesh rasterizer against a deliberately simple per-pixel, per-triangle Python ray caster (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segany.errors import SegAnyError
from segany.kernels.mesh_raster import interpolate, pick_vertex, rasterize_mesh, shade

W, H = 16, 16
K = np.array([[14.0, 0.0, 8.0], [0.0, 13.0, 7.5], [0.0, 0.0, 1.0]], dtype=np.float32)
EDGE_TOL = 1e-5  # pixels whose centre is this close (in barycentrics) to an edge may go either way


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """OpenCV world-to-camera matrix: z towards the target, y down, world +z up."""
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, np.array([0.0, 0.0, 1.0]))
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    m = np.eye(4)
    m[:3, :3] = np.stack([x, y, z])
    m[:3, 3] = -m[:3, :3] @ eye
    return m.astype(np.float32)


def reference(vertices: np.ndarray, faces: np.ndarray, viewmat: np.ndarray, k: np.ndarray, near: float = 1e-3):
    """Per pixel: loop over all triangles, Möller–Trumbore in camera space, keep the nearest z.

    Returns ids, depth, bary and an `ambiguous` mask of pixels that sit on an edge or on a depth tie."""
    cam = vertices.astype(np.float64) @ viewmat[:3, :3].T.astype(np.float64) + viewmat[:3, 3]
    ids = np.full((H, W), -1)
    depth = np.zeros((H, W))
    bary = np.zeros((H, W, 3))
    ambiguous = np.zeros((H, W), dtype=bool)
    for y in range(H):
        for x in range(W):
            d = np.array([(x + 0.5 - k[0, 2]) / k[0, 0], (y + 0.5 - k[1, 2]) / k[1, 1], 1.0])
            hits = []
            for f, (i0, i1, i2) in enumerate(faces):
                p0, p1, p2 = cam[i0], cam[i1], cam[i2]
                e1, e2 = p1 - p0, p2 - p0
                h = np.cross(d, e2)
                det = e1 @ h
                if abs(det) < 1e-14:
                    continue
                s = -p0
                b1 = (s @ h) / det
                q = np.cross(s, e1)
                b2 = (d @ q) / det
                t = (e2 @ q) / det
                b = np.array([1 - b1 - b2, b1, b2])
                if b.min() >= -EDGE_TOL and t >= near * (1 - 1e-9):
                    hits.append((t, f, b, b.min() <= EDGE_TOL or abs(t - near) < 1e-6))
            if not hits:
                continue
            hits.sort(key=lambda h: (h[0], h[1]))
            t, f, b, edge = hits[0]
            ids[y, x], depth[y, x], bary[y, x] = f, t, b
            tie = len(hits) > 1 and hits[1][0] - t < 1e-6 * t
            ambiguous[y, x] = edge or tie or any(h[3] for h in hits[1:2])
    return ids, depth, bary, ambiguous


def random_scene(seed: int, n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.uniform([-0.6, -0.6, 1.5], [0.6, 0.6, 3.0], size=(n, 1, 3))
    tris = centers + rng.normal(scale=0.5, size=(n, 3, 3))
    return tris.reshape(-1, 3).astype(np.float32), np.arange(3 * n).reshape(n, 3)


def check_against_reference(vertices, faces, viewmat, backend: str, near: float = 1e-3) -> int:
    ref_ids, ref_depth, ref_bary, amb = reference(vertices, faces, viewmat, K, near)
    r = rasterize_mesh(
        torch.from_numpy(vertices), torch.from_numpy(faces), viewmat[None], K[None], W, H, backend=backend, near=near
    )
    ids = r.tri_ids[0].numpy()
    ok = ~amb
    np.testing.assert_array_equal(ids[ok], ref_ids[ok])
    fg = ok & (ref_ids >= 0)
    np.testing.assert_allclose(r.depth[0].numpy()[fg], ref_depth[fg], rtol=1e-4)
    np.testing.assert_allclose(r.bary[0].numpy()[fg], ref_bary[fg], atol=2e-4)
    assert (r.depth[0].numpy()[ids < 0] == 0).all()
    assert (r.bary[0].numpy()[ids < 0] == 0).all()
    return int(fg.sum())


@pytest.mark.parametrize("backend", ["torch", "embree"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_triangles_match_reference(backend: str, seed: int) -> None:
    vertices, faces = random_scene(seed)
    viewmat = np.eye(4, dtype=np.float32)
    assert check_against_reference(vertices, faces, viewmat, backend) > 10


def test_rotated_camera_and_two_views_batch() -> None:
    vertices, faces = random_scene(3)
    world_center = np.array([0.0, 0.0, 2.2])
    views = [look_at(world_center + np.array([0.3, -2.0, 0.4]), world_center), np.eye(4, dtype=np.float32)]
    assert check_against_reference(vertices, faces, views[0], "torch") > 10
    batch = rasterize_mesh(torch.from_numpy(vertices), torch.from_numpy(faces), np.stack(views), np.stack([K, K]), W, H)
    single = rasterize_mesh(torch.from_numpy(vertices), torch.from_numpy(faces), views[1][None], K[None], W, H)
    assert torch.equal(batch.tri_ids[1], single.tri_ids[0])
    assert torch.equal(batch.depth[1], single.depth[0])


def test_triangle_crossing_near_plane_is_clipped_not_dropped() -> None:
    # A large floor-like triangle running from behind the camera to far in front, and a small one behind it.
    vertices = np.array(
        [[-3, 0.5, -1.0], [3, 0.5, -1.0], [0, 0.5, 8.0], [-0.2, -0.1, -0.5], [0.2, -0.1, -0.5], [0, 0.2, -0.4]],
        dtype=np.float32,
    )
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    for near in (1e-3, 0.8):
        covered = check_against_reference(vertices, faces, np.eye(4, dtype=np.float32), "torch", near=near)
        assert covered > 20
    r = rasterize_mesh(torch.from_numpy(vertices), torch.from_numpy(faces), np.eye(4)[None], K[None], W, H, near=0.8)
    hit = r.tri_ids[0] >= 0
    assert (r.tri_ids[0][hit] == 0).all()  # the triangle fully behind the camera never shows
    assert r.depth[0][hit].min() >= 0.8


def icosphere(subdiv: int = 2) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=subdiv, radius=1.0)
    return np.asarray(m.vertices, dtype=np.float32), np.asarray(m.faces, dtype=np.int64)


def test_closed_mesh_is_watertight_and_matches_embree() -> None:
    vertices, faces = icosphere(2)
    viewmat = look_at(np.array([0.3, -3.0, 1.0]), np.zeros(3))
    k = np.array([[200.0, 0, 64], [0, 200.0, 64], [0, 0, 1]], dtype=np.float32)
    args = (torch.from_numpy(vertices), torch.from_numpy(faces), viewmat[None], k[None], 128, 128)
    rt = rasterize_mesh(*args, backend="torch")
    re = rasterize_mesh(*args, backend="embree")
    # the silhouette of a sphere is convex: no holes inside it
    dist = np.hypot(*np.meshgrid(np.arange(128) + 0.5 - 64, np.arange(128) + 0.5 - 64))
    inner = dist < 0.9 * 200 / np.sqrt(3.0**2 + 0.3**2 + 1.0**2 - 1.0)
    assert (rt.tri_ids[0].numpy()[inner] >= 0).all()
    assert torch.equal(rt.tri_ids >= 0, re.tri_ids >= 0)
    same = rt.tri_ids == re.tri_ids
    assert same.float().mean() > 0.99  # the rest are pixel centres on shared edges
    torch.testing.assert_close(rt.depth[same], re.depth[same], rtol=1e-4, atol=1e-5)
    normals = rt.normals[0][rt.tri_ids[0] >= 0]
    torch.testing.assert_close(normals.norm(dim=1), torch.ones(len(normals)))
    # outward normals of the visible (front) side point towards the camera
    eye = torch.tensor([0.3, -3.0, 1.0])
    center = torch.from_numpy(vertices)[torch.from_numpy(faces)[rt.tri_ids[0][rt.tri_ids[0] >= 0]]].mean(1)
    assert ((normals * (eye - center)).sum(1) > 0).all()


@pytest.mark.parametrize("winding", ["outward", "inward", "mixed"])
def test_early_depth_culling_changes_nothing(monkeypatch: pytest.MonkeyPatch, winding: str) -> None:
    # The second pass skips triangles wholly behind what the first drew. A sphere, a patch of a shell 2 %
    # outside it wound the other way (drawn second, yet nearer: it must win), loose triangles poking out
    # in front, and an image size that is no multiple of the 8-pixel tiles: against the same code with the
    # culling switched off, bit-identical buffers, whatever the sphere's winding.
    import segany.kernels.mesh_raster as mesh_raster

    vertices, faces = icosphere(3)
    flip = {"outward": 0, "inward": 1, "mixed": np.arange(len(faces))[:, None] % 3 == 0}[winding]
    faces = np.where(flip, faces[:, ::-1], faces)
    parts = [(vertices, faces)]
    shell = faces[(vertices[faces].mean(1) @ np.array([0.1, -1.0, 0.2])) > 0.5]  # faces towards the camera
    parts.append((vertices * 1.02, shell[:, ::-1]))
    loose, loose_faces = random_scene(7, n=5)
    parts.append((loose * 0.4 + np.array([0.0, -0.9, -0.8], dtype=np.float32), loose_faces))
    offsets = np.cumsum([0] + [len(v) for v, _ in parts])
    vertices = np.concatenate([v for v, _ in parts]).astype(np.float32)
    faces = np.concatenate([f + o for (_, f), o in zip(parts, offsets, strict=False)])
    viewmat = look_at(np.array([0.4, -3.0, 0.8]), np.zeros(3))
    k = np.array([[90.0, 0, 37.3], [0, 90.0, 26.1], [0, 0, 1]], dtype=np.float32)
    args = (torch.from_numpy(vertices), torch.from_numpy(faces), viewmat[None], k[None], 75, 53)
    culled = []

    def occluded(*a: object) -> torch.Tensor:
        hidden = real(*a)
        culled.append(int(hidden.sum()))
        return hidden

    real = mesh_raster._occluded
    monkeypatch.setattr(mesh_raster, "_occluded", occluded)
    fast = rasterize_mesh(*args)
    monkeypatch.setattr(mesh_raster, "_occluded", lambda zbuf, tris, w, h: torch.zeros_like(tris.x0, dtype=torch.bool))
    full = rasterize_mesh(*args)
    if winding != "mixed":  # the front drawn first, whichever its winding, hides most of the back half
        assert sum(culled) > len(faces) // 5
    ids = full.tri_ids[0]
    on_shell = (ids >= len(parts[0][1])) & (ids < len(parts[0][1]) + len(shell))
    assert on_shell.sum() > 0.5 * (ids >= 0).sum() > 0.15 * ids.numel()
    assert torch.equal(fast.tri_ids, full.tri_ids)
    assert torch.equal(fast.depth, full.depth)
    assert torch.equal(fast.bary, full.bary)


def test_interpolate_matches_loop_and_gradcheck() -> None:
    vertices, faces = random_scene(4, n=4)
    r = rasterize_mesh(torch.from_numpy(vertices), torch.from_numpy(faces), np.eye(4)[None], K[None], W, H)
    attr = torch.randn(len(vertices), 5, dtype=torch.float64)
    out = interpolate(attr, torch.from_numpy(faces), r)
    ref = torch.zeros(1, H, W, 5, dtype=torch.float64)
    for y in range(H):
        for x in range(W):
            t = int(r.tri_ids[0, y, x])
            if t >= 0:
                for i in range(3):
                    ref[0, y, x] += float(r.bary[0, y, x, i]) * attr[faces[t, i]]
    torch.testing.assert_close(out, ref)
    assert interpolate(attr[:, 0], torch.from_numpy(faces), r).shape == (1, H, W)
    leaf = attr[:, :2].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: interpolate(a, torch.from_numpy(faces), r), (leaf,))


def test_shade_range_background_and_colors() -> None:
    vertices, faces = icosphere(1)
    viewmat = look_at(np.array([0.0, -3.0, 0.0]), np.zeros(3))
    r = rasterize_mesh(torch.from_numpy(vertices), torch.from_numpy(faces), viewmat[None], K[None], W, H)
    grey = shade(r)
    assert grey.shape == (1, H, W, 3) and grey.min() >= 0 and grey.max() <= 1
    assert (grey[~r.mask] == 1.0).all()
    center = grey[0, H // 2, W // 2]
    assert 0.6 <= float(center[0]) <= 0.7 and center[0] == center[1] == center[2]  # near head-on: bright grey
    red = torch.zeros(len(vertices), 3)
    red[:, 0] = 1.0
    rgb = shade(r, red, torch.from_numpy(faces), background=0.0)
    assert (rgb[r.mask][:, 1:] == 0).all() and (rgb[r.mask][:, 0] > 0.3).all() and (rgb[~r.mask] == 0).all()
    with pytest.raises(SegAnyError):
        shade(r, red)


def test_pick_vertex() -> None:
    vertices = np.array([[-1, -1, 2], [1, -1, 2], [-1, 1, 2], [5, 5, 2]], dtype=np.float32)
    faces = np.array([[0, 1, 2]])
    r = rasterize_mesh(torch.from_numpy(vertices), torch.from_numpy(faces), np.eye(4)[None], K[None], W, H)
    # vertices project to (1, 1), (15, 1), (1, 14.5); pixel centres (13.5, 1.5) and (1.5, 12.5) are inside
    assert pick_vertex(r, faces, vertices, 0, 13, 1) == 1
    assert pick_vertex(r, faces, vertices, 0, 1.7, 12.2) == 2
    assert pick_vertex(r, faces, vertices, 0, 2, 2) == 0
    assert pick_vertex(r, faces, vertices, 0, 15, 15) == -1  # background
    assert pick_vertex(r, faces, vertices, 0, -1, 3) == -1  # outside the image


def test_bad_inputs_raise_actionable_errors() -> None:
    v = torch.zeros(3, 3)
    with pytest.raises(SegAnyError) as e:
        rasterize_mesh(v, torch.tensor([[0, 1, 3]]), np.eye(4)[None], K[None], W, H)
    assert e.value.code == "invalid_geometry"
    with pytest.raises(SegAnyError):
        rasterize_mesh(v, torch.tensor([[0, 1, 2]]), np.eye(4)[None], K[None], W, H, backend="opengl")
    empty = rasterize_mesh(v, torch.zeros((0, 3), dtype=torch.int64), np.eye(4)[None], K[None], W, H)
    assert (empty.tri_ids == -1).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_cuda_matches_cpu() -> None:
    vertices, faces = icosphere(3)
    viewmat = look_at(np.array([0.3, -3.0, 1.0]), np.zeros(3))
    k = np.array([[200.0, 0, 64], [0, 200.0, 64], [0, 0, 1]], dtype=np.float32)
    cpu = rasterize_mesh(torch.from_numpy(vertices), torch.from_numpy(faces), viewmat[None], k[None], 128, 128)
    gpu = rasterize_mesh(
        torch.from_numpy(vertices).cuda(), torch.from_numpy(faces).cuda(), viewmat[None], k[None], 128, 128
    )
    assert gpu.tri_ids.is_cuda
    assert (gpu.tri_ids.cpu() == cpu.tri_ids).float().mean() > 0.999
    same = gpu.tri_ids.cpu() == cpu.tri_ids
    torch.testing.assert_close(gpu.depth.cpu()[same], cpu.depth[same], rtol=1e-5, atol=1e-6)
    attr = torch.randn(len(vertices), 8, device="cuda", requires_grad=True)
    interpolate(attr, torch.from_numpy(faces).cuda(), gpu).sum().backward()
    assert attr.grad is not None and attr.grad.is_cuda


def test_edges_through_pixel_centres_leave_no_cracks() -> None:
    # A frontal grid whose vertices project exactly onto pixel centres, so every horizontal, vertical and
    # diagonal edge passes through pixel centres: each such pixel must still go to one of its triangles.
    k = np.array([[16.0, 0, 8.0], [0, 16.0, 8.0], [0, 0, 1]], dtype=np.float32)
    n = 7
    coords = (np.arange(n + 1) + 0.5 - 8.0) / 16.0 * 2.0  # pixel centres 0.5 .. 7.5 at depth 2
    gx, gy = np.meshgrid(coords, coords)
    vertices = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, 2.0)], 1).astype(np.float32)
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    faces = np.concatenate([np.stack([a, b, d], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)])
    r = rasterize_mesh(torch.from_numpy(vertices), torch.from_numpy(faces), np.eye(4)[None], k[None], W, H)
    ids = r.tri_ids[0].numpy()
    assert (ids[: n + 1, : n + 1] >= 0).all()  # pixels 0..7 in both axes: their centres lie on the grid
    assert (ids[n + 1 :, :] == -1).all() and (ids[:, n + 1 :] == -1).all()
    np.testing.assert_allclose(r.depth[0].numpy()[: n + 1, : n + 1], 2.0, rtol=1e-6)
    np.testing.assert_allclose(r.bary[0].numpy()[: n + 1, : n + 1].sum(-1), 1.0, atol=1e-5)


def test_chunked_scan_matches_single_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    import segany.kernels.mesh_raster as mesh_raster

    vertices, faces = icosphere(2)
    viewmat = look_at(np.array([0.3, -2.5, 1.0]), np.zeros(3))
    k = np.array([[60.0, 0, 32], [0, 60.0, 32], [0, 0, 1]], dtype=np.float32)
    args = (torch.from_numpy(vertices), torch.from_numpy(faces), viewmat[None], k[None], 64, 64)
    whole = rasterize_mesh(*args)
    monkeypatch.setattr(mesh_raster, "_CHUNK_PIXELS", 50)
    chunked = rasterize_mesh(*args)
    assert torch.equal(whole.tri_ids, chunked.tri_ids)
    assert torch.equal(whole.depth, chunked.depth)
