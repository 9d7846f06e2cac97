"""3D Gaussian Splatting rasterization: colour, depth, alpha, any feature channels, per-pixel contributors.

SAGA renders 32-channel affinity features and SA3D a 1-channel mask through this, and both push image-space
losses back to per-Gaussian values, so the features path has an analytic backward. On CUDA tensors the work
goes to gsplat's fused kernels; everywhere else to a tiled torch implementation that follows 3DGS exactly:
EWA projection with the 0.3 low-pass dilation, (tile, depth)-sorted intersection lists, alpha =
opacity·exp(−½dᵀΣ⁻¹d) clamped at 0.99 and skipped under 1/255, front-to-back blending that stops a pixel
once its transmittance would fall under 1e-4. Pixels are evaluated as a batch of tiles × 64 pixels × a
chunk of 32 Gaussians per tile; tiles whose pixels are all saturated leave the batch early. Tiles are 8×8
rather than gsplat's 16×16: on a CPU every (pixel, Gaussian) pair costs the same whether the Gaussian
reaches the pixel or not, and smaller tiles test fewer pairs that miss (docs/journal.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from segany.errors import SegAnyError

TILE = 8  # pixels per tile side (see the module docstring)
ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.99
T_MIN = 1e-4
LOG_ALPHA_MIN, LOG_ALPHA_MAX = math.log(ALPHA_MIN), math.log(ALPHA_MAX)
LOG_ALPHA_SKIP = math.nextafter(LOG_ALPHA_MIN, -math.inf)  # threshold_ keeps x > this, i.e. alpha >= 1/255
EPS2D = 0.3
CHUNK = 32  # Gaussians per tile evaluated together: small enough that saturated tiles stop early.
SAVE_BUDGET = 1 << 30  # bytes of blend weights kept for the backward before it recomputes them instead
TILE_GROUP = 256  # tiles evaluated together: bounds memory to ~TILE_GROUP·64·CHUNK floats per temporary.

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


@dataclass
class SplatRaster:
    """Renders of B views. `depth` is the expected camera z (Σ w·z / alpha, 0 where nothing was hit)."""

    alpha: Tensor  # (B, H, W)
    depth: Tensor  # (B, H, W)
    rgb: Tensor | None = None  # (B, H, W, 3) when SH colours were given
    features: Tensor | None = None  # (B, H, W, C) when features were given
    contrib_ids: Tensor | None = None  # (B, H, W, k) int64 Gaussian ids by decreasing weight, -1 padding
    contrib_weights: Tensor | None = None  # (B, H, W, k) their blending weights, 0 padding


def sh_basis(dirs: Tensor, degree: int) -> Tensor:
    """The real SH basis of 3DGS (its signs and constants) at unit directions: (..., (degree+1)²)."""
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [
            SH_C2[0] * xy,
            SH_C2[1] * yz,
            SH_C2[2] * (2 * zz - xx - yy),
            SH_C2[3] * xz,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            SH_C3[0] * y * (3 * xx - yy),
            SH_C3[1] * xy * z,
            SH_C3[2] * y * (4 * zz - xx - yy),
            SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            SH_C3[4] * x * (4 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3 * yy),
        ]
    return torch.stack(out, dim=-1)


def sh_to_rgb(sh: Tensor, means: Tensor, viewmats: Tensor, degree: int) -> Tensor:
    """View-dependent colour per camera and Gaussian, (B, N, 3): clamp(SH·basis + 0.5, 0) as in 3DGS."""
    rot, trans = viewmats[:, :3, :3], viewmats[:, :3, 3]
    campos = -torch.einsum("bji,bj->bi", rot, trans)
    dirs = torch.nn.functional.normalize(means[None] - campos[:, None], dim=-1)
    basis = sh_basis(dirs, degree)
    k = basis.shape[-1]
    return torch.clamp_min(torch.einsum("bnk,nkc->bnc", basis, sh[:, :k]) + 0.5, 0.0)


def _quat_to_rotmat(quats: Tensor) -> Tensor:
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z),
        2 * (x * y - w * z),
        2 * (x * z + w * y),
        2 * (x * y + w * z),
        1 - 2 * (x * x + z * z),
        2 * (y * z - w * x),
        2 * (x * z - w * y),
        2 * (y * z + w * x),
        1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(*quats.shape[:-1], 3, 3)


@dataclass
class Projected:
    """Per camera and Gaussian: screen mean, conic (a, b, c) of the inverse 2D covariance, z, log-opacity."""

    means2d: Tensor  # (B, N, 2)
    conics: Tensor  # (B, N, 3)
    depths: Tensor  # (B, N)
    log_opacity: Tensor  # (B, N), -inf where culled
    radii: Tensor  # (B, N, 2) half extents of the alpha >= 1/255 ellipse's bounding box, 0 where culled


def project(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    near: float = 0.01,
    far: float = 1e10,
) -> Projected:
    """EWA splatting of 3D Gaussians into B pinhole cameras (the 3DGS / gsplat formulas, with 0.3 dilation)."""
    rot = _quat_to_rotmat(quats)
    m = rot * scales[:, None, :]
    cov3 = m @ m.transpose(-1, -2)
    r, t = viewmats[:, :3, :3], viewmats[:, :3, 3]
    mc = torch.einsum("bij,nj->bni", r, means) + t[:, None]
    covc = torch.einsum("bij,njk,blk->bnil", r, cov3, r)
    tx, ty, tz = mc.unbind(-1)
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    safe_z = torch.where(tz > near, tz, torch.full_like(tz, near))
    # The Jacobian is evaluated with the mean clamped to 1.3× the field of view (as 3DGS does) so Gaussians far
    # off screen do not blow up.
    lim_xp = (width - cx) / fx + 0.3 * 0.5 * width / fx
    lim_xn = cx / fx + 0.3 * 0.5 * width / fx
    lim_yp = (height - cy) / fy + 0.3 * 0.5 * height / fy
    lim_yn = cy / fy + 0.3 * 0.5 * height / fy
    jx = safe_z * torch.maximum(torch.minimum(tx / safe_z, lim_xp), -lim_xn)
    jy = safe_z * torch.maximum(torch.minimum(ty / safe_z, lim_yp), -lim_yn)
    zeros = torch.zeros_like(tz)
    jac = torch.stack(
        [fx / safe_z, zeros, -fx * jx / safe_z**2, zeros, fy / safe_z, -fy * jy / safe_z**2], dim=-1
    ).reshape(*tz.shape, 2, 3)
    cov2 = jac @ covc @ jac.transpose(-1, -2)
    sxx = cov2[..., 0, 0] + EPS2D
    syy = cov2[..., 1, 1] + EPS2D
    sxy = 0.5 * (cov2[..., 0, 1] + cov2[..., 1, 0])
    det = sxx * syy - sxy * sxy
    ok_det = det > 0
    det = torch.where(ok_det, det, torch.ones_like(det))
    conics = torch.stack([syy / det, -sxy / det, sxx / det], dim=-1)
    means2d = torch.stack([fx * tx / safe_z + cx, fy * ty / safe_z + cy], dim=-1)
    op = opacities[None].expand_as(tz)
    visible = ok_det & (tz > near) & (tz < far) & (op >= ALPHA_MIN)
    log_op = torch.log(op.clamp_min(ALPHA_MIN))
    # alpha >= 1/255 exactly inside dᵀΣ⁻¹d <= 2·log(255·opacity); its bounding box has half widths ext·√Σxx.
    with torch.no_grad():
        ext = torch.sqrt(2.0 * (log_op - math.log(ALPHA_MIN)).clamp_min(0.0)) * 1.0001 + 1e-3
        radii = torch.stack([ext * torch.sqrt(sxx), ext * torch.sqrt(syy)], dim=-1)
        on_screen = (
            (means2d[..., 0] + radii[..., 0] > 0)
            & (means2d[..., 0] - radii[..., 0] < width)
            & (means2d[..., 1] + radii[..., 1] > 0)
            & (means2d[..., 1] - radii[..., 1] < height)
        )
        keep = visible & on_screen
        radii = torch.where(keep[..., None], radii, torch.zeros_like(radii))
    log_op = torch.where(keep, log_op, torch.full_like(log_op, -math.inf))
    return Projected(means2d, conics, tz, log_op, radii)


@dataclass
class _Plan:
    """Intersection lists of all B·TH·TW tiles: Gaussian (flat b·N+n) ids by tile, then depth."""

    gids: Tensor  # (M,) int64
    tiles: Tensor  # (M,) int64, ascending
    starts: Tensor  # (n_tiles,) int64
    counts: Tensor  # (n_tiles,) int64
    tiles_x: int
    tiles_y: int
    width: int
    height: int

    def origins(self, tiles: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Pixel coordinates of the top-left corner of each tile."""
        in_view = tiles % (self.tiles_x * self.tiles_y)
        return (in_view % self.tiles_x * TILE).to(dtype), (in_view // self.tiles_x * TILE).to(dtype)


def _min_quad_on_rect(dx0: Tensor, dx1: Tensor, dy0: Tensor, dy1: Tensor, con: Tensor) -> Tensor:
    """min of q(d) = a·dx² + 2b·dx·dy + c·dy² over the rectangle [dx0, dx1] × [dy0, dy1] (offsets from the mean).

    0 when the mean is inside; otherwise the minimum lies on an edge, where q is a 1D quadratic.
    """
    a, b, c = con.unbind(-1)
    best = None
    for fixed, lo, hi, p, r in (
        (dx0, dy0, dy1, a, c),
        (dx1, dy0, dy1, a, c),
        (dy0, dx0, dx1, c, a),
        (dy1, dx0, dx1, c, a),
    ):
        t = (-b * fixed / r).clamp(lo, hi)
        q = p * fixed * fixed + 2 * b * fixed * t + r * t * t
        best = q if best is None else torch.minimum(best, q)
    inside = (dx0 <= 0) & (dx1 >= 0) & (dy0 <= 0) & (dy1 >= 0)
    return torch.where(inside, torch.zeros_like(best), best)


@torch.no_grad()
def _plan(proj: Projected, width: int, height: int) -> _Plan:
    """Enumerate the (tile, Gaussian) pairs whose alpha >= 1/255 ellipse reaches the tile's pixel centres,
    sorted by (tile, depth)."""
    b, n = proj.depths.shape
    tw, th = -(-width // TILE), -(-height // TILE)
    dev = proj.depths.device
    m2 = proj.means2d.detach().reshape(-1, 2)
    rx, ry = proj.radii[..., 0].reshape(-1), proj.radii[..., 1].reshape(-1)
    x0 = torch.floor((m2[:, 0] - rx) / TILE).clamp(0, tw).long()
    x1 = torch.floor((m2[:, 0] + rx) / TILE + 1).clamp(0, tw).long()
    y0 = torch.floor((m2[:, 1] - ry) / TILE).clamp(0, th).long()
    y1 = torch.floor((m2[:, 1] + ry) / TILE + 1).clamp(0, th).long()
    live = rx > 0
    nx, ny = (x1 - x0) * live, (y1 - y0) * live
    counts = nx * ny
    total = int(counts.sum())
    src = torch.repeat_interleave(torch.arange(b * n, device=dev), counts, output_size=total)
    local = torch.arange(total, device=dev) - (torch.cumsum(counts, 0) - counts)[src]
    w = nx[src]
    tx = x0[src] + local % w
    ty = y0[src] + local // w
    # Bounding boxes of tilted ellipses cover tiles the ellipse never reaches: drop those pairs exactly.
    px0 = (tx * TILE).to(m2.dtype) + 0.5 - m2[src, 0]
    py0 = (ty * TILE).to(m2.dtype) + 0.5 - m2[src, 1]
    q = _min_quad_on_rect(px0, px0 + (TILE - 1), py0, py0 + (TILE - 1), proj.conics.detach().reshape(-1, 3)[src])
    reach = 2.0 * (proj.log_opacity.detach().reshape(-1)[src] - LOG_ALPHA_MIN)
    hit = q <= reach * 1.0002 + 1e-3
    src, tile = src[hit], ((src // n) * (tw * th) + ty * tw + tx)[hit]
    zbits = proj.depths.detach().float().reshape(-1).view(torch.int32).long()
    order = torch.argsort((tile << 32) | zbits[src])
    per_tile = torch.bincount(tile, minlength=b * th * tw)
    return _Plan(src[order], tile[order], torch.cumsum(per_tile, 0) - per_tile, per_tile, tw, th, width, height)


def _pixel_basis(dtype: torch.dtype, device: torch.device) -> Tensor:
    """[x², xy, y², x, y, 1] at the tile-local pixel centres: log-alpha is this times 6 per-pair numbers."""
    ys, xs = torch.meshgrid(
        torch.arange(TILE, dtype=dtype, device=device) + 0.5,
        torch.arange(TILE, dtype=dtype, device=device) + 0.5,
        indexing="ij",
    )
    x, y = xs.reshape(-1), ys.reshape(-1)
    return torch.stack([x * x, x * y, y * y, x, y, torch.ones_like(x)], dim=-1)


def _tile_pixels_inside(plan: _Plan, device: torch.device) -> Tensor:
    """(n_tiles, TILE²) bool: the tile pixel lies inside the image (border tiles are partly outside)."""
    ys, xs = torch.meshgrid(torch.arange(TILE, device=device), torch.arange(TILE, device=device), indexing="ij")
    tid = torch.arange(plan.tiles_x * plan.tiles_y, device=device)
    px = (tid % plan.tiles_x)[:, None] * TILE + xs.reshape(-1)
    py = (tid // plan.tiles_x)[:, None] * TILE + ys.reshape(-1)
    inside = (px < plan.width) & (py < plan.height)
    n_views = plan.counts.numel() // tid.numel()
    return inside.repeat(n_views, 1)


ChunkFn = Callable[[Tensor, Tensor, Tensor], None]  # (tiles (A,), Gaussian ids (A, K), weights (A, P, K))


def _weights_inplace(log_alpha: Tensor, t_prev: Tensor) -> tuple[Tensor, Tensor]:
    """Blend weights (A, P, K) and transmittance after each Gaussian, reusing `log_alpha`'s memory.

    T_k = T_prev·Π_{i<=k}(1−α_i) and w_k = α_k·T_{k-1} = T_{k-1} − T_k; a pixel stops (weights 0 from there
    on) at the first Gaussian that would take T under 1e-4, as in 3DGS. Written for the fewest passes over
    the big tensor: this loop is the CPU cost of rendering.
    """
    log_alpha.clamp_(max=LOG_ALPHA_MAX)
    torch.nn.functional.threshold_(log_alpha, LOG_ALPHA_SKIP, -math.inf)
    t_incl = torch.rsub(log_alpha.exp_(), 1.0)
    t_incl[..., 0] *= t_prev
    t_incl.cumprod_(dim=-1)
    weights = log_alpha
    torch.sub(t_incl[..., :-1], t_incl[..., 1:], out=weights[..., 1:])
    torch.sub(t_prev, t_incl[..., 0], out=weights[..., 0])
    stopping = (t_incl[..., -1] < T_MIN) & (t_prev > 0)
    if bool(stopping.any()):
        weights.masked_fill_(t_incl < T_MIN, 0.0)
    return weights, t_incl


def _weights_autograd(log_alpha: Tensor, t_prev: Tensor) -> tuple[Tensor, Tensor]:
    """`_weights_inplace` without in-place updates, for the autograd (geometric gradient) path."""
    alpha = torch.exp(log_alpha.clamp(max=LOG_ALPHA_MAX))
    alpha = torch.where(log_alpha >= LOG_ALPHA_MIN, alpha, torch.zeros_like(alpha))
    keep = 1.0 - alpha
    t_incl = torch.cumprod(keep, dim=-1) * t_prev[..., None]
    weights = torch.where(t_incl >= T_MIN, t_incl / keep * alpha, torch.zeros_like(alpha))
    return weights, t_incl


def _pair_coefficients(proj: Projected, plan: _Plan, dtype: torch.dtype) -> Tensor:
    """(M+1, 6, 1) numbers per (tile, Gaussian) pair such that log-alpha at tile pixel p = basis[p] · coef.

    Tile-local coordinates keep the expanded quadratic well conditioned in float32. Row M is a sentinel
    with log-alpha = −inf that pads the per-tile lists.
    """
    ox, oy = plan.origins(plan.tiles, dtype)
    m2 = proj.means2d.reshape(-1, 2).to(dtype)[plan.gids]
    a, b, c = proj.conics.reshape(-1, 3).to(dtype)[plan.gids].unbind(-1)
    lo = proj.log_opacity.reshape(-1).to(dtype)[plan.gids]
    mx, my = m2[:, 0] - ox, m2[:, 1] - oy
    const = lo - 0.5 * a * mx * mx - b * mx * my - 0.5 * c * my * my
    coef = torch.stack([-0.5 * a, -b, -0.5 * c, a * mx + b * my, b * mx + c * my, const], dim=1)
    pad = torch.tensor([[0, 0, 0, 0, 0, -math.inf]], dtype=dtype, device=coef.device)
    return torch.cat([coef, pad])


def _composite(
    proj: Projected, plan: _Plan, cols: Tensor, top_k: int, on_chunk: ChunkFn | None = None
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Blend per-Gaussian channels `cols` (B·N, D) into tiles: (n_tiles, P, D+1), last channel = alpha.

    With grad mode on it is differentiable by autograd in every input (the geometric-gradient path); with it
    off it updates its buffers in place (the fast path that `_Blend` wraps). `on_chunk` sees every chunk's
    blend weights (padded Gaussians have weight 0).
    """
    dev, dtype = cols.device, cols.dtype
    inplace = not torch.is_grad_enabled()
    weights_fn = _weights_inplace if inplace else _weights_autograd
    n_tiles, n_pix = plan.counts.numel(), TILE * TILE
    cols1 = torch.cat([cols, torch.ones_like(cols[:, :1])], dim=1)
    basis = _pixel_basis(dtype, dev)
    coef = _pair_coefficients(proj, plan, dtype)
    n_pairs = plan.gids.numel()
    gids = torch.cat([plan.gids, plan.gids.new_zeros(1)])
    ends = plan.starts + plan.counts
    out = torch.zeros(n_tiles, n_pix, cols1.shape[1], dtype=dtype, device=dev)
    trans = _tile_pixels_inside(plan, dev).to(dtype)
    top_w = top_i = None
    if top_k:
        top_w = torch.zeros(n_tiles, n_pix, top_k, dtype=dtype, device=dev)
        top_i = torch.full((n_tiles, n_pix, top_k), -1, dtype=torch.long, device=dev)
    k_ar = torch.arange(CHUNK, device=dev)
    occupied = torch.nonzero(plan.counts > 0).flatten()
    for g0 in range(0, occupied.numel(), TILE_GROUP):
        active = occupied[g0 : g0 + TILE_GROUP]
        j = 0
        while active.numel():
            pos = plan.starts[active, None] + j * CHUNK + k_ar
            pos = torch.where(pos < ends[active, None], pos, n_pairs)
            gid = gids[pos]
            t_prev = trans[active]
            pair_coef = torch.index_select(coef, 0, pos.reshape(-1)).reshape(*pos.shape, 6).transpose(1, 2)
            weights, t_incl = weights_fn(torch.matmul(basis, pair_coef), t_prev)
            res = torch.bmm(weights, torch.index_select(cols1, 0, gid.reshape(-1)).reshape(*gid.shape, -1))
            t_new = torch.where(t_incl[..., -1] < T_MIN, torch.zeros_like(t_prev), t_prev - res[..., -1])
            if inplace:
                out.index_add_(0, active, res)
                trans[active] = t_new
            else:
                out = out.index_add(0, active, res)
                trans = trans.index_copy(0, active, t_new)
            if on_chunk is not None:
                on_chunk(active, gid, weights)
            if top_k:
                cand_w = torch.cat([top_w[active], weights.detach()], dim=-1)
                cand_i = torch.cat([top_i[active], gid[:, None, :].expand_as(weights)], dim=-1)
                best_w, best = torch.topk(cand_w, top_k, dim=-1)
                top_w[active] = best_w
                top_i[active] = torch.where(best_w > 0, torch.gather(cand_i, -1, best), torch.full_like(best, -1))
            more = (plan.counts[active] > (j + 1) * CHUNK) & (t_new > 0).any(dim=1)
            active = active[more]
            j += 1
    return out, top_w, top_i


class _Blend(torch.autograd.Function):
    """Blending with the backward computed from the per-pixel weights: d cols = Σ_pixels w · d out.

    The forward keeps the weights while they fit in SAVE_BUDGET bytes; past that the backward recomputes
    them (one more forward pass) instead of holding gigabytes for large images.
    """

    @staticmethod
    def forward(ctx, cols: Tensor, proj: Projected, plan: _Plan, top_k: int, need_grad: bool):  # type: ignore[override]
        saved: list[tuple[Tensor, Tensor, Tensor]] = []
        used = [0]

        def keep(tiles: Tensor, gid: Tensor, weights: Tensor) -> None:
            used[0] += weights.numel() * weights.element_size()
            if used[0] <= SAVE_BUDGET:
                saved.append((tiles, gid, weights))

        out, top_w, top_i = _composite(proj, plan, cols, top_k, keep if need_grad else None)
        ctx.chunks = saved if used[0] <= SAVE_BUDGET else None
        ctx.geometry = (proj, plan)
        ctx.save_for_backward(cols)
        if top_k:
            ctx.mark_non_differentiable(top_w, top_i)
            return out, top_w, top_i
        return out, None, None

    @staticmethod
    def backward(ctx, d_out: Tensor, *_):  # type: ignore[override]
        (cols,) = ctx.saved_tensors
        n, d = cols.shape
        grad = torch.zeros(n, d, dtype=d_out.dtype, device=d_out.device)

        def accumulate(tiles: Tensor, gid: Tensor, weights: Tensor) -> None:
            g = torch.bmm(weights.transpose(1, 2), d_out[tiles, :, :d])
            grad.index_add_(0, gid.reshape(-1), g.reshape(-1, d))

        if ctx.chunks is None:
            with torch.no_grad():
                _composite(*ctx.geometry, cols, 0, accumulate)
        else:
            for chunk in ctx.chunks:
                accumulate(*chunk)
        return grad, None, None, None, None


def _untile(t: Tensor, plan: _Plan) -> Tensor:
    """(B·TH·TW, TILE², ...) tiles -> (B, H, W, ...) image."""
    b = t.shape[0] // (plan.tiles_x * plan.tiles_y)
    rest = t.shape[2:]
    img = t.reshape(b, plan.tiles_y, plan.tiles_x, TILE, TILE, *rest).transpose(2, 3)
    img = img.reshape(b, plan.tiles_y * TILE, plan.tiles_x * TILE, *rest)
    return img[:, : plan.height, : plan.width]


def _check_inputs(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, viewmats: Tensor, Ks: Tensor
) -> None:
    n = means.shape[0]
    want = {
        "means": (means, (n, 3)),
        "quats": (quats, (n, 4)),
        "scales": (scales, (n, 3)),
        "opacities": (opacities, (n,)),
    }
    for name, (t, shape) in want.items():
        if tuple(t.shape) != shape:
            raise SegAnyError("invalid_array", f"{name} has shape {tuple(t.shape)}, expected {shape}")
    if viewmats.ndim != 3 or viewmats.shape[1:] != (4, 4) or Ks.shape != (viewmats.shape[0], 3, 3):
        raise SegAnyError(
            "invalid_array", f"viewmats {tuple(viewmats.shape)} / Ks {tuple(Ks.shape)}: expected (B,4,4) / (B,3,3)"
        )


def _resolve_degree(sh: Tensor, sh_degree: int | None) -> int:
    full = round(math.sqrt(sh.shape[1])) - 1 if sh.ndim == 3 else -1
    if full < 0 or sh.shape[2] != 3 or (full + 1) ** 2 != sh.shape[1] or full > 3:
        raise SegAnyError("invalid_array", f"sh has shape {tuple(sh.shape)}, expected (N, K, 3) with K in 1, 4, 9, 16")
    degree = full if sh_degree is None else sh_degree
    if not 0 <= degree <= full:
        raise SegAnyError(
            "invalid_array", f"sh_degree {degree} needs {(degree + 1) ** 2} coefficients, sh has {sh.shape[1]}"
        )
    return degree


def rasterize_splats(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    features: Tensor | None = None,
    sh: Tensor | None = None,
    sh_degree: int | None = None,
    near: float = 0.01,
    far: float = 1e10,
    background: Tensor | None = None,
    return_contrib: int = 0,
    backend: str = "auto",
) -> SplatRaster:
    """Render B views of N Gaussians (quats wxyz, scales not log, opacities in 0..1; OpenCV cameras).

    Gradients flow to `features` and `sh` always; to means / quats / scales / opacities on the torch path
    (by autograd through the tiled compositor, memory-hungry: meant for small scenes). `background` (3,) or
    (B, 3) fills the rgb where alpha < 1. `return_contrib=k` adds the k largest blending weights per pixel and
    their Gaussian ids (always computed by the torch path, also for CUDA tensors). backend: "auto" (gsplat on
    CUDA tensors, torch otherwise), "cuda" (gsplat), "torch" / "cpu" (the tiled torch path).
    """
    _check_inputs(means, quats, scales, opacities, viewmats, Ks)
    if features is None and sh is None:
        raise SegAnyError("bad_request", "rasterize_splats needs features, sh, or both")
    if features is not None and (features.ndim != 2 or features.shape[0] != means.shape[0]):
        raise SegAnyError("invalid_array", f"features has shape {tuple(features.shape)}, expected (N, C)")
    degree = _resolve_degree(sh, sh_degree) if sh is not None else 0
    if backend not in ("auto", "cuda", "cpu", "torch"):
        raise SegAnyError("bad_request", f"unknown backend {backend!r}; expected auto, cuda, cpu or torch")
    use_cuda = backend == "cuda" or (backend == "auto" and means.is_cuda and not return_contrib)
    if use_cuda:
        if return_contrib:
            raise SegAnyError("unsupported", "per-pixel contributors come from the torch path: use backend='auto'")
        if not means.is_cuda:
            raise SegAnyError("unsupported", "backend='cuda' needs CUDA tensors")
        return _rasterize_gsplat(
            means, quats, scales, opacities, viewmats, Ks, width, height, features, sh, degree, near, far, background
        )
    return _rasterize_torch(
        means,
        quats,
        scales,
        opacities,
        viewmats,
        Ks,
        width,
        height,
        features,
        sh,
        degree,
        near,
        far,
        background,
        return_contrib,
    )


def _rasterize_gsplat(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    features: Tensor | None,
    sh: Tensor | None,
    degree: int,
    near: float,
    far: float,
    background: Tensor | None,
) -> SplatRaster:
    """gsplat's fused CUDA rasterizer; SH colours are evaluated here so rgb and features share one pass."""
    from gsplat import rasterization

    b = viewmats.shape[0]
    parts = []
    if sh is not None:
        parts.append(sh_to_rgb(sh, means, viewmats, degree))
    if features is not None:
        parts.append(features[None].expand(b, -1, -1))
    colors = torch.cat([p.to(parts[-1].dtype) for p in parts], dim=-1)
    img, alphas, _ = rasterization(
        means,
        quats,
        scales,
        opacities,
        colors,
        viewmats,
        Ks,
        width,
        height,
        near_plane=near,
        far_plane=far,
        eps2d=EPS2D,
        render_mode="RGB+ED",
        packed=False,
    )
    alpha = alphas[..., 0]
    res = SplatRaster(alpha=alpha, depth=torch.where(alpha > 0, img[..., -1], torch.zeros_like(alpha)))
    at = 0
    if sh is not None:
        rgb = img[..., :3]
        if background is not None:
            rgb = rgb + (1 - alpha[..., None]) * background.to(rgb).reshape(-1, 1, 1, 3)
        res.rgb, at = rgb, 3
    if features is not None:
        res.features = img[..., at : at + features.shape[1]]
    return res


def _rasterize_torch(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    features: Tensor | None,
    sh: Tensor | None,
    degree: int,
    near: float,
    far: float,
    background: Tensor | None,
    top_k: int,
) -> SplatRaster:
    b, n = viewmats.shape[0], means.shape[0]
    geo_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (means, quats, scales, opacities))
    with torch.set_grad_enabled(geo_grad):
        proj = project(means, quats, scales, opacities, viewmats, Ks, width, height, near, far)
    plan = _plan(proj, width, height)
    parts = []
    if sh is not None:
        parts.append(sh_to_rgb(sh, means if geo_grad else means.detach(), viewmats, degree))
    if features is not None:
        parts.append(features[None].expand(b, -1, -1))
    parts.append((proj.depths if geo_grad else proj.depths.detach())[..., None])
    dtype = parts[-2].dtype  # blend in the features' precision (the SH colours' when there are none)
    cols = torch.cat([p.to(dtype) for p in parts], dim=-1).reshape(b * n, -1)
    if geo_grad:
        out, top_w, top_i = _composite(proj, plan, cols, top_k)
    else:
        out, top_w, top_i = _Blend.apply(cols, proj, plan, top_k, torch.is_grad_enabled() and cols.requires_grad)
    img = _untile(out, plan)
    alpha = img[..., -1]
    depth = torch.where(alpha > 0, img[..., -2] / alpha.clamp_min(1e-10), torch.zeros_like(alpha))
    res = SplatRaster(alpha=alpha, depth=depth)
    at = 0
    if sh is not None:
        rgb = img[..., :3]
        if background is not None:
            bg = background.to(rgb).reshape(-1, 1, 1, 3)
            rgb = rgb + (1 - alpha[..., None]) * bg
        res.rgb = rgb
        at = 3
    if features is not None:
        res.features = img[..., at : at + features.shape[1]]
    if top_k:
        res.contrib_weights = _untile(top_w, plan)
        ids = _untile(top_i, plan)
        res.contrib_ids = torch.where(ids >= 0, ids % n, ids)
    return res


def rasterize_splats_reference(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    features: Tensor | None = None,
    sh: Tensor | None = None,
    sh_degree: int | None = None,
    near: float = 0.01,
    far: float = 1e10,
) -> SplatRaster:
    """The plain per-Gaussian implementation: for each view, loop over Gaussians front to back and blend a
    full-image alpha map each. Slow and simple on purpose; it is the speed baseline and a test reference.
    Differentiable by autograd."""
    degree = _resolve_degree(sh, sh_degree) if sh is not None else 0
    proj = project(means, quats, scales, opacities, viewmats, Ks, width, height, near, far)
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=means.dtype, device=means.device) + 0.5,
        torch.arange(width, dtype=means.dtype, device=means.device) + 0.5,
        indexing="ij",
    )
    rgb = sh_to_rgb(sh, means, viewmats, degree) if sh is not None else None
    outs = []
    for v in range(viewmats.shape[0]):
        cols = [rgb[v]] if rgb is not None else []
        if features is not None:
            cols.append(features)
        cols = torch.cat([*cols, proj.depths[v, :, None], torch.ones_like(means[:, :1])], dim=1)
        trans = torch.ones_like(xs)
        alive = torch.ones_like(xs, dtype=torch.bool)
        acc = torch.zeros(height, width, cols.shape[1], dtype=means.dtype, device=means.device)
        for g in torch.argsort(proj.depths[v]).tolist():
            if not math.isfinite(float(proj.log_opacity[v, g])):
                continue
            dx, dy = xs - proj.means2d[v, g, 0], ys - proj.means2d[v, g, 1]
            a, bb, c = proj.conics[v, g]
            power = -0.5 * (a * dx * dx + c * dy * dy) - bb * dx * dy
            alpha = torch.clamp_max(torch.exp(proj.log_opacity[v, g] + power), ALPHA_MAX)
            alpha = torch.where(alpha >= ALPHA_MIN, alpha, torch.zeros_like(alpha))
            nxt = trans * (1 - alpha)
            alive = alive & (nxt >= T_MIN)
            w = torch.where(alive, alpha * trans, torch.zeros_like(alpha))
            acc = acc + w[..., None] * cols[g]
            trans = torch.where(alive, nxt, trans)
        outs.append(acc)
    img = torch.stack(outs)
    alpha = img[..., -1]
    depth = torch.where(alpha > 0, img[..., -2] / alpha.clamp_min(1e-10), torch.zeros_like(alpha))
    res = SplatRaster(alpha=alpha, depth=depth)
    at = 0
    if rgb is not None:
        res.rgb, at = img[..., :3], 3
    if features is not None:
        res.features = img[..., at : at + features.shape[1]]
    return res
