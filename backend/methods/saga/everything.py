"""SAGA's "segment everything": cluster the gated features into parts, one colour per part.

HDBSCAN (the `hdbscan` package) finds clusters of any count and shape without being told how many, but
its cost grows faster than linearly, so it runs on a seeded subsample; every element is then given the
cluster whose centroid is nearest, so noise points and unsampled elements are labelled too. Features are
L2-normalised first because SAGA compares them by cosine (its click query is a normalised dot product);
on the unit sphere the Euclidean distance HDBSCAN uses orders pairs exactly as the cosine does.

HDBSCAN's clusters are then merged while two of them are alike by SAGA's own rule: a click on one part at
this scale would select the other (centroid cosine above the click query's THRESHOLD). HDBSCAN is
density-based and scale-free, so it also splits features that differ only slightly — at a scale where
every feature points the same way it still cut the residual noise into a dozen "parts" (PSB cups at twice
"auto", journal session 10); the merge makes the clusters answer the same question a click does.

Last, adjacent parts whose shared boundary is not a concave crease are merged (`boundaries.py`): the
features keep a smooth body's patches apart, the geometry says they are one part. Given a part count (the
benchmark's protocol for the algorithms told the count), parts merge in a normalized cut's order until that
many are left. Then the parts' boundaries settle onto the creases beside them (a diffusion on the walk
graph repeated to rest), which also absorbs slivers no crease holds.
"""

from __future__ import annotations

import colorsys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import hdbscan
import numpy as np

from ... import deadline
from ...errors import SegAnyError
from ...graphwalk import CreaseGraph
from ...options import option, parse_options
from ...scene import Scene
from ..base import UNSEEN, Parts, State
from .boundaries import Creases, merge_smooth, scene_creases, settle
from .features import gated_features
from .query import THRESHOLD, checked_scale
from .train import SCALE_MARGIN

GOLDEN = 0.618033988749895  # hue step: consecutive clusters land far apart on the colour wheel
ASSIGN_CHUNK = 65536  # rows per block when assigning to centroids: bounds the (rows, K) scratch array
# HDBSCAN clusters the sample's leading principal components that hold KEPT_VARIANCE of its spread, not all
# 32 channels: at one scale the gate switches channels off and the parts differ along few directions, and a
# k-d tree prunes well in few dimensions but almost nothing in 32 (a 10,000 sample: 33 s with Prim's on a
# ball tree in 32-d, 4 s with Borůvka on a k-d tree in 8-d, on this loaded 2-core VM; journal, session 9).
# A fixed count of components would merge parts: parts trained apart are near-orthogonal, so k parts need
# about k − 1 directions (12 orthogonal clusters projected on 8 components came out as 10). Past TREE_DIMS
# components the tree stops paying and Prim's on a ball tree does less work. Centroids and the assignment
# always use every channel.
KEPT_VARIANCE = 0.95
TREE_DIMS = 12
IDENTICAL = 1e-6  # unit features closer than this to the first one count as one point (float32 rounding)


def cluster_colours(k: int) -> np.ndarray:
    """k distinct RGB colours (k, 3) in [0, 1]: golden-ratio hues, so neighbours in label order differ."""
    hues = (np.arange(k) * GOLDEN) % 1.0
    return np.array([colorsys.hsv_to_rgb(h, 0.65, 0.95) for h in hues], dtype=np.float32).reshape(k, 3)


def _unit_rows(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised features (N, D) float32 and the mask of rows that carry a feature at all."""
    x = np.asarray(features)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0 or not np.issubdtype(x.dtype, np.number):
        raise SegAnyError("invalid_array", f"features must be a non-empty numeric (N, D) array, got shape {x.shape}")
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        raise SegAnyError("invalid_array", "features hold NaN or Inf: the prepare that made them is broken; rerun it")
    norms = np.linalg.norm(x, axis=1)
    seen = norms > 0
    unit = np.divide(x, norms[:, None], out=np.zeros_like(x), where=seen[:, None])  # one pass, no masked copies
    return unit, seen


def _check_options(sample: int, min_cluster_size: int) -> None:
    if not (isinstance(min_cluster_size, int) and min_cluster_size >= 2):
        raise SegAnyError("bad_request", f"min_cluster_size must be an integer ≥ 2, got {min_cluster_size!r}")
    if not (isinstance(sample, int) and sample >= min_cluster_size):
        raise SegAnyError(
            "bad_request", f"sample must be an integer ≥ min_cluster_size ({min_cluster_size}), got {sample!r}"
        )


def _centroids(points: np.ndarray, min_cluster_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit centroids (K, D) of HDBSCAN's clusters on `points` and the part (K,) each belongs to after
    `_merge_alike`; one centroid when there is nothing to split."""
    if len(points) < min_cluster_size or np.abs(points - points[0]).max() < IDENTICAL:
        return (points.mean(axis=0) / np.linalg.norm(points.mean(axis=0)))[None, :], np.zeros(1, dtype=np.int64)
    leading = _leading(points)
    algorithm = "boruvka_kdtree" if leading.shape[1] <= TREE_DIMS else "prims_balltree"
    found = hdbscan.HDBSCAN(min_cluster_size=min_cluster_size, algorithm=algorithm).fit_predict(leading)
    ids = np.unique(found[found >= 0])
    if len(ids) == 0:  # all noise: the features show no structure at this size, so it is one part
        ids, found = np.array([0]), np.zeros(len(points), dtype=np.int64)
    centroids = _unit(np.stack([points[found == i].sum(axis=0) for i in ids])).astype(np.float32)
    return centroids, _merge_alike(centroids, np.array([np.sum(found == i) for i in ids], dtype=np.float64))


def _unit(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to length one (a zero row stays zero: opposite clusters can sum to nothing)."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


def _merge_alike(centroids: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """A group id (K,) per centroid: the two most alike groups are merged (their weighted mean direction)
    while their cosine exceeds THRESHOLD, so no two groups left would answer a click on the other."""
    sums = centroids.astype(np.float64) * weights[:, None]
    group = np.arange(len(centroids))
    alive = np.ones(len(centroids), dtype=bool)
    unit = _unit(sums)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    while alive.sum() > 1:
        i, j = np.unravel_index(np.argmax(sim), sim.shape)
        if sim[i, j] <= THRESHOLD:
            break
        keep, gone = min(i, j), max(i, j)
        sums[keep] += sums[gone]
        group[group == gone] = keep
        alive[gone] = False
        sim[gone, :] = sim[:, gone] = -np.inf
        row = _unit(sums) @ _unit(sums[keep : keep + 1])[0]
        sim[keep, :] = sim[:, keep] = np.where(alive, row, -np.inf)
        sim[keep, keep] = -np.inf
    return group


def _leading(points: np.ndarray) -> np.ndarray:
    """The points (S, D) on their fewest leading principal directions that keep KEPT_VARIANCE of the spread
    (at least two), float64 as hdbscan takes them."""
    centred = points.astype(np.float64) - points.mean(axis=0, dtype=np.float64)
    _, spread, vt = np.linalg.svd(centred, full_matrices=False)
    share = np.cumsum(spread**2) / max(float((spread**2).sum()), 1e-300)
    dims = max(2, int(np.searchsorted(share, KEPT_VARIANCE)) + 1)
    return centred @ vt[:dims].T


def _nearest(unit: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest unit centroid for each unit row (largest cosine), in blocks to bound memory."""
    out = np.empty(len(unit), dtype=np.int64)
    for start in range(0, len(unit), ASSIGN_CHUNK):
        out[start : start + ASSIGN_CHUNK] = np.argmax(unit[start : start + ASSIGN_CHUNK] @ centroids.T, axis=1)
    return out


def _by_size(labels: np.ndarray) -> np.ndarray:
    """Labels (non-negative) renumbered 0..K-1, largest part first (ties by old label): compact and stable.

    Counted with bincount when the labels are dense enough (one pass; np.unique sorts, 1.4 s of the 11 s a
    1M-element split took), else through np.unique (a hierarchy's pair codes can be sparse)."""
    if labels.size and labels.max() < 4 * labels.size + 1024:
        counts = np.bincount(labels)
        old = np.flatnonzero(counts)
        counts, inverse = counts[old], None
    else:
        old, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    rank = np.empty(len(old), dtype=np.int64)
    rank[np.lexsort((old, -counts))] = np.arange(len(old))
    if inverse is not None:
        return rank[inverse.reshape(-1)]
    lookup = np.zeros(int(old[-1]) + 1 if len(old) else 0, dtype=np.int64)
    lookup[old] = rank
    return lookup[labels]


def segment_everything(
    features: np.ndarray,
    *,
    sample: int,
    min_cluster_size: int,
    seed: int,
    creases: Creases | None = None,
    parts: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Part labels (N,) int64 in 0..K-1 and a colour per part (K, 3) float32.

    With the scene's `creases`, adjacent parts are merged across boundaries that are no crease, or until
    `parts` are left when that is > 0 (`boundaries.merge_smooth`); then, when `creases` carries its walk
    graph, the boundaries settle onto the creases (`settled_apart`), which may absorb a part.

    Elements whose feature is all zero (never seen by a view) get `UNSEEN` (-1) instead of a part. Too
    few seen elements to form a cluster, identical features, or a sample HDBSCAN calls all noise give
    one part: there is nothing to split, which is an answer rather than an error.
    """
    _check_options(sample, min_cluster_size)
    unit, seen = _unit_rows(features)
    labels = np.full(len(unit), UNSEEN, dtype=np.int64)
    rows = np.flatnonzero(seen)
    if len(rows) == 0:
        raise SegAnyError("invalid_array", "every feature is zero: no element was seen by a view, nothing to cluster")
    picked = rows if len(rows) <= sample else np.sort(np.random.default_rng(seed).choice(rows, sample, replace=False))
    centroids, part = _centroids(unit[picked], min_cluster_size)
    shown = unit if len(rows) == len(unit) else unit[rows]  # usually every element is seen: skip the copy
    labels[rows] = _by_size(part[_nearest(shown, centroids)])
    if creases is not None:
        labels[rows] = _by_size(merge_smooth(labels, creases, parts)[rows])
        if creases.walk is not None:
            labels[rows] = _by_size(settled_apart(labels, creases.walk)[rows])
    return labels, cluster_colours(int(labels.max()) + 1)


def settled_apart(labels: np.ndarray, walk: CreaseGraph) -> np.ndarray:
    """`settle`'s labels, unless it leaves one part of several: then the merged labels stand. Settling moves
    boundaries and absorbs slivers; whether the scene is one part is the merge's call, and a settle's diffusion
    reaches a fixed number of graph steps, which on a sparse scene (a splat capture thinned to a few thousand
    Gaussians) spans the whole object and absorbs every part whatever its size."""
    settled = settle(labels, walk)
    return labels if part_count(settled) < 2 <= part_count(labels) else settled


def part_count(labels: np.ndarray) -> int:
    """The number of distinct parts among seen elements."""
    return len(np.unique(labels[labels != UNSEEN]))


def hierarchy(
    features_by_scale: Iterable[np.ndarray],
    *,
    sample: int,
    min_cluster_size: int,
    seed: int,
    creases: Creases | None = None,
    parts: int = 0,
) -> list[np.ndarray]:
    """Labels per scale, coarse first, each level nested in the one before it.

    Each scale is clustered on its own and then intersected with the coarser level's parts, so every fine
    part lies inside one coarse part (a tree, as a scale slider suggests); the price is that a fine
    cluster straddling a coarse boundary is split along it.
    """
    levels: list[np.ndarray] = []
    for features in features_by_scale:
        labels, _ = segment_everything(
            features, sample=sample, min_cluster_size=min_cluster_size, seed=seed, creases=creases, parts=parts
        )
        if levels:
            parent = levels[-1]
            seen = labels != UNSEEN
            pairs = parent[seen] * (int(labels.max()) + 1) + labels[seen]
            labels[seen] = _by_size(pairs)
        levels.append(labels)
    return levels


MAX_LEVELS = 8  # scales one hierarchy query takes: coarse → fine parts; more levels than a slider shows is a mistake
# HDBSCAN's time grows about with the square of the sample when the parts need many directions (Prim's):
# 10,000 took 25 s and 5,000 about a quarter of that on this loaded 2-core VM, so the default keeps a
# 1M-element split near the 10 s; with min_cluster_size 20 it still finds parts of 0.4% of the scene.
DEFAULT_SAMPLE, MAX_SAMPLE = 5_000, 100_000


@dataclass(frozen=True)
class EverythingQuery:
    """What SAGA's segment everything takes: the part size (or sizes, for a hierarchy) and the clustering's
    bounds. `"scale": "auto"` is half the largest mask of the prepare (`auto_scale`)."""

    method: ClassVar[str] = "saga everything query"

    scale: float | str = option(
        "auto", 1e-30, None, doc='size of the parts in scene units (a number > 0) or "auto" (half the largest mask)'
    )
    scales: tuple[float, ...] = option(
        (), 1e-30, None, most=MAX_LEVELS, doc="several part sizes for a hierarchy (replaces scale); any order"
    )
    min_cluster_size: int = option(20, 2, MAX_SAMPLE, doc="fewest sampled elements HDBSCAN calls a part")
    sample: int = option(DEFAULT_SAMPLE, 2, MAX_SAMPLE, doc="elements HDBSCAN clusters; the rest join the nearest part")
    seed: int = option(0, 0, 2**31, doc="seed of the subsample")
    creases: bool = option(True, doc="merge adjacent parts whose shared boundary is no concave crease")
    parts: int = option(
        0,
        0,
        MAX_SAMPLE,
        doc="merge adjacent parts to this many (at most), costliest to keep apart first (normalized cut); 0: automatic",
    )


def auto_scale(state: State) -> float:
    """Half the size of the largest mask the prior made at prepare. Its largest masks are whole objects (its
    coarsest level); a part is smaller than its object, and at half the object's size the object's largest
    parts come apart while the detail inside each part stays together: the coarsest split that is not the
    whole. Not fitted: checked only on the built-in stool (6 primitives), where it gives 6 parts and a Rand
    Index error of 0.02 against 19 parts and 0.14 at the median mask size (journal, session 9)."""
    return float(state.meta["scale_range"][1]) / SCALE_MARGIN / 2.0


def parse_everything(query: Any, state: State) -> tuple[EverythingQuery, list[float]]:
    """The checked query and its scales in scene units, coarse (largest) first."""
    if isinstance(query, dict):  # a scale's own message ("> 0 in scene units") before the generic one
        checked_scale(query.get("scale", "auto"))
        for value in query.get("scales", ()) if isinstance(query.get("scales"), (list, tuple)) else ():
            if checked_scale(value) is None:
                raise SegAnyError("bad_request", "saga everything query key 'scales' takes numbers > 0, not \"auto\"")
    parsed = parse_options(EverythingQuery, query)
    if parsed.min_cluster_size > parsed.sample:
        raise SegAnyError(
            "bad_request",
            f"min_cluster_size ({parsed.min_cluster_size}) must not exceed sample ({parsed.sample}): "
            "no part could form",
        )
    if parsed.parts and parsed.scales:
        raise SegAnyError("bad_request", "saga everything query key 'parts' takes one scale, not several 'scales'")
    if parsed.scales:
        scales = sorted({float(s) for s in parsed.scales}, reverse=True)
    else:
        scale = checked_scale(parsed.scale)
        scales = [auto_scale(state) if scale is None else scale]
    return parsed, scales


def everything_parts(scene: Scene, state: State, query: Any) -> Parts:
    """Parts of every element at the query's scale; with several scales the finest level's parts, and
    extras["levels"] (L, N) int32 nested coarse → fine. extras["scales"] holds the scales used."""
    parsed, scales = parse_everything(query, state)

    def gated() -> Iterator[np.ndarray]:
        for scale in scales:  # one level's (N, D) features at a time
            deadline.check()  # between levels: one HDBSCAN cannot be interrupted, a hierarchy can
            yield gated_features(state, scale)

    labels = hierarchy(
        gated(),
        sample=parsed.sample,
        min_cluster_size=parsed.min_cluster_size,
        seed=parsed.seed,
        creases=scene_creases(scene) if parsed.creases or parsed.parts else None,
        parts=parsed.parts,
    )
    finest = labels[-1].astype(np.int32)
    extras = {"scales": np.asarray(scales, dtype=np.float32)}
    if len(scales) > 1:
        extras["levels"] = np.stack(labels).astype(np.int32)
    return Parts(labels=finest, colours=cluster_colours(int(finest.max()) + 1), extras=extras)
