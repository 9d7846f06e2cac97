"""Geometric superpoints for SAS's 3D step, and the averaging that smooths scores over them.

SAS refines its fused features with a 3D network trained on superpoints; training-free, we average the
fused scores over superpoints instead: a superpoint lies on one side of every crease, so a label that a few
of its elements got wrong from a few views is outvoted by the rest.

Superpoints are Felzenszwalb–Huttenlocher's graph segmentation ("Efficient graph-based image segmentation",
2004) of the walk's graph (`segany.methods.walk.graph.scene_graph`: the concavity-weighted face graph of a
mesh, the kNN graph of points and splats, coarsened above 50K nodes). An edge's dissimilarity is
-log(affinity / the largest affinity); two components merge across an edge when it is no more dissimilar
than each one's largest inner edge plus k / size, with k the median dissimilarity times the target size (so
a component grows over ordinary edges until about that size, and across a crease only while tiny), and
never past twice the target size. Leftovers under a quarter of the target join their most similar
neighbour.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from numba import njit
from torch_scatter import scatter_add

from ...scene import Scene
from ..walk.graph import scene_graph


@njit(cache=True)
def _find(parent: np.ndarray, i: int) -> int:  # pragma: no cover - compiled
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@njit(cache=True)
def _segment(
    n: int, a: np.ndarray, b: np.ndarray, d: np.ndarray, k: float, cap: int, small: int
) -> np.ndarray:  # pragma: no cover - compiled
    """Union-find over edges sorted by dissimilarity `d`; returns each node's root."""
    parent = np.arange(n)
    size = np.ones(n, dtype=np.int64)
    inner = np.zeros(n)
    for e in range(len(d)):
        ra, rb = _find(parent, a[e]), _find(parent, b[e])
        if ra == rb:
            continue
        if size[ra] + size[rb] > cap:
            continue
        if d[e] <= min(inner[ra] + k / size[ra], inner[rb] + k / size[rb]):
            if size[ra] < size[rb]:
                ra, rb = rb, ra
            parent[rb] = ra
            size[ra] += size[rb]
            inner[ra] = max(inner[ra], d[e])
    for e in range(len(d)):  # leftovers join their most similar neighbour (edges come most similar first)
        ra, rb = _find(parent, a[e]), _find(parent, b[e])
        if ra != rb and (size[ra] < small or size[rb] < small):
            if size[ra] < size[rb]:
                ra, rb = rb, ra
            parent[rb] = ra
            size[ra] += size[rb]
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        out[i] = _find(parent, i)
    return out


def segment_graph(n: int, edges: np.ndarray, affinity: np.ndarray, target: int) -> np.ndarray:
    """Superpoint id (n,) int64 in 0..P-1 per graph node, superpoints of about `target` nodes."""
    if len(edges) == 0:
        return np.arange(n, dtype=np.int64)
    d = -np.log(np.maximum(affinity, 1e-30) / max(float(affinity.max()), 1e-30))
    order = np.argsort(d, kind="stable")
    a, b, d = edges[order, 0].astype(np.int64), edges[order, 1].astype(np.int64), d[order]
    k = max(float(np.median(d)), 1e-6) * target
    roots = _segment(n, a, b, d, k, 2 * target, max(target // 4, 1))
    return np.unique(roots, return_inverse=True)[1].astype(np.int64)


def element_superpoints(scene: Scene, count: int) -> np.ndarray:
    """Per element its superpoint (N,) int32 in 0..P-1, about `count` of them: a mesh vertex takes the one
    holding most of the area around it, a coarsened point cloud's element its centre's."""
    graph = scene_graph(scene, colour=1.0)
    nodes = graph.n
    labels = segment_graph(nodes, graph.edges, graph.edge_weights, max(nodes // max(count, 1), 1))
    if graph.to_elements is None:
        return labels.astype(np.int32)
    node_sp = sp.csr_matrix((np.ones(nodes), (np.arange(nodes), labels)), (nodes, int(labels.max()) + 1))
    share = (graph.to_elements @ node_sp).tocsr()
    out = np.asarray(share.argmax(axis=1)).ravel()
    return np.unique(out, return_inverse=True)[1].astype(np.int32)  # superpoints no element took drop out


def smooth(scores: torch.Tensor, superpoint: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-element scores (N, C) replaced by their superpoint's `weight`-weighted mean."""
    p = int(superpoint.max()) + 1 if len(superpoint) else 0
    idx = superpoint.long()
    sums = scatter_add(scores * weight[:, None], idx, dim=0, dim_size=p)
    total = scatter_add(weight, idx, dim=0, dim_size=p)
    return (sums / total.clamp_min(1e-30)[:, None])[idx]
