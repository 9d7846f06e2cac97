"""Registration: one language source's per-pixel embeddings onto the scene's elements, training-free.

Each pixel's embedding is credited to the elements that blend into it, in proportion to their blend
weights (the render stage's top-k contributors: Gaussians and points with their alpha weights, a mesh
triangle's vertices with their barycentrics), and an element's feature is the weighted mean over every
view, normalised — the multi-view average OpenScene and SAS lift 2D features with. Pixels where the
source has no opinion (zero vector) credit nothing.

A view's embeddings are first reduced to its distinct values ("regions": a mask's crop embedding, a patch
cell, an oracle's part), which keeps the sums small and lets the capability estimate compare what a source
said in each view with what the views add up to (`RegionVotes`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch_scatter import scatter_add

from ...priors import Prior
from ...render import Renders, Views
from .capability import view_evidence

VIEWS_PER_CALL = 4  # views a source embeds at once (a dense map of 4 views stays within tens of MB)
PAIRS_PER_SUM = 1 << 20  # (element, region) credits summed at once: 256 MB of temporaries at 64 components


@dataclass
class RegionVotes:
    """What one source said about the capability sample: per (sampled element, region) the blend weight."""

    element: np.ndarray  # (P,) int32 index into the sample
    region: np.ndarray  # (P,) int32 index into `embeddings`
    weight: np.ndarray  # (P,) float32
    embeddings: np.ndarray  # (R, d) float32, one row per distinct embedding of a view, in the lifted components


@dataclass
class Lifted:
    """One source on the scene, in `dims` components: a unit feature per element, zero where no view gave it
    an opinion; `basis` maps the source's space onto those components."""

    features: np.ndarray  # (N, d) float32
    basis: np.ndarray  # (d, D) float32, orthonormal rows
    votes: RegionVotes
    evidence: np.ndarray  # (N,) float32: how consistently the element's views spoke (`capability.view_evidence`)

    @property
    def seen(self) -> np.ndarray:
        return np.abs(self.features).sum(axis=1) > 0


def _regions(maps: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """One view's map (h, w, D) as its distinct non-zero embeddings (R, D) and the region of every pixel
    (H, W), -1 where the source has no opinion; a coarse map's cells cover the pixels nearest to them."""
    h, w, d = maps.shape
    flat = np.ascontiguousarray(maps.reshape(-1, d), dtype=np.float32)
    uniq, inverse = np.unique(flat.view(np.dtype((np.void, 4 * d))).ravel(), return_inverse=True)
    table = uniq.view(np.float32).reshape(-1, d)
    opinion = np.linalg.norm(table, axis=1) > 0
    keep = np.cumsum(opinion) - 1
    cell_region = np.where(opinion[inverse], keep[inverse], -1)
    ys = np.arange(height) * h // height
    xs = np.arange(width) * w // width
    return table[opinion], cell_region.reshape(h, w)[np.ix_(ys, xs)]


def _sub_views(views: Views, b0: int, b1: int) -> Views:
    key = None if views.key is None else f"{views.key}[{b0}:{b1}]"
    return Views(
        views.rgb[b0:b1], views.depth[b0:b1], views.normals[b0:b1], views.ids[b0:b1], views.cameras[b0:b1], key
    )


def _pairs(table: np.ndarray, region: np.ndarray, ids: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, ...]:
    """One view's credits as distinct (element, region) pairs with summed weights: later sums cost pairs,
    not pixels × contributors."""
    valid = (ids >= 0) & (weights > 0) & (region[..., None] >= 0)
    r = max(len(table), 1)
    elem = ids[valid].astype(np.int64)
    reg = np.broadcast_to(region[..., None], ids.shape)[valid].astype(np.int64)
    key, inverse = np.unique(elem * r + reg, return_inverse=True)
    pair_w = scatter_add(torch.as_tensor(weights[valid], dtype=torch.float32), torch.as_tensor(inverse))
    return key // r, key % r, pair_w.numpy()


def compression(tables: np.ndarray, dims: int) -> np.ndarray:
    """Orthonormal rows (d, D) spanning the source's embeddings best (uncentred SVD, so dot products with
    text survive); the identity when D <= dims. Every element feature is a mix of these rows' span."""
    d = tables.shape[1]
    if d <= dims or len(tables) == 0:
        return np.eye(d, dtype=np.float32)
    _, _, vt = np.linalg.svd(tables.astype(np.float64), full_matrices=False)
    return vt[: min(dims, len(vt))].astype(np.float32)


def lift_source(
    source: Prior,
    renders: Renders,
    n_elements: int,
    sample: np.ndarray,
    dims: int,
    progress: Callable[[float, str], None],
) -> Lifted:
    """Register `source`'s embeddings of every rendered view onto the elements; `sample` (S,) sorted element
    ids whose (element, region) weights are kept for the capability estimate."""
    views = renders.views
    b, height, width = views.ids.shape
    elems, regs, weights, tables = [], [], [], []
    offset = 0
    for b0 in range(0, b, VIEWS_PER_CALL):
        progress(0.9 * b0 / b, f"embedding views {b0 + 1}-{min(b0 + VIEWS_PER_CALL, b)} of {b}")
        maps = np.asarray(source.embed(_sub_views(views, b0, min(b0 + VIEWS_PER_CALL, b))), dtype=np.float32)
        for j in range(len(maps)):
            table, region = _regions(maps[j], height, width)
            e, r, w = _pairs(table, region, renders.contrib_ids[b0 + j], renders.contrib_weights[b0 + j])
            elems.append(e)
            regs.append(r + offset)
            weights.append(w)
            tables.append(table)
            offset += len(table)
    progress(0.9, "registering")
    table = np.concatenate(tables)
    basis = compression(table, dims)
    elem = torch.as_tensor(np.concatenate(elems))
    reg = torch.as_tensor(np.concatenate(regs))
    weight = torch.as_tensor(np.concatenate(weights))
    reduced = torch.as_tensor(table @ basis.T)
    sums = torch.zeros(n_elements, reduced.shape[1])
    for c0 in range(0, len(elem), PAIRS_PER_SUM):  # bounded temporaries: pairs × dims floats at a time
        c = slice(c0, c0 + PAIRS_PER_SUM)
        scatter_add(weight[c, None] * reduced[reg[c]], elem[c], dim=0, out=sums)
    credited = torch.zeros(3, n_elements)  # per element Σ w·|e|, Σ w and Σ w² over its (view, region) credits
    scatter_add(weight * torch.linalg.vector_norm(reduced, dim=1)[reg], elem, dim=0, out=credited[0])
    scatter_add(weight, elem, dim=0, out=credited[1])
    scatter_add(weight * weight, elem, dim=0, out=credited[2])
    evidence = view_evidence(torch.linalg.vector_norm(sums, dim=1).numpy(), *credited.numpy())
    features = torch.nn.functional.normalize(sums, dim=1).numpy()
    kept = np.isin(elem.numpy(), sample)
    votes = RegionVotes(
        np.searchsorted(sample, elem.numpy()[kept]).astype(np.int32),
        reg.numpy()[kept].astype(np.int32),
        weight.numpy()[kept].astype(np.float32),
        table @ basis.T,
    )
    progress(1.0, "registered")
    return Lifted(features, basis, votes, evidence)
