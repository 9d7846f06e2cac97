"""SAGA's correspondence distillation on the captured pixels: per-element features and the scale gate.

Each step takes one view (mask ids mean something only within their view), samples pixels and scales,
renders the pixel features through the frozen contributor map (Σ_k w_k · f[id_k]) and compares every
pair under the gate of each scale. At scale s a pixel's part is the largest of its masks no larger than s
(masks larger than s are ignored); two pixels correspond when that part is the same mask. Corresponding
pairs are pulled to cosine 1, the others pushed to at most 0. The two terms are averaged separately, so
the many non-corresponding pairs do not drown the few corresponding ones.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from segany.kernels.knn import knn

from ...errors import SegAnyError
from .features import ScaleGate
from .options import SAGAOptions
from .pixels import Pixels

SCALE_MARGIN = 1.5  # scales are sampled a little past the smallest and largest mask, so both ends are trained
REPORT_EVERY = 25  # steps between progress reports (each may raise `cancelled`)
# torch says CSR support is beta on first use; the one product used here (CSR @ dense, its gradient) is tested
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)


def scale_range(scales: np.ndarray) -> tuple[float, float]:
    """The scales training covers (and "auto" searches): the masks' extent, widened by SCALE_MARGIN."""
    return float(scales.min()) / SCALE_MARGIN, float(scales.max()) * SCALE_MARGIN


def parts_at(mask_ids: torch.Tensor, mask_scales: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """(S, P) each pixel's part at each scale: the id of its largest mask no larger than the scale, -1 none."""
    fits = mask_scales[None] <= scales[:, None, None]  # (S, P, L)
    key = torch.where(fits, mask_scales[None], torch.tensor(-1.0))
    pick = key.argmax(dim=-1, keepdim=True)  # (S, P, 1)
    ids = torch.gather(mask_ids[None].expand(len(scales), -1, -1), 2, pick)[..., 0]
    return torch.where(fits.any(-1), ids, torch.tensor(-1))


class _PushSum(torch.autograd.Function):
    """Σ relu(h_i · h_j) over the pairs `equal` leaves out, per scale: h (S, P, D), equal (S, P, P) bool. The
    similarities are symmetric, so the gradient is one product 2·M·h instead of autograd's two, and the
    forward works in place on the one (S, P, P) buffer (the step's largest)."""

    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, equal: torch.Tensor) -> torch.Tensor:
        sim = torch.bmm(h, h.transpose(1, 2))
        sim.clamp_(min=0).masked_fill_(equal, 0)
        ctx.save_for_backward(h, sim)
        return sim.sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        h, sim = ctx.saved_tensors
        return torch.bmm(sim.sign_(), h).mul_(2 * grad), None


def correspondence_loss(features: torch.Tensor, gates: torch.Tensor, parts: torch.Tensor) -> torch.Tensor | None:
    """Pixel features (P, D), gates (S, D), parts (S, P) → the pull / push loss over all pixel pairs; None
    when no pair has a part to judge by. Pairs whose parts differ (one may have none) are pushed, pairs in
    one part (not a pixel with itself) pulled. The pull needs no pair: over a part g with unit features
    h_i, Σ_{i≠j} h_i·h_j = |Σ h_i|² − Σ |h_i|², so it costs (S, P, D) instead of (S, P, P)."""
    h = torch.nn.functional.normalize(features[None] * gates[:, None], dim=-1)  # (S, P, D)
    s, p = parts.shape
    key = parts + 1 + torch.arange(s)[:, None] * (int(parts.max()) + 2)  # (scale, part) as one id; -1 → 0
    _, counts = torch.unique(key, return_counts=True)
    n_differ = s * p * p - int((counts.to(torch.int64) ** 2).sum())
    inside = parts >= 0
    h_in = h[inside]
    _, group, sizes = torch.unique(key[inside], return_inverse=True, return_counts=True)
    n_same = int((sizes.to(torch.int64) ** 2).sum()) - len(h_in)
    if n_same + n_differ == 0:
        return None
    sums = torch.zeros(len(sizes), h.shape[-1], dtype=h.dtype).index_add(0, group, h_in)
    pull = (n_same - ((sums * sums).sum() - (h_in * h_in).sum())) / max(n_same, 1)
    push = _PushSum.apply(h, parts[:, :, None] == parts[:, None, :]) / max(n_differ, 1)
    return pull + push


def neighbours(positions: np.ndarray, k: int) -> torch.Tensor:
    """(N, k) int64: every element's k nearest elements by position, itself first (k clipped to N)."""
    k = min(k, len(positions))
    pts = torch.from_numpy(np.ascontiguousarray(positions, dtype=np.float32))
    return knn(pts, pts, k)[1].to(torch.int64)


def smoothed(features: torch.Tensor, near: torch.Tensor) -> torch.Tensor:
    """SAGA's KNN smoothing: the mean of the unit features of the neighbours `near` (..., k) holds, one mean
    per row. Unit features make every neighbour count alike; the mean ties an element seen in few pixels to
    the part around it and lets a hidden element learn from the pixels of its neighbours. Only the gathered
    rows are normalised, not all N features."""
    return torch.nn.functional.normalize(features[near], dim=-1).mean(dim=-2)


class PixelBlend:
    """A step's pixels as one sparse (P × U) matrix over the U distinct elements they read, SAGA's smoothing
    folded in: pixel = Σ_k w_k · mean_j unit(f[near[id_k, j]]). Only those U rows are read, normalised and
    updated, so a step costs the same for a thousand elements or a million; the rows are found by marking
    them in a reused (N,) buffer, not by sorting the step's P·K·H indices."""

    def __init__(self, ids: torch.Tensor, weights: torch.Tensor, near: torch.Tensor) -> None:
        self.ids, self.weights, self.near = ids, weights, near
        self.marked = torch.zeros(len(near), dtype=torch.bool)
        self.slot = torch.zeros(len(near), dtype=torch.int64)

    def __call__(self, pix: torch.Tensor, half: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows (U,) the pixels `pix` read, each contributor smoothed over the neighbours `half` selects,
        and the (P, U) sparse CSR matrix that blends those rows' unit features into the pixels' features."""
        # index_select / index_fill_ / index_copy_: several times faster on the CPU than [] indexing of the same
        contrib = self.ids.index_select(0, pix)
        p, k = contrib.shape
        reads = self.near.index_select(0, contrib.reshape(-1)).index_select(1, half).reshape(-1)  # (P·K·H,)
        h = len(half)
        self.marked.index_fill_(0, reads, True)
        rows = self.marked.nonzero()[:, 0]
        self.marked.index_fill_(0, rows, False)
        self.slot.index_copy_(0, rows, torch.arange(len(rows)))
        w = (self.weights.index_select(0, pix) / h)[:, :, None].expand(p, k, h).reshape(-1)
        crow = torch.arange(0, p * k * h + 1, k * h)
        cols = self.slot.index_select(0, reads)
        return rows, torch.sparse_csr_tensor(crow, cols, w, (p, len(rows)), check_invariants=False)


class _CSRProduct(torch.autograd.Function):
    """A CSR matrix (P, U) with equally long rows times dense (U, D). torch's own gradient converts the matrix
    to a transposed CSR through COO (twice this step's cost); with equally long rows the transpose is one
    stable sort of the column indices."""

    @staticmethod
    def forward(ctx: Any, mix: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        ctx.mix = mix
        return mix @ dense

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        mix = ctx.mix
        p, u = mix.shape
        per_row = int(mix.crow_indices()[1])
        cols, vals = mix.col_indices(), mix.values()
        order = torch.sort(cols, stable=True)[1]
        crow = torch.zeros(u + 1, dtype=torch.int64)
        torch.cumsum(torch.bincount(cols, minlength=u), 0, out=crow[1:])
        mix_t = torch.sparse_csr_tensor(crow, order // per_row, vals[order], (u, p), check_invariants=False)
        return None, mix_t @ grad


def blended(mix: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
    """(P, D) pixel features: `PixelBlend`'s matrix times the rows' unit features, with a cheap gradient."""
    return _CSRProduct.apply(mix, unit)


class RowAdam:
    """Adam on the rows of a table that a step reads ("lazy" Adam, as torch's SparseAdam: an unread row keeps
    its moments and value). A dense Adam passed over all N × D features every step, most of a million-element
    step; torch's SparseAdam does this through sparse tensors at several times the cost. Value and moments
    sit side by side, (N, 3, D), so a step is one gather and one scatter of its rows."""

    def __init__(self, table: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.state = torch.stack([table, torch.zeros_like(table), torch.zeros_like(table)], dim=1)
        self.lr, self.betas, self.eps, self.t = lr, betas, eps, 0

    @property
    def table(self) -> torch.Tensor:
        """(N, D) the present values."""
        return self.state[:, 0]

    def read(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows' state block (U, 3, D) for `step`, and their values (U, D) as a leaf that takes a gradient."""
        block = self.state.index_select(0, rows)
        return block, block[:, 0].clone().requires_grad_()

    def step(self, rows: torch.Tensor, block: torch.Tensor, grad: torch.Tensor) -> None:
        """Update `rows` (their block from `read`) with their gradient (U, D)."""
        b1, b2 = self.betas
        self.t += 1
        value, m, v = block.unbind(1)
        m.lerp_(grad, 1 - b1)
        v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = v.sqrt().div_(math.sqrt(1 - b2**self.t)).add_(self.eps)
        value.addcdiv_(m, denom, value=-self.lr / (1 - b1**self.t))
        self.state.index_copy_(0, rows, block)


def smooth_all(features: torch.Tensor, near: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """`smoothed` over every element with all its neighbours, in chunks (the (N, k, D) gather of a
    million elements would take gigabytes)."""
    with torch.no_grad():
        return torch.cat([smoothed(features, near[i : i + chunk]) for i in range(0, len(near), chunk)])


def train(
    pixels: Pixels,
    positions: np.ndarray,
    n_elements: int,
    options: SAGAOptions,
    progress: Callable[[float, str], None],
) -> tuple[torch.Tensor, ScaleGate, dict[str, float]]:
    """Trained features (N, D) float32 (KNN-smoothed, see `smoothed`) and gate, plus the mean loss of the
    first and the last tenth of steps."""
    gen = torch.Generator().manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    lo, hi = scale_range(pixels.scales)
    reference = float(np.median(pixels.scales))
    near = neighbours(positions, options.smooth_k)
    keep = max(1, near.shape[1] // 2)  # SAGA averages a random half of the neighbours each step (a dropout)
    torch.manual_seed(options.seed)  # the gate's initial weights
    gate = ScaleGate(options.dim, reference)
    feature_opt = RowAdam(torch.randn(n_elements, options.dim, generator=gen) * 0.1, options.lr)
    gate_opt = torch.optim.Adam(gate.parameters(), lr=options.lr)
    blend = PixelBlend(torch.from_numpy(pixels.ids), torch.from_numpy(pixels.weights), near)
    mask_ids = torch.from_numpy(pixels.mask_ids)
    mask_scales = torch.from_numpy(pixels.mask_scales)
    sizes = np.diff(pixels.starts)
    view_p = sizes / sizes.sum()
    losses: list[float] = []
    for step in range(options.steps):
        if step % REPORT_EVERY == 0:
            progress(step / options.steps, f"training step {step + 1} of {options.steps}")
        v = int(rng.choice(len(sizes), p=view_p))
        take = min(options.pixels, int(sizes[v]))
        pix = torch.from_numpy(pixels.starts[v] + rng.choice(int(sizes[v]), size=take, replace=False))
        scales = torch.from_numpy(np.exp(rng.uniform(np.log(lo), np.log(hi), options.scales_per_step)))
        half = torch.from_numpy(rng.choice(near.shape[1], size=keep, replace=False))
        rows, mix = blend(pix, half)
        block, read = feature_opt.read(rows)
        pixel_f = blended(mix, torch.nn.functional.normalize(read, dim=-1))
        loss = correspondence_loss(pixel_f, gate(scales), parts_at(mask_ids[pix], mask_scales[pix], scales))
        if loss is None:  # no pixel had a part at any of the scales: nothing to learn from this step
            continue
        gate_opt.zero_grad(set_to_none=True)
        loss.backward()
        assert read.grad is not None
        feature_opt.step(rows, block, read.grad)
        gate_opt.step()
        losses.append(float(loss.detach()))
    if not losses:
        raise SegAnyError(
            "unsupported", "no sampled pixel lay in any of the prior's masks, so nothing was learnt; render more views"
        )
    tenth = max(1, len(losses) // 10)
    return (
        smooth_all(feature_opt.table, near),
        gate,
        {"loss_first": float(np.mean(losses[:tenth])), "loss_last": float(np.mean(losses[-tenth:]))},
    )


def seen_elements(pixels: Pixels, n_elements: int) -> np.ndarray:
    """(N,) bool: the elements that are the strongest contributor of some trained pixel (what a view shows
    there, as `Views.ids` says). An element only ever blended in faintly gets too little gradient for its
    feature to mean anything, so it counts as hidden too."""
    seen = np.zeros(n_elements, dtype=bool)
    seen[pixels.ids[:, 0][pixels.weights[:, 0] > 0]] = True
    return seen


def element_scales(pixels: Pixels, n_elements: int) -> torch.Tensor:
    """(N, L) float32: per prior level, the geometric mean scale of the masks that held an element's pixels
    (those it is the strongest contributor of); NaN where no such mask exists. It is the size the prior
    saw a part around that element as, at each granularity, which `"auto"` starts from."""
    owner = pixels.ids[:, 0]
    levels = pixels.mask_scales.shape[1]
    out = np.full((n_elements, levels), np.nan, dtype=np.float32)
    for lvl in range(levels):
        scale = pixels.mask_scales[:, lvl]
        ok = np.isfinite(scale) & (scale > 0) & (pixels.weights[:, 0] > 0)
        count = np.bincount(owner[ok], minlength=n_elements)
        logs = np.bincount(owner[ok], weights=np.log(scale[ok]), minlength=n_elements)
        has = count > 0
        out[has, lvl] = np.exp(logs[has] / count[has])
    return torch.from_numpy(out)


def fill_hidden(features: torch.Tensor, seen: np.ndarray, positions: np.ndarray) -> torch.Tensor:
    """Each element no view shows takes the feature of its nearest seen element: a hidden element (inside
    a blob, in a crease) most likely belongs to the part around it, and clustering and similarity then
    treat it like that part instead of like noise."""
    hidden = np.flatnonzero(~seen)
    if len(hidden) == 0 or not seen.any():
        return features
    shown_idx = np.flatnonzero(seen)
    _, nearest = knn(torch.from_numpy(positions[shown_idx]), torch.from_numpy(positions[hidden]), 1)
    out = features.clone()
    out[torch.from_numpy(hidden)] = features[torch.from_numpy(shown_idx[nearest[:, 0].numpy()])]
    return out
