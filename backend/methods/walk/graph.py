"""The graph the walk runs on, for each scene kind.

- Meshes: the concavity-weighted dual graph of `segany.graphwalk` (`CreaseGraph.for_mesh`), unchanged, so a
  mesh answer is the evaluation baseline's answer.
- Points and splats: the symmetric k-nearest-neighbour graph the evaluation uses for them, each edge weighted
  by its length (`exp(-length / mean length)`), by the normals (point normals, or a Gaussian's shortest axis)
  and by colour. The normal term is the concavity test of `graphwalk.concavity_weights`, which needs
  normals that face consistently: a mesh's samples and scanned points have them; a trained Gaussian's
  shortest axis points either way, so where many neighbours face opposite ways the normals are first
  oriented (`orient`). Colour multiplies by `exp(-colour · |Δ chromaticity| / COLOUR_SCALE)`, chromaticity
  being rgb / (r + g + b): brightness is left out because on a surface it changes with the light (shading,
  baked shadows) where hue changes with the material; so on a grey scene the colour term is 1 everywhere.
- Above `max_nodes` elements the graph is coarsened: `max_nodes` elements drawn at random (a fixed seed)
  are centres, every element joins its nearest centre, and two centres are linked with the summed weight
  of the element edges between them. A click seeds the centres of the element and its neighbours; an
  element's score is its centre's. The walk then costs the same at a million Gaussians as at fifty
  thousand.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numba import njit
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree
from scipy.spatial import cKDTree

from ...formats.gaussians import SH_C0
from ...graphwalk import CreaseGraph, adjacency, concavity_weights
from ...scene import MeshScene, PointScene, Scene, SplatScene, splat_normals
from .solve import SeededCreaseGraph

KNN = 8  # the evaluation's point graph (segany.eval.geometry): the baseline's neighbours
ORIENTED_SHARE = 0.05  # normals face consistently when fewer kNN edges than this join opposite-facing ones
COLOUR_SCALE = 0.1  # chromaticity difference that costs an edge a factor e^-colour
DARK = 0.3  # r + g + b under which the chromaticity difference counts in proportion
COARSEN_SEED = 0


def knn_edges(positions: np.ndarray, k: int = KNN) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric kNN graph as sorted unique pairs (i < j) and their Euclidean lengths: the pairs
    `segany.eval.geometry.point_geometry` builds, found with every core."""
    p = np.asarray(positions, dtype=np.float64)
    n = len(p)
    kk = min(k, n - 1)
    if kk < 1:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0)
    _, idx = cKDTree(p).query(p, k=kk + 1, workers=-1)
    a = np.repeat(np.arange(n, dtype=np.int64), kk)
    b = idx[:, 1:].ravel().astype(np.int64)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    key = np.unique(lo * n + hi)
    edges = np.stack([key // n, key % n], axis=1)
    edges = edges[edges[:, 0] != edges[:, 1]]
    return edges, np.linalg.norm(p[edges[:, 0]] - p[edges[:, 1]], axis=1)


def element_attributes(scene: Scene) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Positions, normals (None when the scene has none) and colours in [0, 1] (None likewise)."""
    if isinstance(scene, SplatScene):
        rgb = np.clip(0.5 + SH_C0 * scene.sh[:, 0, :].astype(np.float64), 0.0, 1.0)
        return scene.means, splat_normals(scene), rgb
    if isinstance(scene, PointScene):
        return scene.xyz, scene.normals, scene.rgb
    raise TypeError(f"element_attributes takes point and splat scenes, not {scene.kind!r}")


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-30)


@njit(nogil=True, cache=True)
def _propagate_signs(indptr: np.ndarray, indices: np.ndarray, agree: np.ndarray) -> np.ndarray:  # pragma: no cover
    """±1 per node: breadth-first over a forest (CSR, both directions), a child keeps its parent's sign where
    the edge's `agree` is positive and flips it where negative; each tree's root keeps +1."""
    n = indptr.shape[0] - 1
    sign = np.zeros(n, np.int8)
    queue = np.empty(n, np.int64)
    for root in range(n):
        if sign[root] != 0:
            continue
        sign[root] = 1
        head, tail = 0, 1
        queue[0] = root
        while head < tail:
            i = queue[head]
            head += 1
            for p in range(indptr[i], indptr[i + 1]):
                j = indices[p]
                if sign[j] == 0:
                    sign[j] = sign[i] if agree[p] >= 0 else -sign[i]
                    queue[tail] = j
                    tail += 1
    return sign


def orient(positions: np.ndarray, normals: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Unit normals made to face consistently: signs propagated along the kNN graph's minimum spanning forest
    under the cost 1 − |cos θ| (Hoppe et al. 1992), each piece then turned to face away from its centroid."""
    n = _unit(normals)
    a, b = edges.T
    cos = np.einsum("ij,ij->i", n[a], n[b])
    count = len(n)
    cost = sp.csr_matrix((1.0 - np.abs(cos) + 1e-6, (a, b)), (count, count))  # zero costs would drop edges
    forest = minimum_spanning_tree(cost).tocoo()
    i, j = np.r_[forest.row, forest.col], np.r_[forest.col, forest.row]
    both = sp.csr_matrix((np.einsum("ij,ij->i", n[i], n[j]), (i, j)), (count, count))
    both.sort_indices()
    sign = _propagate_signs(both.indptr.astype(np.int64), both.indices.astype(np.int64), both.data).astype(np.float64)
    n *= sign[:, None]
    piece = connected_components(both, directed=False)[1]
    p = np.asarray(positions, dtype=np.float64)
    size = np.bincount(piece)
    centre = np.stack([np.bincount(piece, weights=p[:, k]) for k in range(3)], axis=1) / size[:, None]
    outward = np.bincount(piece, weights=np.einsum("ij,ij->i", n, p - centre[piece]))
    return n * np.where(outward[piece] < 0, -1.0, 1.0)[:, None]


def normal_weights(positions: np.ndarray, normals: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """`graphwalk.concavity_weights`, on the normals as given where they face consistently, else oriented first."""
    a, b = edges.T
    n = _unit(normals)
    if (np.einsum("ij,ij->i", n[a], n[b]) < 0).mean() >= ORIENTED_SHARE:
        n = orient(positions, n, edges)
    p = np.asarray(positions, dtype=np.float64)
    return concavity_weights(n[a], n[b], p[a], p[b])


def edge_weights(
    positions: np.ndarray,
    normals: np.ndarray | None,
    colours: np.ndarray | None,
    edges: np.ndarray,
    lengths: np.ndarray,
    colour: float,
) -> np.ndarray:
    """Length × normal × colour affinity per edge (the length and normal terms are `CreaseGraph.for_points`')."""
    w = np.ones(len(edges)) if normals is None else normal_weights(positions, normals, edges)
    if len(edges):
        w = w * np.exp(-lengths / max(float(lengths.mean()), 1e-30))
    if colours is not None and colour > 0 and len(edges):
        rgb = np.asarray(colours, dtype=np.float64)
        total = rgb.sum(axis=1)
        chroma = rgb / np.maximum(total, 1e-12)[:, None]
        a, b = edges.T
        lit = np.minimum(np.minimum(total[a], total[b]) / DARK, 1.0)  # near black the hue is noise
        w = w * np.exp(-colour * lit * np.linalg.norm(chroma[a] - chroma[b], axis=1) / COLOUR_SCALE)
    return w


def _coarsen(
    positions: np.ndarray, edges: np.ndarray, weights: np.ndarray, nodes: int
) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix]:
    """Centres, the centre pairs the element edges join with their summed weights, and the (elements, centres)
    membership matrix."""
    p = np.asarray(positions, dtype=np.float64)
    n = len(p)
    centres = np.sort(np.random.default_rng(COARSEN_SEED).choice(n, nodes, replace=False))
    _, owner = cKDTree(p[centres]).query(p, workers=-1)
    owner = owner.astype(np.int64)
    a, b = owner[edges[:, 0]], owner[edges[:, 1]]
    cross = a != b
    lo, hi = np.minimum(a[cross], b[cross]), np.maximum(a[cross], b[cross])
    key, inverse = np.unique(lo * nodes + hi, return_inverse=True)
    summed = np.bincount(inverse, weights=weights[cross], minlength=len(key))
    pairs = np.stack([key // nodes, key % nodes], axis=1)
    member = sp.csr_matrix((np.ones(n), (np.arange(n), owner)), (n, nodes))
    return pairs, summed, member


def point_graph(
    positions: np.ndarray,
    normals: np.ndarray | None,
    colours: np.ndarray | None,
    colour: float,
    neighbours: int = KNN,
    max_nodes: int = 50_000,
) -> CreaseGraph:
    """The walk graph of a point or splat scene (see the module docstring)."""
    n = len(positions)
    edges, lengths = knn_edges(positions, neighbours)
    w = edge_weights(positions, normals, colours, edges, lengths, colour)
    near = (sp.identity(n, format="csr") + adjacency(n, edges)).tocsr()  # a click seeds the element and its kNN
    p = np.asarray(positions, dtype=np.float64)
    if n <= max_nodes:
        return SeededCreaseGraph(edges, w, n, near, positions=p)
    pairs, summed, member = _coarsen(p, edges, w, max_nodes)
    seed_of = (near @ member).tocsr()
    seed_of.data[:] = 1.0
    return SeededCreaseGraph(pairs, summed, max_nodes, seed_of, member, positions=p)


def scene_graph(scene: Scene, colour: float, neighbours: int = KNN, max_nodes: int = 50_000) -> CreaseGraph:
    """The walk graph for any scene kind."""
    if isinstance(scene, MeshScene):
        return CreaseGraph.for_mesh(scene.vertices, scene.faces)
    positions, normals, colours = element_attributes(scene)
    return point_graph(positions, normals, colours, colour, neighbours, max_nodes)
