"""SAS's 3D step, training-free: each element's fused scores mixed with its neighbours' on the walk graph.

SAS refines its fused features with a 3D network over superpoints. Without training, averaging the fused
scores over geometric superpoints (Felzenszwalb's segmentation of the walk graph) cost 2.6–3.8 mIoU points
on the oracle evaluation: a superpoint that a part boundary crosses hands its majority's label to the
minority, and the sources were right there (docs/methods/sas.md). Here an element keeps a share of its own
evidence and takes the rest from its neighbours, weighted by the walk's affinities (low across concave
creases and colour changes) — one step of label spreading (Zhou et al., "Learning with local and global
consistency", NIPS 2003):

    S = a ⊙ S₀ + (1 − a) ⊙ P S₀,    a_i = c_i / (c_i + c̄),

P the row-normalised affinities, c_i the element's coverage (how much of it the views saw, summed blend
weight per view) and c̄ the mean coverage of the elements seen: the element's own multi-view evidence
weighs what the views gave it, its neighbourhood one typical element's worth. (Weighing c_i by the sources'
mean view evidence there, session 12, gained 0.4–0.6 on the PSB meshes and lost 0.3 on their splats and
points: not kept.) A well-seen element moves
only where its neighbours disagree with it, a barely seen one follows them, and an element no view showed
takes its neighbours' scores. One step, not the iteration to label spreading's fixed point: 2, 3 and 10 steps
gave the same figures within 0.3 point (journal) at up to ten times the cost.

The step runs in the label kernel (`segany.kernels.labels`, `spread`), and only where it can change a label:
at the elements with a neighbour of another label; the others keep their own scores.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from segany.kernels.labels import Neighbours

from ...graphwalk import CreaseGraph
from ...scene import MeshScene, Scene
from ..walk.graph import edge_weights, element_attributes, knn_edges


def element_graph(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """The walk's affinities between elements: unique pairs (E, 2) int32 (i < j) and weights (E,) float32.

    A mesh's walk graph links faces; two vertices are linked with the affinity of the faces around them
    (T W Tᵀ, T a vertex's area shares of its faces). Points and splats: the walk's kNN graph at full
    resolution (the walk coarsens it above 50K elements; spreading is per element).
    """
    if isinstance(scene, MeshScene):
        graph = CreaseGraph.for_mesh(scene.vertices, scene.faces)
        t = graph.to_elements
        w = (t @ graph.W @ t.T).tocoo()
        keep = w.row < w.col
        edges, weights = np.stack([w.row[keep], w.col[keep]], axis=1), w.data[keep]
    else:
        positions, normals, colours = element_attributes(scene)
        edges, lengths = knn_edges(positions)
        weights = edge_weights(positions, normals, colours, edges, lengths, colour=1.0)
    return edges.astype(np.int32), weights.astype(np.float32)


def spreading(edges: torch.Tensor, weights: torch.Tensor, coverage: torch.Tensor) -> Neighbours:
    """The operator of the step from a state's graph and coverage (built once per state)."""
    n = len(coverage)
    e = edges.numpy().astype(np.int64)
    w = np.r_[weights.numpy(), weights.numpy()].astype(np.float64)
    affinity = sp.csr_matrix((w, (np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]])), (n, n))
    degree = np.asarray(affinity.sum(axis=1)).ravel()
    p = (sp.diags(1.0 / np.maximum(degree, 1e-30)) @ affinity).astype(np.float32).tocsr()
    c = coverage.numpy().astype(np.float64)
    typical = float(c[c > 0].mean()) if (c > 0).any() else 1.0
    own = np.where(degree > 0, c / (c + typical), 1.0)  # 1 where an element has no neighbour
    return Neighbours(p.indptr.astype(np.int64), p.indices.astype(np.int32), p.data, own.astype(np.float32))
