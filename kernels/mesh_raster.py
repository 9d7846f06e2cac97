"""Mesh rasterization for a batch of OpenCV cameras: per-pixel triangle id, depth, barycentrics, normals.

Conventions (the same as `segany.cameras`): `viewmats` are world-to-camera 4×4 (x right, y down,
z forward), `Ks` pixel intrinsics; pixel (x, y) covers [x, x+1) × [y, y+1) and is sampled at its centre
(x + 0.5, y + 0.5) with u = fx·X/Z + cx, v = fy·Y/Z + cy.

What a pixel gets: the closest triangle hit by the ray through its centre (both faces are drawn: no
back-face culling, since scanned and artist meshes are often inconsistently oriented). `depth` is the
camera-space z of the hit (not the distance along the ray), `bary` are the perspective-correct barycentric
weights of the hit point with respect to the triangle's vertices (hit = Σ bary_i · vertex_i), `normals` are
the unit geometric face normals in world space, normalize((v1 − v0) × (v2 − v0)), not flipped towards the
camera. Background: tri_ids −1, depth 0, bary 0, normals 0.

Near plane: triangles are clipped at z = `near` (default 1e-3 scene units), not discarded: a triangle
with some corners behind it keeps the part in front (its pixel box comes from the clipped polygon, and
pixels whose hit has z < near are rejected); a triangle with all corners behind it is dropped.

How (torch path, the same code on CPU and CUDA; no per-pixel or per-triangle Python loops):
1. Vertices are projected once; each triangle gets the pixel box of its projection.
2. Edge functions e_i = a_i·u + b_i·v + c_i (pixel units), inside where all have the sign of the
   triangle's orientation. Triangles in front of the near plane use the 2D edge functions of their
   projection (c in float64 products); with weights k_i = (1/z_i) / (2·area), 1/z = Σ k_i·e_i is affine in
   the image and bary_i = k_i·e_i·z is perspective-correct. Triangles crossing the near plane use
   homogeneous edge functions (V_j × V_k)·K⁻¹(u, v, 1) in float64 (Olano & Greer 1997), exact for
   triangles that cross the camera plane. Swapping an edge's ends negates a, b, c bit for bit, so
   neighbouring triangles agree on every shared edge: closed meshes have no cracks, even where edges run
   through pixel centres (ties on a shared edge go to both triangles, the depth test picks one).
3. Scan conversion: per (triangle, pixel row) the span between its left and right bounding edges, then
   per covered pixel a packed int64 key, (bits of 1/z flipped) << 32 | face id, folded into a z-buffer
   with one scatter_reduce(amin): exact depth order, depth ties go to the lower face id. Rows and pixels
   are expanded with cumsum-based segment ids, in chunks of bounded size, with in-place arithmetic (fresh
   large tensors cost page faults that are often dearer than the arithmetic).
   Two passes: triangles facing the camera first, then the rest less those whose pixel box already
   holds only nearer keys (a max pyramid of the z-buffer's depth bits; exact, so nothing changes but
   the time: on a closed mesh most of the back half is never scanned).
4. The winners' barycentrics are evaluated from their edge functions.
The "embree" backend casts the same primary rays with Embree (CPU only) and returns the same buffers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from segany.errors import SegAnyError
from segany.kernels import resolve_backend

_MAX_KEY = torch.iinfo(torch.int64).max
_CHUNK_PIXELS = 1 << 22
_W_BITS_MAX = torch.iinfo(torch.int32).max
_FAR = 1e30  # the bound of an unused edge slot, in pixels


@dataclass
class MeshRaster:
    """Per-pixel visibility of a mesh in B views of height H and width W."""

    tri_ids: torch.Tensor  # (B, H, W) int64, -1 = background
    depth: torch.Tensor  # (B, H, W) float32 camera-space z, 0 = background
    bary: torch.Tensor  # (B, H, W, 3) float32 perspective-correct barycentrics, 0 = background
    normals: torch.Tensor  # (B, H, W, 3) float32 world-space unit face normals, 0 = background
    viewmats: torch.Tensor  # (B, 4, 4) the cameras it was rendered with (shading needs the view rays)
    Ks: torch.Tensor  # (B, 3, 3)

    @property
    def mask(self) -> torch.Tensor:
        """(B, H, W) bool, True where a triangle was hit."""
        return self.tri_ids >= 0


def rasterize_mesh(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    backend: str = "auto",
    near: float = 1e-3,
) -> MeshRaster:
    """Rasterize a triangle mesh into B views; `backend` is "auto" (= "torch", CPU or CUDA) or "embree" (CPU).

    Outputs live on the device of `vertices`.
    """
    vertices = torch.as_tensor(vertices)
    device = vertices.device
    vertices = vertices.to(torch.float32)
    faces = torch.as_tensor(faces, device=device).to(torch.int64)
    viewmats = torch.as_tensor(viewmats, device=device).to(torch.float32).reshape(-1, 4, 4)
    Ks = torch.as_tensor(Ks, device=device).to(torch.float32).reshape(-1, 3, 3)
    _check_inputs(vertices, faces, viewmats, Ks, width, height)
    if resolve_backend(backend, device, cpu="torch", cuda="torch", others=("torch", "embree")) == "torch":
        tri_ids, depth, bary = _raster_torch(vertices, faces, viewmats, Ks, width, height, near)
    else:
        if device.type != "cpu":
            raise SegAnyError("unsupported", "the embree backend runs on the CPU; pass CPU tensors or backend='torch'")
        tri_ids, depth, bary = _raster_embree(vertices, faces, viewmats, Ks, width, height, near)
    return MeshRaster(tri_ids, depth, bary, _pixel_normals(vertices, faces, tri_ids), viewmats, Ks)


def interpolate(attr: torch.Tensor, faces: torch.Tensor, raster: MeshRaster) -> torch.Tensor:
    """Barycentric interpolation of a per-vertex attribute (V, C) into (B, H, W, C); 0 on background.

    Differentiable with respect to `attr` (one fused embedding_bag gather-and-weight on the visible pixels),
    which is how iSeg trains per-vertex features from 2D losses.
    """
    squeeze = attr.dim() == 1
    if squeeze:
        attr = attr[:, None]
    faces = torch.as_tensor(faces, device=attr.device).to(torch.int64)
    tri = raster.tri_ids.reshape(-1)
    fg_idx = torch.nonzero(tri >= 0).squeeze(1)
    corner_ids = faces.index_select(0, tri.index_select(0, fg_idx))
    weights = raster.bary.reshape(-1, 3).index_select(0, fg_idx).to(attr.dtype)
    values = torch.nn.functional.embedding_bag(corner_ids, attr, per_sample_weights=weights, mode="sum")
    out = attr.new_zeros((tri.numel(), attr.shape[1])).index_copy(0, fg_idx, values)
    out = out.reshape(*raster.tri_ids.shape, attr.shape[1])
    return out[..., 0] if squeeze else out


def shade(
    raster: MeshRaster,
    vertex_colors: torch.Tensor | None = None,
    faces: torch.Tensor | None = None,
    light_dir: torch.Tensor | None = None,
    ambient: float = 0.3,
    background: float = 1.0,
) -> torch.Tensor:
    """Two-sided Lambert shading, rgb (B, H, W, 3) in [0, 1], for 2D models that look at renders.

    The light is a headlight (along each pixel's view ray) unless `light_dir` (world-space direction
    towards the light) is given. Albedo: `vertex_colors` (V, 3) in [0, 1] interpolated over the faces
    (then `faces` is needed), else a neutral grey 0.7. Background is `background` (white by default, as
    in the usual object-centric renders that SAM and CLIP see).
    """
    n = raster.normals
    if light_dir is None:
        light = -_view_rays(raster.viewmats, raster.Ks, n.shape[2], n.shape[1])
    else:
        light = torch.as_tensor(light_dir, dtype=n.dtype, device=n.device)
        light = (light / light.norm()).expand_as(n)
    lambert = (n * light).sum(-1).abs()
    intensity = ambient + (1.0 - ambient) * lambert
    if vertex_colors is None:
        albedo = torch.full_like(n, 0.7)
    else:
        if faces is None:
            raise SegAnyError("bad_request", "shade() with vertex_colors needs the faces to interpolate them")
        colors = torch.as_tensor(vertex_colors, device=n.device).to(torch.float32)
        albedo = interpolate(colors, faces, raster)
    rgb = (albedo * intensity[..., None]).clamp(0.0, 1.0)
    return torch.where(raster.mask[..., None], rgb, torch.full_like(rgb, background))


def pick_vertex(raster: MeshRaster, faces: torch.Tensor, vertices: torch.Tensor, view: int, x: float, y: float) -> int:
    """The vertex under pixel (x, y) of `view`: of the hit triangle's three corners, the one closest in 3D
    to the surface point under the pixel centre. -1 on background or outside the image."""
    _, height, width = raster.tri_ids.shape
    xi, yi = int(np.floor(x)), int(np.floor(y))
    if not (0 <= xi < width and 0 <= yi < height):
        return -1
    tri = int(raster.tri_ids[view, yi, xi])
    if tri < 0:
        return -1
    corners = torch.as_tensor(faces)[tri].to(torch.int64).cpu()
    pts = torch.as_tensor(vertices).cpu().to(torch.float64)[corners]
    hit = raster.bary[view, yi, xi].cpu().to(torch.float64) @ pts
    return int(corners[torch.argmin((pts - hit).norm(dim=1))])


def _check_inputs(
    vertices: torch.Tensor, faces: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor, width: int, height: int
) -> None:
    if vertices.dim() != 2 or vertices.shape[1] != 3:
        raise SegAnyError("invalid_array", f"vertices must be (V, 3), got {tuple(vertices.shape)}")
    if faces.dim() != 2 or faces.shape[1] != 3:
        raise SegAnyError("invalid_array", f"faces must be (F, 3), got {tuple(faces.shape)}")
    if len(faces) and (int(faces.min()) < 0 or int(faces.max()) >= len(vertices)):
        raise SegAnyError("invalid_geometry", f"face indices must lie in [0, {len(vertices)})")
    if not bool(torch.isfinite(vertices).all()):
        raise SegAnyError("invalid_geometry", "vertices contain NaN or Inf")
    if len(faces) >= 2**31:
        raise SegAnyError("too_large", "at most 2^31 - 1 faces can be rasterized")
    if len(viewmats) != len(Ks):
        raise SegAnyError("invalid_array", f"{len(viewmats)} viewmats but {len(Ks)} intrinsics")
    if not (0 < width <= 16384 and 0 < height <= 16384):
        raise SegAnyError("invalid_array", f"image size {width}×{height} is out of range")


def _pixel_normals(vertices: torch.Tensor, faces: torch.Tensor, tri_ids: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) unit world-space normal of each pixel's face, 0 on background (1-D gathers
    throughout: gathering whole rows is several times slower in torch)."""
    if len(faces) == 0:
        return torch.zeros((*tri_ids.shape, 3), dtype=torch.float32, device=vertices.device)
    cols = vertices.T.contiguous()
    corner = [[cols[d].index_select(0, faces[:, k].contiguous()) for d in range(3)] for k in range(3)]
    e1 = [corner[1][d] - corner[0][d] for d in range(3)]
    e2 = [corner[2][d] - corner[0][d] for d in range(3)]
    n = _cross(e1, e2)
    inv_len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt_().clamp_min_(1e-30).reciprocal_()
    flat = tri_ids.reshape(-1)
    bg = flat < 0
    hit = flat.clamp_min(0)
    out = torch.empty((flat.numel(), 3), dtype=torch.float32, device=vertices.device)
    for d in range(3):
        out[:, d] = n[d].mul_(inv_len).index_select(0, hit).masked_fill_(bg, 0.0)
    return out.reshape(*tri_ids.shape, 3)


def _view_rays(viewmats: torch.Tensor, Ks: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """(B, H, W, 3) unit world-space directions of the rays through the pixel centres."""
    dev = viewmats.device
    u = torch.arange(width, device=dev, dtype=torch.float32) + 0.5
    v = torch.arange(height, device=dev, dtype=torch.float32) + 0.5
    x = (u[None, None, :] - Ks[:, 0, 2, None, None]) / Ks[:, 0, 0, None, None]
    y = (v[None, :, None] - Ks[:, 1, 2, None, None]) / Ks[:, 1, 1, None, None]
    d_cam = torch.stack(torch.broadcast_tensors(x, y, torch.ones_like(x)), dim=-1)  # (B, H, W, 3)
    d_world = torch.einsum("bji,bhwj->bhwi", viewmats[:, :3, :3], d_cam)
    return d_world / d_world.norm(dim=-1, keepdim=True)


def _cross(a: list[torch.Tensor], b: list[torch.Tensor]) -> list[torch.Tensor]:
    """Cross product of column lists, written out so that cross(a, b) == -cross(b, a) bit for bit."""
    ax, ay, az = a
    bx, by, bz = b
    return [ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx]


def _segment_ids(lengths: torch.Tensor, total: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For positive `lengths`: the owning segment of each of the `total` = Σ lengths slots, and each
    segment's first slot (a cumsum of start marks; torch's repeat_interleave is several times slower)."""
    first = torch.cumsum(lengths, 0) - lengths
    marks = torch.zeros(total, dtype=torch.int32, device=lengths.device)
    marks.index_fill_(0, first[1:], 1)
    return torch.cumsum(marks, 0, dtype=torch.int32), first


def _raster_torch(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    near: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n_views = len(viewmats)
    tri_ids = torch.full((n_views, height * width), -1, dtype=torch.int64, device=vertices.device)
    depth = torch.zeros((n_views, height * width), dtype=torch.float32, device=vertices.device)
    bary = torch.zeros((n_views, height * width, 3), dtype=torch.float32, device=vertices.device)
    corners = [faces[:, k].contiguous() for k in range(3)]
    for b in range(n_views):
        _raster_view(vertices, corners, viewmats[b], Ks[b], width, height, near, tri_ids[b], depth[b], bary[b])
    shape = (n_views, height, width)
    return tri_ids.reshape(shape), depth.reshape(shape), bary.reshape(*shape, 3)


def _raster_view(
    vertices: torch.Tensor,
    corners: list[torch.Tensor],
    viewmat: torch.Tensor,
    K: torch.Tensor,
    width: int,
    height: int,
    near: float,
    tri_ids: torch.Tensor,
    depth: torch.Tensor,
    bary: torch.Tensor,
) -> None:
    """One view: fill tri_ids, depth (H·W,) and bary (H·W, 3) in place."""
    device = vertices.device
    fx, fy, cx, cy = (float(x) for x in (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
    cam = vertices.double() @ viewmat[:3, :3].double().T + viewmat[:3, 3].double()  # (V, 3)
    x, y, z = cam.float().T.contiguous()
    front_v = z >= near
    iz = front_v / z.clamp_min(near)  # 1/z, and 0 marks a vertex behind the near plane
    pu = fx * x * iz + cx
    pv = fy * y * iz + cy

    # 1. pixel bounding boxes of the projected triangles (of the clipped ones where they cross z = near)
    us = [pu.index_select(0, c) for c in corners]
    vs = [pv.index_select(0, c) for c in corners]
    izs = [iz.index_select(0, c) for c in corners]
    n_front = (izs[0] > 0).int() + (izs[1] > 0).int() + (izs[2] > 0).int()
    umin = torch.minimum(torch.minimum(us[0], us[1]), us[2])
    umax = torch.maximum(torch.maximum(us[0], us[1]), us[2])
    vmin = torch.minimum(torch.minimum(vs[0], vs[1]), vs[2])
    vmax = torch.maximum(torch.maximum(vs[0], vs[1]), vs[2])
    crossing = torch.nonzero((n_front > 0) & (n_front < 3)).squeeze(1)
    if len(crossing):
        tri = torch.stack([cam.index_select(0, c.index_select(0, crossing)) for c in corners], 1)
        box = _clipped_box(tri, fx, fy, cx, cy, near).float()
        for arr, col in zip((umin, umax, vmin, vmax), box.unbind(1), strict=True):
            arr.index_copy_(0, crossing, col)
    # pixels whose centre lies in [min, max], widened by a hair (the box only has to be a superset);
    # clamping before rounding is the same as after for integer limits, and keeps huge values out of int
    margin = 0.5 + 1e-3
    x0 = torch.ceil((umin - margin).clamp_(0, width)).int()
    x1 = torch.floor((umax + (margin - 1.0)).clamp_(-1, width - 1)).int()
    y0 = torch.ceil((vmin - margin).clamp_(0, height)).int()
    y1 = torch.floor((vmax + (margin - 1.0)).clamp_(-1, height - 1)).int()
    alive = (x0 <= x1) & (y0 <= y1) & (n_front > 0)

    # 2. two passes for early depth culling. The first draws the triangles of one winding in the image and
    # every triangle that crosses the near plane; the second draws the rest, less those whose whole pixel
    # box already holds something nearer: on a closed mesh that is most of its back half. The winding whose
    # triangles are nearer on average goes first, so the front comes first whichever way the mesh is wound
    # (a mixed winding only makes the culling weaker). The order never changes the result, only the time.
    cw = (us[1] - us[0]).mul_(vs[2] - vs[0]).sub_((vs[1] - vs[0]).mul_(us[2] - us[0])) < 0
    in_front = alive & (n_front == 3)
    w_near = torch.maximum(torch.maximum(izs[0], izs[1]), izs[2])
    n_all, n_cw = float(in_front.sum()), float((cw & in_front).sum())
    w_all, w_cw = float((w_near * in_front).sum()), float((w_near * (cw & in_front)).sum())
    cw_nearer = w_cw / max(n_cw, 1.0) >= (w_all - w_cw) / max(n_all - n_cw, 1.0)
    second = in_front & (~cw if cw_nearer else cw)
    tris = _Tris(us, vs, izs, n_front, x0, x1, y0, y1)
    zbuf = torch.full((height * width,), _MAX_KEY, dtype=torch.int64, device=device)
    coeffs = torch.zeros((6, len(alive)), dtype=torch.float32, device=device)  # bary planes by face id
    drawn = []
    for pick in (alive & ~second, second):
        face = torch.nonzero(pick).squeeze(1)
        group = tris.select(face)
        if len(face) and pick is second:
            keep = torch.nonzero(~_occluded(zbuf, group, width, height)).squeeze(1)
            face, group = face.index_select(0, keep), group.select(keep)
        if not len(face):
            continue
        spans, general, bary_planes = _setup(group, face, cam, corners, (fx, fy, cx, cy), height)
        if pick is second:
            spans.w_cap = torch.maximum(torch.maximum(group.izs[0], group.izs[1]), group.izs[2])
        _draw(zbuf, spans, general, width, near)
        coeffs.index_copy_(1, face, torch.stack(bary_planes))
        drawn.append(face)
    if not drawn:
        return

    # 3. decode ids and depth; barycentrics of the winners
    bg = zbuf == _MAX_KEY
    face = (zbuf & 0xFFFFFFFF).masked_fill_(bg, 0)
    inv_w = zbuf.view(torch.int32)[1::2].neg().add_(_W_BITS_MAX).view(torch.float32).reciprocal_()
    depth.copy_(inv_w.masked_fill_(bg, 0.0))
    tri_ids.copy_(face)
    tri_ids.masked_fill_(bg, -1)
    u = torch.arange(width, device=device, dtype=torch.float32).add_(0.5)
    v = torch.arange(height, device=device, dtype=torch.float32).add_(0.5)[:, None]
    total = torch.zeros_like(inv_w)
    for i in range(2):
        a, b, c = (coeffs[3 * i + m].index_select(0, face).view(height, width) for m in range(3))
        e = a.mul_(u).add_(b.mul_(v).add_(c)).view(-1)
        e.mul_(inv_w).clamp_(0.0, 1.0)
        total.add_(e)
        bary[:, i].copy_(e)
    bary[:, 2].copy_(total.neg_().add_(1.0).clamp_min_(0.0).masked_fill_(bg, 0.0))


@dataclass
class _Tris:
    """Projected triangles of one view, as flat per-triangle columns (corner lists hold one per corner)."""

    us: list[torch.Tensor]  # projected corners, pixels
    vs: list[torch.Tensor]
    izs: list[torch.Tensor]  # 1/z of the corners, 0 behind the near plane
    n_front: torch.Tensor  # (n,) int32 corners in front of the near plane
    x0: torch.Tensor  # (n,) int32 pixel bounding box, inclusive
    x1: torch.Tensor
    y0: torch.Tensor
    y1: torch.Tensor

    def select(self, idx: torch.Tensor) -> _Tris:
        def pick(t: torch.Tensor) -> torch.Tensor:
            return t.index_select(0, idx)

        return _Tris(
            [pick(t) for t in self.us],
            [pick(t) for t in self.vs],
            [pick(t) for t in self.izs],
            *(pick(t) for t in (self.n_front, self.x0, self.x1, self.y0, self.y1)),
        )


def _occluded(zbuf: torch.Tensor, tris: _Tris, width: int, height: int) -> torch.Tensor:
    """Which triangles (all corners in front of the near plane) lie wholly behind what zbuf already holds
    over their pixel box: their nearest point, 1/z at most the largest corner 1/z (_scan caps each pixel's
    1/z there for that reason), is strictly farther than the farthest key in every tile the box touches.

    The farthest keys come from a max pyramid of square tiles, 8 pixels and up, and each box is looked up
    at the level where it touches at most 2 × 2 tiles. Strictly farther in the key's depth bits means every
    pixel's key would lose the amin, so culling never changes the result."""
    levels = [_tile_max(zbuf.view(torch.int32)[1::2].reshape(height, width), 3)]
    while levels[-1].numel() > 1:
        levels.append(_tile_max(levels[-1], 1))
    sizes = torch.tensor([t.numel() for t in levels], device=zbuf.device)
    offsets = torch.cumsum(sizes, 0) - sizes
    tile_w = torch.tensor([t.shape[1] for t in levels], device=zbuf.device)
    pyramid = torch.cat([t.reshape(-1) for t in levels])
    extent = torch.maximum(tris.x1 - tris.x0, tris.y1 - tris.y0).add_(1).float()
    level = extent.log2_().ceil_().clamp_(3, 2 + len(levels)).int()  # tiles of 2^level pixels
    base = offsets.index_select(0, level - 3)
    row_w = tile_w.index_select(0, level - 3)
    cols = [tris.x0 >> level, tris.x1 >> level]
    far = None
    for y in (tris.y0, tris.y1):
        row = base + (y >> level) * row_w
        for col in cols:
            key = pyramid.index_select(0, row + col)
            far = key if far is None else torch.maximum(far, key, out=far)
    w_max = torch.maximum(torch.maximum(tris.izs[0], tris.izs[1]), tris.izs[2])
    nearest = w_max.view(torch.int32).neg().add_(_W_BITS_MAX)
    return nearest > far


def _tile_max(grid: torch.Tensor, shift: int) -> torch.Tensor:
    """Max over square tiles of 2^shift cells; cells past the edge count as background (never occluding)."""
    h, w = grid.shape
    size = 1 << shift
    th, tw = -(-h // size), -(-w // size)
    if (th * size, tw * size) != (h, w):
        padded = torch.full((th * size, tw * size), _W_BITS_MAX, dtype=grid.dtype, device=grid.device)
        padded[:h, :w] = grid
        grid = padded
    return grid.reshape(th, size, tw, size).amax(dim=(1, 3))


def _setup(
    tris: _Tris,
    face: torch.Tensor,
    cam: torch.Tensor,
    corners: list[torch.Tensor],
    intrinsics: tuple[float, float, float, float],
    height: int,
) -> tuple[_Spans, torch.Tensor, list[torch.Tensor]]:
    """Scan spans of triangles (`face`: their face ids), which need the general scan (`general`), and the
    planes (a, b, c) of their first two barycentrics times z, for decoding the winners."""
    us, vs, izs, n_front = tris.us, tris.vs, tris.izs, tris.n_front
    y0, y1 = tris.y0, tris.y1
    # Edge functions in pixel units, e_i = a_i·u + b_i·v + c_i >= 0 inside, with weights k_i such that
    # Σ k_i·e_i = 1/z and bary_i = k_i·e_i·z. Triangles in front of the near plane: 2D edge functions of
    # the projected triangle (k_i = (1/z_i) / |2·area|); swapping an edge's ends negates a, b and c bit
    # for bit, so neighbours are watertight. Triangles crossing it: homogeneous edge functions in float64.
    # c = u_j·v_k − v_j·u_k in float64 (exact products): in float32 it would lose ~|u|²·2⁻²⁴ to cancellation
    us64, vs64 = [t.double() for t in us], [t.double() for t in vs]
    edges = []
    for j, k in ((1, 2), (2, 0), (0, 1)):
        edges.append([vs[j] - vs[k], us[k] - us[j], (us64[j] * vs64[k] - vs64[j] * us64[k]).float()])
    area2 = edges[0][2] + edges[1][2] + edges[2][2]  # twice the signed area: e_i / area2 = λ_i
    weights = [t / area2 for t in izs]
    orient = area2.clone()  # inside means e_i · orient >= 0
    visible = area2 != 0
    cross = torch.nonzero(n_front < 3).squeeze(1)
    if len(cross):
        cross_face = face.index_select(0, cross)
        h_edges, h_weights, h_visible = _homogeneous_edges(
            [cam.index_select(0, c.index_select(0, cross_face)) for c in corners], *intrinsics
        )
        for e, h in zip(edges, h_edges, strict=True):
            for t, ht in zip(e, h, strict=True):
                t.index_copy_(0, cross, ht)
        for w, hw in zip(weights, h_weights, strict=True):
            w.index_copy_(0, cross, hw)
        visible.index_copy_(0, cross, h_visible)
        orient.index_fill_(0, cross, 1.0)  # their edge functions are sign-normalised already

    lower, upper = [], []  # per edge: (slope, offset) of its bound on u as a function of v, or a dummy
    n_lower = n_upper = 0.0
    for a, b, c in edges:
        # Inside, e = a·u + b·v + c has the sign of `orient`, so the edge bounds u at -(b·v + c)/a from
        # below where a·orient > 0 and from above where a·orient < 0 (slope and offset do not depend on
        # the sign; a neighbour computes them from exactly negated a, b, c: the same bits). Unused slots
        # are (0, ∓_FAR), selected arithmetically (x·1 + y·0 == x) since torch.where is slow on random
        # masks; a horizontal edge (a == 0) limits the rows instead.
        flat = a == 0
        neg_a = a.neg().sub_(flat.float())
        slope, offset = b / neg_a, c / neg_a
        side = a * orient
        lo, hi = (side > 0).float(), (side < 0).float()
        n_lower = n_lower + lo
        n_upper = n_upper + hi
        lower.append([slope * lo, offset.mul(lo).add_(lo.mul(_FAR).sub_(_FAR))])
        upper.append([slope.mul_(hi), offset.mul_(hi).add_(hi.mul(-_FAR).add_(_FAR))])
        if bool(flat.any()):
            b_in = b * orient  # inside: b_in·(v - vlim) >= 0
            vlim = -c / b
            y0 = torch.where(flat & (b_in > 0), torch.maximum(y0, torch.ceil((vlim - 0.5).clamp(-1, height)).int()), y0)
            y1 = torch.where(
                flat & (b_in < 0), torch.minimum(y1, torch.floor((vlim - 0.5).clamp(-1, height)).int()), y1
            )
            visible &= ~(flat & (b == 0) & (c * orient < 0))
    w_coeffs = [sum(e[m] * k for e, k in zip(edges, weights, strict=True)) for m in range(3)]
    bary_planes = [t * k for e, k in zip(edges[:2], weights[:2], strict=True) for t in e]
    rows = ((y1 - y0 + 1).clamp_min(0) * visible).int()
    general = ((n_front < 3) | (n_lower > 2.5) | (n_upper > 2.5)) & (rows > 0)
    spans = _Spans(face=face.int(), x0=tris.x0, x1=tris.x1, y0=y0, rows=rows, w=w_coeffs, lower=lower, upper=upper)
    return spans, general, bary_planes


def _draw(zbuf: torch.Tensor, spans: _Spans, general: torch.Tensor, width: int, near: float) -> None:
    """Scan-convert into zbuf. Most triangles have at most two left and two right bounding edges and, in
    front of the near plane, need no per-pixel near test: those take the cheaper scan."""
    hard = torch.nonzero(general).squeeze(1)
    if not len(hard):
        _scan_chunks(zbuf, spans.two_slots(), width, None)
        return
    simple = torch.nonzero(~general).squeeze(1)
    if len(simple):
        _scan_chunks(zbuf, spans.select(simple).two_slots(), width, None)
    _scan_chunks(zbuf, spans.select(hard), width, 1.0 / near)


def _homogeneous_edges(
    corners: list[torch.Tensor], fx: float, fy: float, cx: float, cy: float
) -> tuple[list[list[torch.Tensor]], list[torch.Tensor], torch.Tensor]:
    """Edge functions of camera-space triangles (corner list of (n, 3) float64) that may cross the camera
    plane: e_i = (V_j × V_k) · K⁻¹(u, v, 1), signs normalised by det = V_0 · (V_1 × V_2), so that e >= 0
    exactly where the pixel ray hits the triangle in front of the camera (Olano & Greer 1997). Returns
    the float32 (a, b, c) per edge, the weights 1/|det| and which triangles are not degenerate."""
    p = [list(c.unbind(1)) for c in corners]
    crosses = [_cross(p[j], p[k]) for j, k in ((1, 2), (2, 0), (0, 1))]
    det = p[0][0] * crosses[0][0] + p[0][1] * crosses[0][1] + p[0][2] * crosses[0][2]
    sign = torch.sign(det)
    edges = []
    for ex, ey, ez in crosses:
        a = ex * sign / fx
        b = ey * sign / fy
        edges.append([a.float(), b.float(), (ez * sign - a * cx - b * cy).float()])
    inv_det = (1.0 / det.abs()).float()
    return edges, [inv_det] * 3, det != 0


def _clipped_box(tri: torch.Tensor, fx: float, fy: float, cx: float, cy: float, near: float) -> torch.Tensor:
    """(n, 4) umin, umax, vmin, vmax of camera-space triangles (n, corner, xyz) crossing z = near, clipped
    to z >= near: the box of their corners in front plus the points where their edges cross the plane."""
    z = tri[..., 2]
    pts = [tri[:, i] for i in range(3)]
    ok = [z[:, i] >= near for i in range(3)]
    for i, j in ((0, 1), (1, 2), (2, 0)):
        zi, zj = z[:, i], z[:, j]
        crosses = (zi - near) * (zj - near) < 0
        t = ((near - zi) / torch.where(crosses, zj - zi, torch.ones_like(zi))).clamp(0.0, 1.0)
        pts.append(tri[:, i] + t[:, None] * (tri[:, j] - tri[:, i]))
        ok.append(crosses)
    p = torch.stack(pts, dim=1)  # (n, 6, 3)
    keep = torch.stack(ok, dim=1)
    zc = p[..., 2].clamp_min(near)
    u = fx * p[..., 0] / zc + cx
    v = fy * p[..., 1] / zc + cy
    inf = torch.full_like(u, float("inf"))
    return torch.stack(
        (
            torch.where(keep, u, inf).amin(1),
            torch.where(keep, u, -inf).amax(1),
            torch.where(keep, v, inf).amin(1),
            torch.where(keep, v, -inf).amax(1),
        ),
        dim=1,
    )


@dataclass
class _Spans:
    """Live triangles of one view, as flat per-triangle columns the scan converter gathers from."""

    face: torch.Tensor  # (L,) int32 face id
    x0: torch.Tensor  # (L,) int32 pixel bounding box, inclusive
    x1: torch.Tensor
    y0: torch.Tensor
    rows: torch.Tensor  # (L,) int32 number of pixel rows to scan from y0
    w: list[torch.Tensor]  # (A, B, C): 1/z = A·u + (B·v + C)
    lower: list[list[torch.Tensor]]  # per slot (slope, offset): u >= slope·v + offset
    upper: list[list[torch.Tensor]]  # per slot (slope, offset): u <= slope·v + offset
    w_cap: torch.Tensor | None = None  # (L,) the most 1/z a pixel may get, where culling relies on it

    def select(self, idx: torch.Tensor) -> _Spans:
        def pick(t: torch.Tensor) -> torch.Tensor:
            return t.index_select(0, idx)

        return _Spans(
            pick(self.face),
            pick(self.x0),
            pick(self.x1),
            pick(self.y0),
            pick(self.rows),
            [pick(t) for t in self.w],
            [[pick(t) for t in s] for s in self.lower],
            [[pick(t) for t in s] for s in self.upper],
            None if self.w_cap is None else pick(self.w_cap),
        )

    def two_slots(self) -> _Spans:
        """Keep two bound slots per side (valid when no triangle has three edges on one side)."""
        return replace(self, lower=_two_of_three(self.lower, -_FAR), upper=_two_of_three(self.upper, _FAR))


def _two_of_three(slots: list[list[torch.Tensor]], dummy: float) -> list[list[torch.Tensor]]:
    used = [(s[1] != dummy).float() for s in slots]
    both = used[0] * used[1]
    first = [s0 * used[0] + s1 * (1.0 - used[0]) for s0, s1 in zip(slots[0], slots[1], strict=True)]
    second = [s1 * both + s2 * (1.0 - both) for s1, s2 in zip(slots[1], slots[2], strict=True)]
    return [first, second]


def _scan_chunks(zbuf: torch.Tensor, tri: _Spans, width: int, max_w: float | None) -> None:
    """Scan-convert in chunks of at most about _CHUNK_PIXELS candidate pixels (bounded memory)."""
    work = torch.cumsum(tri.rows.long() * (tri.x1 - tri.x0 + 1).clamp_min(0), 0)
    n = len(tri.face)
    lo = 0
    while lo < n:
        budget = (int(work[lo - 1]) if lo else 0) + _CHUNK_PIXELS
        hi = max(lo + 1, int(torch.searchsorted(work, budget, right=True)))
        part = tri if (lo, hi) == (0, n) else tri.select(torch.arange(lo, hi, device=zbuf.device))
        _scan(zbuf, part, width, max_w)
        lo = hi


def _scan(zbuf: torch.Tensor, tri: _Spans, width: int, max_w: float | None) -> None:
    """Scan-convert triangles row by row and fold their hits into zbuf with one scatter_reduce(amin).

    Key = (bits of 1/z flipped so that nearer is smaller) << 32 | face: exact depth order, ties to the
    lower face id. `max_w` (1/near) turns on the per-pixel near-plane test."""
    device = zbuf.device
    n_rows = int(tri.rows.sum())
    if n_rows == 0:
        return
    nz = torch.nonzero(tri.rows).squeeze(1)
    owner, first = _segment_ids(tri.rows.index_select(0, nz), n_rows)
    t = nz.index_select(0, owner)
    # in-place arithmetic throughout: every fresh large tensor costs page faults, often more than the op
    py = torch.arange(n_rows, device=device, dtype=torch.int32)
    py.sub_(first.int().index_select(0, owner)).add_(tri.y0.index_select(0, t))
    v = py.float().add_(0.5)
    u_lo = u_hi = None
    for slope, offset in tri.lower:
        bound = slope.index_select(0, t).mul_(v).add_(offset.index_select(0, t))
        u_lo = bound if u_lo is None else torch.maximum(u_lo, bound, out=u_lo)
    for slope, offset in tri.upper:
        bound = slope.index_select(0, t).mul_(v).add_(offset.index_select(0, t))
        u_hi = bound if u_hi is None else torch.minimum(u_hi, bound, out=u_hi)
    xs = u_lo.sub_(0.5).clamp_(0, width).ceil_().int()
    length = u_hi.sub_(0.5).clamp_(-1, width - 1).floor_().int().sub_(xs).add_(1).clamp_min_(0)
    n_pix = int(length.sum())
    if n_pix == 0:
        return
    nz = torch.nonzero(length).squeeze(1)
    owner, first = _segment_ids(length.index_select(0, nz), n_pix)
    t = t.index_select(0, nz)
    x_off = xs.index_select(0, nz).sub_(first.int())
    row_base = py.index_select(0, nz).long().mul_(width).add_(x_off)
    w_a = tri.w[0].index_select(0, t)
    w_t = tri.w[1].index_select(0, t).mul_(v.index_select(0, nz)).add_(tri.w[2].index_select(0, t))
    face = tri.face.index_select(0, t)

    ramp = torch.arange(n_pix, device=device, dtype=torch.int32)
    u = x_off.index_select(0, owner).add_(ramp).float().add_(0.5)
    w = w_a.index_select(0, owner).mul_(u).add_(w_t.index_select(0, owner))
    if tri.w_cap is not None:  # rounding may overshoot the corners' 1/z; culling assumes it does not
        torch.minimum(w, tri.w_cap.index_select(0, t).index_select(0, owner), out=w)
    keep = None if max_w is None else (w > 0) & (w <= max_w)
    w_bits = w.view(torch.int32).neg_().add_(_W_BITS_MAX)  # reuses w's memory
    key = torch.stack((face.index_select(0, owner), w_bits), dim=1).view(torch.int64).squeeze(1)
    if keep is not None:
        key.masked_fill_(~keep, _MAX_KEY)
    zbuf.scatter_reduce_(0, row_base.index_select(0, owner).add_(ramp), key, "amin")


def _raster_embree(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    near: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Primary rays through the pixel centres, cast with Embree; same outputs as the torch path."""
    from embreex import rtcore_scene
    from embreex.mesh_construction import TriangleMesh

    scene = rtcore_scene.EmbreeScene()
    tris = vertices.detach().cpu().numpy()[faces.cpu().numpy()].astype(np.float32)
    TriangleMesh(scene, tris)
    n_views = len(viewmats)
    tri_ids = np.full((n_views, height * width), -1, dtype=np.int64)
    depth = np.zeros((n_views, height * width), dtype=np.float32)
    bary = np.zeros((n_views, height * width, 3), dtype=np.float32)
    for b in range(n_views):
        origins, dirs = primary_rays(viewmats[b].numpy(), Ks[b].numpy(), width, height, near)
        hit = scene.run(origins, dirs, output=1)
        ids = hit["primID"].astype(np.int64)
        fg = ids >= 0
        tri_ids[b, fg] = ids[fg]
        depth[b, fg] = hit["tfar"][fg] + near  # dirs have unit camera z, so t is camera depth minus near
        u, v = hit["u"][fg], hit["v"][fg]
        bary[b, fg] = np.stack((1.0 - u - v, u, v), axis=1)
    shape = (n_views, height, width)
    return (
        torch.from_numpy(tri_ids.reshape(shape)),
        torch.from_numpy(depth.reshape(shape)),
        torch.from_numpy(bary.reshape(*shape, 3)),
    )


def primary_rays(
    viewmat: np.ndarray, K: np.ndarray, width: int, height: int, near: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """World-space rays through the pixel centres of one camera, (H·W, 3) each, row-major.

    Directions are not normalised: each has camera-space z = 1, so a hit's ray parameter t is its camera
    depth (minus `near`, since the origins sit on the near plane).
    """
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    d_cam = np.stack(((u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)), axis=-1).reshape(-1, 3)
    rot = viewmat[:3, :3].astype(np.float64)
    center = -rot.T @ viewmat[:3, 3].astype(np.float64)
    dirs = d_cam @ rot
    origins = center[None, :] + near * dirs
    return origins.astype(np.float32), dirs.astype(np.float32)
