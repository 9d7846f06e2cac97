"""Weight-free 2D prior: part hierarchies from rendered depth, normals and colour.

Parts of objects meet at concave creases and hide each other at depth jumps (the minima rule), so a
per-pixel boundary map of concavity, depth discontinuity and colour edges, over-segmented by watershed
and merged bottom-up by mean boundary strength, gives a region tree whose long-lived nodes are parts,
groups of parts and whole objects. Prompts pick nodes of that tree; automatic masks cut it at several
heights; embeddings are a spectral embedding of the scene elements seen across all views (elements
grouped together by many views end up close), so the same part gets the same vector in every view.
Nothing here reads ground-truth labels.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from scipy import ndimage
from scipy.sparse.linalg import ArpackNoConvergence, svds
from skimage.morphology import h_minima
from skimage.segmentation import watershed

from ..options import option
from ..render import Views
from .base import Prior, PromptResult, prev_mask, prompt_pixels
from .config import PriorContext

ROOT_DEATH = 2.0  # height at which whole objects "die": they outlive every merge
SPECTRAL_POWER = 4  # singular values raised to this: the coarse structure dominates (tuned on PSB)
SAME_SIZE = 0.4  # |log area ratio| under which two nested candidates count as the same size


@dataclass
class RegionTree:
    """Merge tree of one view: leaves are watershed regions, internal nodes their unions."""

    leaves: np.ndarray  # (H, W) int32 leaf index; background holds n_leaves (the always-False column)
    parent: np.ndarray  # (n,) int64, -1 for roots
    birth: np.ndarray  # (n,) float64 merge height that created the node (0 for leaves)
    death: np.ndarray  # (n,) float64 merge height that absorbed it (ROOT_DEATH for roots)
    area: np.ndarray  # (n,) int64 pixels
    members: np.ndarray  # (n, n_leaves + 1) bool; last column is background (always False)

    def mask(self, nodes: np.ndarray | list[int]) -> np.ndarray:
        """Union of the nodes' pixels, (H, W) bool."""
        cover = self.members[np.asarray(nodes, dtype=np.int64)].any(axis=0)
        return cover[self.leaves]

    def chain(self, leaf: int) -> list[int]:
        """The leaf and all its ancestors, small → large."""
        out = [leaf]
        while self.parent[out[-1]] >= 0:
            out.append(int(self.parent[out[-1]]))
        return out

    def cut(self, height: float) -> np.ndarray:
        """Nodes alive at `height`: a partition of the foreground."""
        return np.flatnonzero((self.birth <= height) & (self.death > height))


def _box(fg: np.ndarray, margin: int) -> tuple[slice, slice]:
    """Bounding box of the foreground grown by `margin` pixels: all the work happens inside it."""
    rows, cols = np.flatnonzero(fg.any(axis=1)), np.flatnonzero(fg.any(axis=0))
    if not len(rows):
        return slice(0, 0), slice(0, 0)
    h, w = fg.shape
    return (
        slice(max(rows[0] - margin, 0), min(rows[-1] + margin + 1, h)),
        slice(max(cols[0] - margin, 0), min(cols[-1] + margin + 1, w)),
    )


def _camera_geometry(
    views: Views, index: int, box: tuple[slice, slice], smooth: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera-space points, normals facing the camera (both (h, w, 3)) and pixel footprint (h, w) in `box`."""
    z = views.depth[index][box].astype(np.float32)
    k = views.cameras.Ks[index]
    rot = views.cameras.viewmats[index, :3, :3]
    ys, xs = np.mgrid[box[0], box[1]].astype(np.float32)
    pts = np.stack(((xs + 0.5 - k[0, 2]) / k[0, 0] * z, (ys + 0.5 - k[1, 2]) / k[1, 1] * z, z), axis=-1)
    nrm = views.normals[index][box].astype(np.float32) @ rot.T
    nrm = np.where(((nrm * pts).sum(-1) > 0)[..., None], -nrm, nrm)
    if smooth > 0:
        fg = (z > 0).astype(np.float32)
        blur = np.stack([ndimage.gaussian_filter(nrm[..., c] * fg, smooth) for c in range(3)], axis=-1)
        blur /= np.maximum(np.linalg.norm(blur, axis=-1, keepdims=True), 1e-12)
        nrm = blur * fg[..., None]
    foot = z / (0.5 * (k[0, 0] + k[1, 1]))
    return pts, nrm, foot


def _pairs(arr: np.ndarray, axis: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Values `step` pixels before and after each pixel along `axis` (edge-padded), same shape as arr."""
    pad = [(0, 0)] * arr.ndim
    pad[axis] = (step, step)
    p = np.pad(arr, pad, mode="edge")
    n = arr.shape[axis]
    return np.take(p, np.arange(0, n), axis=axis), np.take(p, np.arange(2 * step, n + 2 * step), axis=axis)


@dataclass(frozen=True)
class BoundaryWeights:
    """How strongly each cue separates regions; tuned on PSB views (the prior's figures: docs/performance.md)."""

    # Turnings are ≈ radians (at most π); weights and depths compare with the boundary strength in [0, 1];
    # scales and blur are pixels, bounded so the padded box around the foreground stays small.
    concave_angle: float = option(
        0.35, 0.01, math.pi, doc="turning at which a concave crease counts as a full boundary (above concave_min)"
    )
    concave_min: float = option(0.0, 0.0, 3.0, doc="turning below which a concavity is surface texture, not a boundary")
    convex: float = option(0.1, 0.0, 1.0, doc="weight of convex creases (part edges inside one part)")
    convex_angle: float = option(0.8, 0.01, math.pi, doc="turning at which a convex crease counts fully")
    jump_ratio: float = option(4.0, 0.0, doc="depth step, in expected pixel footprints, that is an occlusion")
    colour: float = option(0.3, 0.0, 1.0, doc="weight of colour edges (0: colour ignored)")
    colour_step: float = option(0.15, 0.001, 2.0, doc="RGB distance that counts as a full colour edge")
    scales: tuple[int, ...] = option((1, 2, 4), 1, 32, most=8, doc="pixel steps at which creases are measured")
    smooth: float = option(1.0, 0.0, 16.0, doc="Gaussian blur (pixels) of the normals: faceting is not a boundary")
    basin_depth: float = option(
        0.03, 0.0, 1.0, doc="watershed seeds: minima of the (blurred) boundary map at least this deep"
    )


def boundary_map(views: Views, index: int, weights: BoundaryWeights = BoundaryWeights()) -> np.ndarray:
    """Per-pixel boundary strength in [0, 1] (0 on background): concave creases, depth jumps, colour edges."""
    full = views.ids[index] >= 0
    if not full.any():
        return np.zeros(full.shape, dtype=np.float32)
    box = _box(full, max(weights.scales) + 2)
    fg = full[box]
    pts, nrm, foot = _camera_geometry(views, index, box, weights.smooth)
    facing = np.maximum(np.abs((nrm * pts).sum(-1)) / np.maximum(np.linalg.norm(pts, axis=-1), 1e-12), 0.15)
    reach = foot / facing  # expected 3D distance to the next pixel on the same surface
    bound = np.zeros(fg.shape, dtype=np.float32)
    jump = np.zeros(fg.shape, dtype=bool)
    for axis in (0, 1):
        p0, p1 = _pairs(pts, axis, 1)
        f0, f1 = _pairs(fg, axis, 1)
        r0, r1 = _pairs(reach, axis, 1)
        far = np.linalg.norm(p1 - p0, axis=-1) > weights.jump_ratio * 2 * np.minimum(r0, r1)
        jump |= far & f0 & f1 & fg
    for axis in (0, 1):
        for s in weights.scales:
            p0, p1 = _pairs(pts, axis, s)
            n0, n1 = _pairs(nrm, axis, s)
            f0, f1 = _pairs(fg, axis, s)
            r0, r1 = _pairs(reach, axis, s)
            d = p1 - p0
            dist = np.linalg.norm(d, axis=-1)
            ok = f0 & f1 & fg & (dist < weights.jump_ratio * 2 * s * np.maximum(r0, r1))
            turn = -((n1 - n0) * d).sum(-1) / np.maximum(dist, 1e-12)
            concave = np.clip((turn - weights.concave_min) / (weights.concave_angle - weights.concave_min), 0, 1)
            convex = weights.convex * np.clip(-turn / weights.convex_angle, 0, 1)
            bound = np.maximum(bound, np.where(ok, np.maximum(concave, convex), 0))
    if weights.colour > 0:
        rgb = views.rgb[index][box].astype(np.float32)
        for axis in (0, 1):
            c0, c1 = _pairs(rgb, axis, 1)
            f0, f1 = _pairs(fg, axis, 1)
            edge = np.clip(np.linalg.norm(c1 - c0, axis=-1) / weights.colour_step, 0, 1) * weights.colour
            bound = np.maximum(bound, np.where(f0 & f1, edge, 0))
    bound[jump] = 1.0
    bound[~fg] = 0.0
    out = np.zeros(full.shape, dtype=np.float32)
    out[box] = bound
    return out


def _leaves(bound: np.ndarray, fg: np.ndarray, depth: float) -> np.ndarray:
    """Watershed over-segmentation of the foreground from the basins deeper than `depth`; -1 on background."""
    smooth = ndimage.gaussian_filter(bound, 1.0)
    smooth[~fg] = smooth.max() + 1.0
    seeds, _ = ndimage.label(h_minima(smooth, depth) & fg)
    labels = watershed(smooth, seeds, mask=fg) if seeds.any() else np.zeros(fg.shape, dtype=np.int32)
    orphans, _ = ndimage.label(fg & (labels == 0))
    labels = np.where(orphans > 0, orphans + labels.max(), labels)
    return (labels - 1).astype(np.int32)


def _adjacency(leaves: np.ndarray, bound: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neighbouring leaf pairs (a < b) with the summed boundary strength and length along their border."""
    keys, vals = [], []
    n = int(leaves.max()) + 1
    for a, b, wa, wb in (
        (leaves[:, :-1], leaves[:, 1:], bound[:, :-1], bound[:, 1:]),
        (leaves[:-1], leaves[1:], bound[:-1], bound[1:]),
    ):
        sel = (a != b) & (a >= 0) & (b >= 0)
        lo, hi = np.minimum(a[sel], b[sel]), np.maximum(a[sel], b[sel])
        keys.append(lo.astype(np.int64) * n + hi)
        vals.append(np.maximum(wa[sel], wb[sel]))
    key = np.concatenate(keys)
    val = np.concatenate(vals).astype(np.float64)
    uniq, inv = np.unique(key, return_inverse=True)
    return np.stack((uniq // n, uniq % n), axis=1), np.bincount(inv, val), np.bincount(inv).astype(np.float64)


def build_tree(leaves: np.ndarray, bound: np.ndarray, min_area: int) -> RegionTree:
    """Agglomerate neighbouring regions, weakest mean boundary first; small regions merge early."""
    n_leaf = int(leaves.max()) + 1
    area = list(np.bincount(leaves[leaves >= 0], minlength=n_leaf).astype(np.int64))
    parent = [-1] * n_leaf
    birth = [0.0] * n_leaf
    death = [ROOT_DEATH] * n_leaf
    adj: list[dict[int, list[float]]] = [{} for _ in range(n_leaf)]
    pairs, sums, counts = _adjacency(leaves, bound) if n_leaf > 1 else (np.zeros((0, 2), int), [], [])
    for (a, b), s, c in zip(pairs.tolist(), sums, counts, strict=True):
        adj[a][b] = [s, c]
        adj[b][a] = [s, c]

    def height(a: int, b: int) -> float:
        s, c = adj[a][b]
        small = min(area[a], area[b])
        return s / c * min(1.0, small / min_area) ** 0.5

    heap = [(height(a, b), a, b) for a, b in pairs.tolist()]
    heapq.heapify(heap)
    alive = [True] * n_leaf
    while heap:
        h, a, b = heapq.heappop(heap)
        if not (alive[a] and alive[b]) or b not in adj[a]:
            continue
        new = len(parent)
        h = max(h, birth[a], birth[b])
        parent[a] = parent[b] = new
        death[a] = death[b] = h
        alive[a] = alive[b] = False
        parent.append(-1)
        birth.append(h)
        death.append(ROOT_DEATH)
        area.append(area[a] + area[b])
        alive.append(True)
        merged: dict[int, list[float]] = {}
        for src in (a, b):
            for nb, (s, c) in adj[src].items():
                if nb in (a, b):
                    continue
                acc = merged.setdefault(nb, [0.0, 0.0])
                acc[0] += s
                acc[1] += c
                del adj[nb][src]
        adj.append(merged)
        adj[a], adj[b] = {}, {}
        for nb, sc in merged.items():
            adj[nb][new] = sc
            heapq.heappush(heap, (height(new, nb), new, nb))
    n = len(parent)
    members = np.zeros((n, n_leaf + 1), dtype=bool)
    members[np.arange(n_leaf), np.arange(n_leaf)] = True
    for child in range(n - 1):
        if parent[child] >= 0:
            members[parent[child]] |= members[child]
    return RegionTree(
        leaves=np.where(leaves >= 0, leaves, n_leaf).astype(np.int32),
        parent=np.asarray(parent, dtype=np.int64),
        birth=np.asarray(birth),
        death=np.asarray(death),
        area=np.asarray(area, dtype=np.int64),
        members=members,
    )


class GeometricPrior(Prior):
    """Part masks and embeddings from rendered geometry alone: the default prior, needs no weights.

    `levels` are the merge heights at which automatic masks are cut (fine → coarse; whole objects are
    always added last); `embed_dim` is D of the embedding map; regions under `min_area` (a fraction
    of the view's foreground) merge early.
    """

    name: ClassVar[str] = "geometric"
    capabilities: ClassVar[frozenset[str]] = frozenset({"prompt", "auto", "embed"})
    shape_only: ClassVar[bool] = True

    @dataclass(frozen=True)
    class Config:
        levels: tuple[float, ...] = option(
            (0.15, 0.35, 0.6), 0.0, 1.0, most=8, doc="merge heights (boundary strengths) cutting automatic masks"
        )
        embed_dim: int = option(32, 4, 256, doc="D of the embedding map (the spectral embedding needs a few axes)")
        weights: BoundaryWeights = option(BoundaryWeights(), doc="how strongly each cue separates regions")  # noqa: RUF009
        min_area: float = option(0.03, 0.0, 1.0, doc="fraction of the view's foreground under which regions merge")
        cache_size: int = option(64, 1, 4096, doc="region trees kept (one per view content)")

    def __init__(self, config: Config = Config(), ctx: PriorContext | None = None) -> None:
        self.config = config
        self.levels = tuple(sorted(config.levels))
        self._trees: OrderedDict[str, RegionTree] = OrderedDict()

    def tree(self, views: Views, index: int) -> RegionTree:
        """The view's region tree, computed once per view content and kept in a small LRU."""
        key = _view_key(views, index)
        if key in self._trees:
            self._trees.move_to_end(key)
            return self._trees[key]
        fg = views.ids[index] >= 0
        n_fg = max(int(fg.sum()), 1)
        leaves = np.full(fg.shape, -1, dtype=np.int32)
        bound = np.zeros(fg.shape, dtype=np.float32)
        if fg.any():
            bound = boundary_map(views, index, self.config.weights)
            box = _box(fg, 2)
            leaves[box] = _leaves(bound[box], fg[box], self.config.weights.basin_depth)
        tree = build_tree(leaves, bound, min_area=max(16, int(n_fg * self.config.min_area)))
        self._trees[key] = tree
        while len(self._trees) > self.config.cache_size:
            self._trees.popitem(last=False)
        return tree

    def auto_masks(self, views: Views, index: int) -> list[np.ndarray]:
        tree = self.tree(views, index)
        out = []
        for h in (*self.levels, ROOT_DEATH - 1e-9):
            nodes = tree.cut(h)
            out.append(
                np.stack([tree.mask([n]) for n in nodes]) if len(nodes) else np.zeros((0, *tree.leaves.shape), bool)
            )
        return out

    def prompt(
        self, views: Views, index: int, points: np.ndarray, labels: np.ndarray, prev: np.ndarray | None = None
    ) -> PromptResult:
        tree = self.tree(views, index)
        h, w = tree.leaves.shape
        xs, ys, labels = prompt_pixels(points, labels, h, w)
        n_leaf = tree.members.shape[1] - 1
        hit = tree.leaves[ys, xs]
        base = prev_mask(prev, h, w)
        pos = [
            int(leaf)
            for leaf, lab, y, x in zip(hit, labels, ys, xs, strict=True)
            if lab > 0 and leaf < n_leaf and not base[y, x]
        ]
        neg = [int(leaf) for leaf, lab in zip(hit, labels, strict=True) if lab <= 0 and leaf < n_leaf]
        picks = [_candidates(tree, leaf) for leaf in pos]
        held = [int(leaf) for leaf, lab in zip(hit, labels, strict=True) if lab > 0 and leaf < n_leaf]
        removed = tree.mask(_negative_subtrees(tree, neg, held)) if neg else np.zeros((h, w), bool)
        masks = np.zeros((3, h, w), dtype=bool)
        scores = np.zeros(3, dtype=np.float32)
        for rank in range(3):
            nodes = [p[0][rank] for p in picks]
            masks[rank] = (base | (tree.mask(nodes) if nodes else False)) & ~removed
            scores[rank] = np.mean([p[1][rank] for p in picks]) if picks else 0.0
        logits = np.where(masks, 1.0, -1.0).astype(np.float32)
        return PromptResult(masks=masks, scores=scores, logits=logits)

    def embed(self, views: Views) -> np.ndarray:
        """Unit vectors per pixel from a co-clustering of elements with the regions of every view and level.

        The finest level is left out: its over-segmentation would make vectors within a part differ.
        """
        b, h, w = views.ids.shape
        stride = max(1, -(-max(h, w) // 256))
        ids = views.ids[:, stride // 2 :: stride, stride // 2 :: stride]
        uniq, inverse = np.unique(views.ids, return_inverse=True)
        inverse = inverse.reshape(views.ids.shape)
        has_bg = bool(len(uniq)) and uniq[0] < 0
        n_elem = len(uniq) - int(has_bg)
        out = np.zeros((*ids.shape, self.config.embed_dim), dtype=np.float32)
        out[..., -1] = 1.0
        if n_elem == 0:
            return out
        rows, cols, vals = [], [], []
        col0 = 0
        for i in range(b):
            tree = self.tree(views, i)
            fg = views.ids[i] >= 0
            elem = inverse[i][fg] - int(has_bg)
            for weight, h_cut in [*((1.0, lv) for lv in self.levels[1:]), (0.5, ROOT_DEATH - 1e-9)]:
                nodes = tree.cut(h_cut)
                lookup = np.full(tree.members.shape[1], -1, dtype=np.int64)
                for j, node in enumerate(nodes):
                    lookup[tree.members[node]] = j
                region = lookup[tree.leaves[fg]]
                rows.append(elem)
                cols.append(region + col0)
                vals.append(np.full(len(elem), weight))
                col0 += len(nodes)
        a = sp.coo_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_elem, col0)
        ).tocsr()
        a.data = np.sqrt(a.data)
        vec = _spectral(a, self.config.embed_dim - 1)
        sub = inverse[:, stride // 2 :: stride, stride // 2 :: stride] - int(has_bg)
        fg = ids >= 0
        out[fg] = 0.0
        out[fg, : vec.shape[1]] = vec[sub[fg]]
        return out


def _view_key(views: Views, index: int) -> str:
    """Views.key (scene + cameras) and the index; without a key, a hash of everything the tree reads."""
    if views.key is not None:
        return f"{views.key}/{index}"
    h = hashlib.blake2b(digest_size=16)
    for arr in (views.ids[index], views.depth[index], views.normals[index], views.rgb[index]):
        h.update(np.ascontiguousarray(arr).data)
    h.update(views.cameras.Ks[index].tobytes())
    h.update(views.cameras.viewmats[index].tobytes())
    return h.hexdigest()


def _spectral(a: sp.csr_matrix, dim: int) -> np.ndarray:
    """Row-normalised leading singular vectors of the degree-normalised element × region matrix."""
    d_row = np.asarray(a.sum(axis=1)).ravel()
    d_col = np.asarray(a.sum(axis=0)).ravel()
    z = sp.diags(1 / np.sqrt(np.maximum(d_row, 1e-12))) @ a @ sp.diags(1 / np.sqrt(np.maximum(d_col, 1e-12)))
    if min(z.shape) <= 4 * dim:  # small problems: exact, and ARPACK dislikes them
        u, s, _ = np.linalg.svd(z.toarray(), full_matrices=False)
        u, s = u[:, :dim], s[:dim]
    else:
        try:
            u, s, _ = svds(z, k=dim, v0=np.random.default_rng(0).standard_normal(min(z.shape)))
        except ArpackNoConvergence:  # tight clusters of singular values (many elements, few regions)
            with warnings.catch_warnings():  # LOBPCG warns when it stops short; its estimate is what we want
                warnings.simplefilter("ignore", UserWarning)
                u, s, _ = svds(z, k=dim, solver="lobpcg", rng=np.random.default_rng(0))
    vec = u * s**SPECTRAL_POWER
    vec = vec / np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
    return vec.astype(np.float32)


def _candidates(tree: RegionTree, leaf: int) -> tuple[list[int], list[float]]:
    """Three long-lived nodes of distinct size on the leaf's ancestor chain, small → large, with their lifetimes.

    Lifetime (merge height at death − at birth) measures how clearly a region stands apart. The root
    (the whole object) only competes when the chain is short, and nodes of about the same area as a
    chosen one are suppressed so the three candidates differ like SAM's sub-part / part / object.
    """
    chain = tree.chain(leaf)
    life = tree.death[chain] - tree.birth[chain]
    area = tree.area[chain].astype(np.float64)
    left = life.copy()
    if len(chain) > 3:
        left[-1] = 0.0
    picked: list[int] = []
    while len(picked) < 3 and left.max() >= 0:
        j = int(np.argmax(left))
        picked.append(j)
        left[np.abs(np.log(area / area[j])) < SAME_SIZE] = -1.0
    picked.sort()
    while len(picked) < 3:
        picked.append(picked[-1])
    return [chain[i] for i in picked], [float(min(1.0, life[i])) for i in picked]


def _negative_subtrees(tree: RegionTree, neg: list[int], pos: list[int]) -> list[int]:
    """For each negative leaf, its largest ancestor that contains no positive leaf."""
    out = []
    for leaf in neg:
        best = -1
        for node in tree.chain(leaf):
            if pos and tree.members[node, pos].any():
                break
            best = node
        if best >= 0:
            out.append(best)
    return out
