"""The graphs the harness needs on one scene, for meshes and for point-like scenes alike.

Two kinds of element: *labelled* elements carry the ground truth and the IoU weights (faces of a mesh,
weighted by area; points or Gaussians, weight 1), and *click* elements are what a method scores and
what a click names (vertices of a mesh; the points or Gaussians themselves). Error regions are
connected components on the labelled graph (faces sharing an edge; a symmetric k-nearest-neighbour
graph for points); click distances run over the click graph (mesh edges; the same kNN graph) with
Euclidean edge lengths, so "farthest from the boundary" is a graph-geodesic distance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ..errors import SegAnyError
from ..graphwalk import face_adjacency

KNN = 8


@dataclass
class Geometry:
    """Everything click simulation and metrics need; build with `mesh_geometry` or `point_geometry`."""

    kind: str  # "mesh" or "points" (points and splats)
    positions: np.ndarray  # (C, 3) click-element positions
    weights: np.ndarray  # (L,) labelled-element weights (face area or 1)
    region_edges: np.ndarray  # (E, 2) labelled-element adjacency
    click_edges: np.ndarray  # (K, 2) click-element adjacency
    click_lengths: np.ndarray  # (K,) Euclidean edge lengths
    border: np.ndarray  # (C,) bool: click elements on an open border (count as region boundary)
    faces: np.ndarray | None = None  # (F, 3) for meshes

    @property
    def n_labelled(self) -> int:
        return len(self.weights)

    @property
    def n_click(self) -> int:
        return len(self.positions)

    def predicted(self, scores: np.ndarray, threshold: float) -> np.ndarray:
        """Labelled elements the method selects: a face when the mean of its vertex scores passes."""
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(scores) != self.n_click:
            raise SegAnyError(
                "invalid_array", f"the method returned {len(scores)} scores for a scene of {self.n_click} elements"
            )
        if self.faces is None:
            return scores >= threshold
        return scores[self.faces].mean(axis=1) >= threshold

    def fraction_in(self, region: np.ndarray) -> np.ndarray:
        """Per click element, how much of its neighbourhood lies in `region` (labelled mask); 1 = interior."""
        if self.faces is not None:
            area3 = np.repeat(self.weights, 3)
            total = np.bincount(self.faces.ravel(), weights=area3, minlength=self.n_click)
            inside = np.bincount(self.faces.ravel(), weights=area3 * np.repeat(region, 3), minlength=self.n_click)
            return np.divide(inside, total, out=np.zeros(self.n_click), where=total > 0)
        a, b = self.click_edges.T
        both = np.concatenate([a, b])
        nbr_in = np.concatenate([region[b], region[a]]).astype(np.float64)
        count = np.bincount(both, minlength=self.n_click) + 1.0
        inside = np.bincount(both, weights=nbr_in, minlength=self.n_click) + region
        return np.where(region, inside / count, 0.0)


def _unique_edges(faces: np.ndarray) -> np.ndarray:
    e = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    return np.unique(e, axis=0)


def mesh_geometry(vertices: np.ndarray, faces: np.ndarray) -> Geometry:
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    tri = v[f]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    pairs, _, border_used = face_adjacency(f)
    border = np.zeros(len(v), dtype=bool)
    border[: len(border_used)] = border_used
    edges = _unique_edges(f)
    lengths = np.linalg.norm(v[edges[:, 0]] - v[edges[:, 1]], axis=1)
    return Geometry("mesh", v, area, pairs, edges, lengths, border, faces=f)


def point_geometry(xyz: np.ndarray, k: int = KNN) -> Geometry:
    """Symmetric kNN graph; the same graph serves regions and click distances."""
    p = np.asarray(xyz, dtype=np.float64)
    n = len(p)
    kk = min(k, n - 1)
    if kk < 1:
        empty = np.zeros((0, 2), dtype=np.int64)
        return Geometry("points", p, np.ones(n), empty, empty, np.zeros(0), np.zeros(n, dtype=bool))
    _, idx = cKDTree(p).query(p, k=kk + 1)
    a = np.repeat(np.arange(n), kk)
    b = idx[:, 1:].ravel()
    e = np.unique(np.sort(np.stack([a, b], axis=1), axis=1), axis=0)
    e = e[e[:, 0] != e[:, 1]]
    lengths = np.linalg.norm(p[e[:, 0]] - p[e[:, 1]], axis=1)
    return Geometry("points", p, np.ones(n), e, e, lengths, np.zeros(n, dtype=bool))
