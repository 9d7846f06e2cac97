"""Simulated clicks, the protocol of RITM / InterObject3D / AGILE3D.

Each click goes into the largest error region (a connected component of missed or of falsely selected
labelled elements, sized by surface area on meshes, by count on points): positive in a missed region,
negative in a false one, at the click element farthest from that region's boundary. With nothing
selected yet the only error is the whole target, so the first click lands on the target's element
farthest from its boundary (of its largest connected piece).

Distance to the boundary is graph-geodesic: a multi-source Dijkstra over the click graph (mesh edges
or the kNN graph, Euclidean edge lengths) restricted to the region, starting from the region's boundary
elements — a vertex touching a face outside the region, a point with a kNN neighbour outside it, or a
vertex on an open mesh border (like RITM's padded image border).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.csgraph import connected_components, dijkstra

from ..graphwalk import adjacency
from .geometry import Geometry

Click = tuple[int, int]  # (click element index, +1 positive / -1 negative)


def error_regions(geom: Geometry, gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Connected error components: (component id per labelled element or -1, component sizes, signs)."""
    kind = np.where(gt & ~pred, 1, np.where(pred & ~gt, -1, 0))
    a, b = geom.region_edges.T
    keep = (kind[a] == kind[b]) & (kind[a] != 0)
    n = geom.n_labelled
    _, comp = connected_components(adjacency(n, geom.region_edges[keep]), directed=False)
    err = kind != 0
    ids = np.full(n, -1, dtype=np.int64)
    uniq, ids[err] = np.unique(comp[err], return_inverse=True)
    sizes = np.bincount(ids[err], weights=geom.weights[err], minlength=len(uniq))
    signs = np.sign(np.bincount(ids[err], weights=kind[err], minlength=len(uniq))).astype(np.int64)
    return ids, sizes, signs


def farthest_from_boundary(geom: Geometry, region: np.ndarray) -> int:
    """The click element deepest inside `region` (a labelled mask), by graph distance to its boundary."""
    frac = geom.fraction_in(region)
    member = frac > 0
    boundary = member & ((frac < 1.0 - 1e-9) | geom.border)
    interior = member & ~boundary
    if not interior.any():
        return int(np.argmax(frac))
    if not boundary.any():
        centre = geom.positions[interior].mean(axis=0)
        cand = np.flatnonzero(interior)
        return int(cand[np.argmin(np.linalg.norm(geom.positions[cand] - centre, axis=1))])
    a, b = geom.click_edges.T
    keep = member[a] & member[b]
    graph = adjacency(geom.n_click, geom.click_edges[keep], geom.click_lengths[keep])
    dist = dijkstra(graph, directed=False, indices=np.flatnonzero(boundary), min_only=True)
    dist = np.where(interior & np.isfinite(dist), dist, -1.0)
    return int(np.argmax(dist))


def next_click(geom: Geometry, gt: np.ndarray, pred: np.ndarray) -> Click | None:
    """The next simulated click for selection `pred` against target `gt`; None when nothing is wrong."""
    ids, sizes, signs = error_regions(geom, gt, pred)
    if len(sizes) == 0:
        return None
    worst = int(np.argmax(sizes))
    return farthest_from_boundary(geom, ids == worst), int(signs[worst])
