"""Random walks on a scene's element graph, weighted so that walks rarely cross concave creases.

Part boundaries run along concave creases (the minima rule), so the classical baseline of `segany eval`
and iSeg's selection refinement walk on the same graph. On a mesh it is the dual graph: two faces
sharing an edge are linked with weight
    w = (edge length / centroid distance) · exp(-η (1 - cos θ) / σ),
θ the angle between their normals, η = 1 across a concave edge and 0.2 across a convex one, σ the mean
of η (1 - cos θ) over the mesh (Lai et al., "Rapid and effective segmentation of 3D models using random
walks", CAGD 2009). On points and splats it is the kNN graph, with normals (when given) for the concavity.

Every solve is Grady's random walker with a prior model ("Random walks with prior models", 2005):
    (L + γ I + β S) x = γ prior + β S seed,
S the seeded nodes. Seeds are soft (β far above any node degree, so they hold to 1e-6), which lets one
sparse LU of L + γ I per γ serve every click list: the seed rows enter through the Woodbury identity
with one cached solve per seeded node. A click costs two triangular solves instead of a factorisation.

A loose piece of the scene (no edge to the rest) that is convex holds no concave crease, so by the same
rule it is one part: a first click on it answers the whole piece (`convex_piece`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, dijkstra
from scipy.sparse.linalg import splu
from scipy.spatial import ConvexHull, QhullError

CONCAVE_ETA = 1.0
CONVEX_ETA = 0.2
SEED_WEIGHT = 1e6  # β, relative to the mean node degree
FIRST_PULL = 1e-3  # first click: absorption / pull of a prior per node, relative to the mean node degree
FIRST_SHARE = 0.5  # first click: the region holds at most this share of the graph volume
# A guided first click (iSeg's decoder, SAGA's similarity): the sweep cut nearest the guide's confident answer.
CONFIDENT = 0.75  # the guide's nodes at or above this guide the cut (PSB dev shapes)
AGREEMENT = 0.1  # weight of disagreeing with the guide against a cut's conductance (PSB dev shapes)
FIRST_MAX_SHARE = 0.98  # a guided first answer may hold all but a small part: the guide, not a cap, says how large
RIM_CREASE = 0.02  # weight of a guided cut's rim share off concave creases (`rim_crease`; fitted: PSB 1, 2, 21)
FOLLOW_PULL = 1e-4  # later clicks: pull of the previous answer, relative to the mean node degree
MAX_CACHED_COLUMNS = 512  # per γ: solves for seeded nodes kept for later clicks
CONVEX_TOLERANCE = 1e-4  # a point this far inside the hull, relative to the piece's extent, is a dent, not rounding
HULL_CHUNK = 4_000_000  # point × hull-facet distances computed at a time
# A later click changes only what it asked for (`CreaseGraph.asked`; iSeg's and SAGA's refiners).
REACH = 2.0  # a later click changes nodes within this many times its distance to the selection's edge
CLICK_DEPTH = 0.9  # a later click takes a whole change piece only from its middle: its depth there ≥ this × the deepest
COMPACT = 4.0  # ... and when no node of the piece lies farther from it than this × that depth (fitted: 4 shapes)
SEARCH_START = 16.0  # `near` first searches this many mean node steps from the click


def adjacency(n: int, edges: np.ndarray, weights: np.ndarray | None = None) -> sp.csr_matrix:
    """Symmetric sparse adjacency from an edge list."""
    w = np.ones(len(edges)) if weights is None else weights
    m = sp.coo_matrix((np.r_[w, w], (np.r_[edges[:, 0], edges[:, 1]], np.r_[edges[:, 1], edges[:, 0]])), (n, n))
    return m.tocsr()


def face_adjacency(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of faces sharing an edge, the shared edge's two vertices, and per-vertex open-border flags.

    Non-manifold edges (3+ faces) link their faces in a chain, which keeps them connected.
    """
    f = len(faces)
    e = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    owner = np.repeat(np.arange(f), 3)
    key = e[:, 0].astype(np.int64) * (int(faces.max()) + 1) + e[:, 1]
    order = np.argsort(key, kind="stable")
    key, owner, e = key[order], owner[order], e[order]
    same = key[1:] == key[:-1]
    pairs = np.stack([owner[:-1][same], owner[1:][same]], axis=1)
    shared = e[:-1][same]
    starts = np.r_[True, ~same]
    counts = np.diff(np.r_[np.flatnonzero(starts), len(key)])
    lone = e[np.flatnonzero(starts)[counts == 1]]
    border = np.zeros(int(faces.max()) + 1, dtype=bool)
    border[lone.ravel()] = True
    return pairs, shared, border


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(n, 1e-30)


class FaceCreases(NamedTuple):
    """A mesh's dual graph with the concavity across each of its edges, and the per-face geometry it came from."""

    pairs: np.ndarray  # (E, 2) faces sharing an edge
    shared: np.ndarray  # (E, 2) that edge's two vertices
    concavity: np.ndarray  # (E,) `concavity_weights` across it
    centres: np.ndarray  # (F, 3) face centres
    cross: np.ndarray  # (F, 3) unnormalised face normals (their length is twice the face's area)


def face_creases(vertices: np.ndarray, faces: np.ndarray, convex_eta: float = CONVEX_ETA) -> FaceCreases:
    """The mesh's `FaceCreases`: what the walk graph (`CreaseGraph.for_mesh`) and segment everything's
    boundaries (`methods/saga/boundaries.py`) read creases from."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    tri = v[f]
    centre = tri.mean(axis=1)
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    fn = _unit(cross)
    pairs, shared, _ = face_adjacency(f)
    a, b = pairs.T
    return FaceCreases(pairs, shared, concavity_weights(fn[a], fn[b], centre[a], centre[b], convex_eta), centre, cross)


def concavity_weights(
    normals_a: np.ndarray,
    normals_b: np.ndarray,
    centre_a: np.ndarray,
    centre_b: np.ndarray,
    convex_eta: float = CONVEX_ETA,
) -> np.ndarray:
    """exp(-η (1 - cos θ) / σ) per edge: small across concave creases, near 1 on flat or convex ground
    (`convex_eta` 0: convex edges do not count at all, as segment everything's boundaries settle)."""
    cos = np.clip(np.einsum("ij,ij->i", normals_a, normals_b), -1.0, 1.0)
    concave = is_concave(normals_a, normals_b, centre_a, centre_b)
    d = np.where(concave, CONCAVE_ETA, convex_eta) * (1.0 - cos)
    sigma = max(float(d.mean()), 1e-12)
    return np.exp(-d / sigma)


def is_concave(normals_a: np.ndarray, normals_b: np.ndarray, centre_a: np.ndarray, centre_b: np.ndarray) -> np.ndarray:
    """Per pair of neighbours, whether the surface bends inwards between them (false on a sphere)."""
    return np.einsum("ij,ij->i", centre_b - centre_a, normals_a - normals_b) > 0


def is_convex(points: np.ndarray) -> bool:
    """Whether every point lies on the convex hull of them all (within CONVEX_TOLERANCE of their extent).

    Flat or degenerate sets, which have no 3D hull, are not claimed convex.
    """
    p = np.asarray(points, dtype=np.float64)
    if len(p) < 4:
        return False
    try:
        hull = ConvexHull(p, qhull_options="Qc Qi")  # every other point comes with a facet it lies under
    except QhullError:
        return False
    tol = CONVEX_TOLERANCE * float(np.ptp(p, axis=0).max())
    normals, offsets = hull.equations[:, :3], hull.equations[:, 3]
    rows, facets = hull.coplanar[:, 0], hull.coplanar[:, 1]
    on = rows[np.einsum("ij,ij->i", p[rows], normals[facets]) + offsets[facets] >= -tol]
    doubtful = np.setdiff1d(np.arange(len(p)), np.r_[hull.vertices, on])  # qhull's facet need not be the nearest
    step = max(1, HULL_CHUNK // len(offsets))
    for i in range(0, len(doubtful), step):
        if ((p[doubtful[i : i + step]] @ normals.T + offsets).max(axis=1) < -tol).any():
            return False
    return True


class _Factor:
    """One sparse LU of L + γ I and the solves for seeded nodes made with it so far."""

    def __init__(self, laplacian: sp.csr_matrix, gamma: float) -> None:
        n = laplacian.shape[0]
        self.lu = splu((laplacian + sp.identity(n) * gamma).tocsc())
        self.columns: dict[int, np.ndarray] = {}

    def columns_for(self, nodes: np.ndarray) -> np.ndarray:
        """(n, s): (L + γ I)⁻¹ e_i for each node i, solving only the nodes not seen before."""
        missing = [int(i) for i in nodes if int(i) not in self.columns]
        if missing:
            if len(self.columns) + len(missing) > MAX_CACHED_COLUMNS:
                self.columns.clear()
                missing = [int(i) for i in nodes]
            rhs = np.zeros((self.lu.shape[0], len(missing)))
            rhs[missing, np.arange(len(missing))] = 1.0
            for i, col in zip(missing, self.lu.solve(rhs).T, strict=True):
                self.columns[i] = col
        return np.stack([self.columns[int(i)] for i in nodes], axis=1)


class CreaseGraph:
    """The weighted element graph of one scene, its Laplacian, and the walks the click methods need.

    Build once per scene (`for_mesh` / `for_points`); solves are thread-safe and share factorisations.
    """

    def __init__(
        self,
        edges: np.ndarray,
        weights: np.ndarray,
        n: int,
        seed_of: sp.csr_matrix,
        to_elements: sp.csr_matrix | None = None,
        positions: np.ndarray | None = None,
        rims: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.n = n
        self.edges = edges
        self.edge_weights = np.maximum(weights, 1e-8)
        self.W = adjacency(n, edges, self.edge_weights)
        self.degree = np.asarray(self.W.sum(axis=1)).ravel()
        self.L = (sp.diags(self.degree) - self.W).tocsr()
        self.mean_degree = max(float(self.degree.mean()), 1e-30)
        self.seed_of = seed_of  # (click elements, nodes): the nodes a click on an element seeds
        self.to_elements = to_elements  # (click elements, nodes) averaging; None when nodes are the elements
        self.pieces = connected_components(self.W, directed=False)[1]
        self.positions = positions  # per click element, for telling convex pieces; None: never claimed convex
        self.rims = rims  # per edge, exp(−crease) where concave (else 1) and its boundary length (`rim_crease`)
        self._convex: dict[int, bool] = {}
        self._factors: dict[float, _Factor] = {}
        self._steps: tuple[sp.csr_matrix, float] | None = None  # `steps`, built on first use
        self._lock = threading.Lock()

    @classmethod
    def for_mesh(cls, vertices: np.ndarray, faces: np.ndarray, convex_eta: float = CONVEX_ETA) -> CreaseGraph:
        """Dual graph: nodes are faces; a click on a vertex seeds the faces around it."""
        v = np.asarray(vertices, dtype=np.float64)
        f = np.asarray(faces, dtype=np.int64)
        pairs, shared, crease, centre, cross = face_creases(v, f, convex_eta)
        a, b = pairs.T
        length = np.linalg.norm(v[shared[:, 0]] - v[shared[:, 1]], axis=1)
        w = crease * length / np.maximum(np.linalg.norm(centre[a] - centre[b], axis=1), 1e-30)
        fn = _unit(cross)
        rim = np.where(is_concave(fn[a], fn[b], centre[a], centre[b]), crease, 1.0)  # parts end at concave creases
        corner_of = (f.ravel(), np.repeat(np.arange(len(f)), 3))
        seed_of = sp.csr_matrix((np.ones(f.size), corner_of), (len(v), len(f)))
        area = sp.csr_matrix((np.repeat(0.5 * np.linalg.norm(cross, axis=1), 3), corner_of), (len(v), len(f)))
        total = np.asarray(area.sum(axis=1)).ravel()
        to_vertices = (sp.diags(1.0 / np.maximum(total, 1e-30)) @ area).tocsr()
        return cls(pairs, w, len(f), seed_of, to_vertices, v, rims=(rim, length))

    @classmethod
    def for_points(
        cls, positions: np.ndarray, edges: np.ndarray, lengths: np.ndarray, normals: np.ndarray | None
    ) -> CreaseGraph:
        """kNN graph: nodes are the points; a click seeds the point and its neighbours."""
        a, b = edges.T
        p = np.asarray(positions, dtype=np.float64)
        if normals is not None:
            nn = _unit(np.asarray(normals, dtype=np.float64))
            w = concavity_weights(nn[a], nn[b], p[a], p[b])
        else:
            w = np.ones(len(a))
        scale = max(float(lengths.mean()), 1e-30) if len(a) else 1.0
        n = len(p)
        seed_of = (sp.identity(n, format="csr") + adjacency(n, edges)).tocsr()
        return cls(edges, w * np.exp(-lengths / scale), n, seed_of, positions=p)

    def element_scores(self, node_values: np.ndarray) -> np.ndarray:
        """Per click element (vertex or point): on a mesh the area-weighted mean of its faces' values."""
        values = np.asarray(node_values, dtype=np.float64)
        return values if self.to_elements is None else self.to_elements @ values

    def seeds(self, clicks: Iterable[tuple[int, int]]) -> np.ndarray:
        """Per node: +1 / -1 when seeded by a click (a later click wins), 0 otherwise."""
        seed = np.zeros(self.n, dtype=np.int64)
        for element, sign in clicks:
            seed[self.seed_of[int(element)].indices] = 1 if sign > 0 else -1
        return seed

    def _factor(self, gamma: float) -> _Factor:
        with self._lock:
            factor = self._factors.get(gamma)
            if factor is None:
                factor = self._factors[gamma] = _Factor(self.L, gamma * self.mean_degree)
            return factor

    def walk(self, prior: np.ndarray | float, seed: np.ndarray, gamma: float) -> np.ndarray:
        """Per node, the probability that a walk reaches a positive seed before a negative one, with
        `prior` pulling every node at strength γ (relative to the mean degree)."""
        factor = self._factor(gamma)
        nodes = np.flatnonzero(seed)
        uniform = np.ndim(prior) == 0  # (L + γI)⁻¹ γc·1 = c·1 (L's rows sum to zero): no solve needed
        with self._lock:
            if uniform:
                y = np.full(self.n, float(prior))
            else:
                y = factor.lu.solve(gamma * self.mean_degree * np.asarray(prior, dtype=np.float64))
            if len(nodes) == 0:
                return np.clip(y, 0.0, 1.0)
            z = factor.columns_for(nodes)
        beta = SEED_WEIGHT * self.mean_degree
        target = (seed[nodes] > 0).astype(np.float64)
        k = np.identity(len(nodes)) / beta + z[nodes]
        x = y + z @ (beta * target) - z @ np.linalg.solve(k, y[nodes] + z[nodes] @ (beta * target))
        return np.clip(x, 0.0, 1.0)

    def sweep_scored(
        self,
        x: np.ndarray,
        seed: np.ndarray,
        max_share: float,
        guide: np.ndarray | None = None,
        agreement: float = 0.0,
        rim: float = 0.0,
    ) -> tuple[np.ndarray, float]:
        """The level set of x with the lowest conductance that keeps every positive and no negative seed and
        holds at most `max_share` of the graph volume — the sweep cut of local graph partitioning (Andersen,
        Chung, Lang 2006). Nodes with x < 0 never join it. With a `guide` (a soft answer's nodes), a level set
        also pays `agreement` × (1 − its volume IoU with the guide): the crease cut nearest that answer, where
        the lowest cut alone can be a small crease next to the click (a hoof instead of the leg). With `rim`
        (and `rims`), a level set also pays `rim` × how little of its rim is concave crease (`rim_crease`)."""
        order = np.lexsort((seed <= 0, seed < 0, -x))
        rank = np.empty(self.n, dtype=np.int64)
        rank[order] = np.arange(self.n)
        vol = np.cumsum(self.degree[order])
        inner = np.bincount(rank[self.edges].max(axis=1), weights=self.edge_weights, minlength=self.n)
        cut = vol - 2.0 * np.cumsum(inner)
        total = vol[-1]
        score = cut / np.maximum(np.minimum(vol, total - vol), 1e-30)
        if guide is not None:
            guided = self.degree * np.asarray(guide, dtype=np.float64)
            shared = np.cumsum(guided[order])
            score = score + agreement * (1.0 - shared / np.maximum(guided.sum() + vol - shared, 1e-30))
        if rim and self.rims is not None:
            score = score + rim * self.rim_crease(rank)
        k = np.arange(self.n)
        last_pos = int(rank[seed > 0].max())
        first_neg = int(rank[seed < 0].min()) if (seed < 0).any() else self.n
        score[(k < last_pos) | (k >= first_neg) | (vol / total > max_share) | (k >= int((x >= 0).sum()))] = np.inf
        if not np.isfinite(score).any():
            return x >= 0.5, np.inf
        best = int(np.argmin(score))
        chosen = np.zeros(self.n, dtype=bool)
        chosen[order[: best + 1]] = True
        return chosen, float(score[best])

    def rim_crease(self, rank: np.ndarray) -> np.ndarray:
        """Per level set of a sweep order (`rank` per node; set k holds the nodes of rank ≤ k): the mean over
        its rim, weighted by boundary length, of exp(−crease) across concave edges and 1 across convex ones —
        near 0 where the rim runs all along concave creases, 1 on flat or convex ground, whatever the set's
        size. Conductance divides the cut by the set's volume, so a larger set cut across flat ground can
        score below the part bounded by creases all round; parts end at concave creases (the minima rule),
        and a convex edge (a facet of a faceted mug, a box's corner) is no part's end. A set with no rim (a
        whole piece) scores 0."""
        crease, length = self.rims
        lo, hi = np.sort(rank[self.edges], axis=1).T

        def across(values: np.ndarray) -> np.ndarray:  # per level set, the sum over the edges it cuts
            return np.cumsum(np.bincount(lo, values, self.n)) - np.cumsum(np.bincount(hi, values, self.n))

        cut = across(length)
        on = cut > 1e-9 * float(length.sum())
        return np.where(on, np.clip(across(crease * length) / np.where(on, cut, 1.0), 0.0, 1.0), 0.0)

    def convex_piece(self, seed: np.ndarray) -> np.ndarray | None:
        """The nodes of the pieces the positive seeds lie on, when each of them is convex and together they
        are not the whole graph; else None.

        Part boundaries run along concave creases (the minima rule) and a convex piece has none, so a loose
        convex piece (a stool's leg modelled as its own cylinder) is one part, however cheap the cuts along
        its facets or across its length that conductance finds. A scene that is one convex piece is the
        whole object, which no part-level click asks for.
        """
        clicked = np.unique(self.pieces[seed > 0])
        nodes = np.isin(self.pieces, clicked)
        if self.positions is None or len(clicked) == 0 or nodes.all():
            return None
        return nodes if all(self._piece_is_convex(int(p)) for p in clicked) else None

    def _piece_is_convex(self, piece: int) -> bool:
        with self._lock:
            known = self._convex.get(piece)
        if known is None:
            nodes = np.flatnonzero(self.pieces == piece)
            corners = self.seed_of[:, nodes].tocsc()
            points = self.positions[np.unique(corners.indices)]
            if self.to_elements is not None:  # nodes spanning several elements (faces): their centres too
                centres = (corners.T @ self.positions) / np.diff(corners.indptr)[:, None]
                points = np.concatenate([points, centres])
            known = is_convex(points)
            with self._lock:
                self._convex[piece] = known
        return known

    def first_region(self, seed: np.ndarray, max_share: float = FIRST_SHARE) -> np.ndarray:
        """A first click's region without a prior: a loose convex piece whole, else the sweep cut of the walk
        from the click, the region its diffusion leaks out of least."""
        piece = self.convex_piece(seed)
        if piece is not None:
            return piece
        return self.sweep_scored(self.walk(0.0, seed, FIRST_PULL), seed, max_share)[0]

    def follow_walk(self, previous: np.ndarray, seed: np.ndarray) -> np.ndarray:
        """A later click's walk: Grady's walker over all clicks with the previous answer as a weak prior."""
        return self.walk(np.asarray(previous, dtype=np.float64), seed, FOLLOW_PULL)

    def follow(self, previous: np.ndarray, seed: np.ndarray) -> np.ndarray:
        """A later click's region: the follow walk's nodes nearer the positive clicks."""
        return self.follow_walk(previous, seed) >= 0.5

    def components(self, selected: np.ndarray) -> np.ndarray:
        """Connected-component label per node of the subgraph the selected nodes span."""
        a, b = self.edges.T
        inside = selected[a] & selected[b]
        return connected_components(adjacency(self.n, self.edges[inside]), directed=False)[1]

    def drop_cut_islands(self, selected: np.ndarray, previous: np.ndarray, seed: np.ndarray) -> np.ndarray:
        """Drop the selected islands a click cut off from every positive click.

        A negative click that splits a selection (a seat between four selected legs) leaves the far side
        selected with nothing holding it. An island is dropped when it holds no positive click and all
        of it was, before the click, in a region that held one; islands that were separate already (a
        cup's inner wall the first answer took along) stay.
        """
        comp = self.components(selected)
        held = np.isin(comp, comp[(seed > 0) & selected])
        before = self.components(previous)
        was_held = previous & np.isin(before, before[(seed > 0) & previous])
        loose = selected & ~held
        outside = np.bincount(comp[loose & ~was_held], minlength=self.n)
        return selected & ~(loose & (outside[comp] == 0))

    def steps(self) -> tuple[sp.csr_matrix, float]:
        """The graph's edges weighted by the distance between their nodes' centres (a face's centre on a mesh,
        the mean of the elements a node seeds when nodes group elements; one per edge without positions), and
        the mean step: what `near` and `asked` measure how far a click reaches with. Built on first use."""
        with self._lock:
            built = self._steps
        if built is None:
            a, b = self.edges.T
            if self.positions is None:
                lengths = np.ones(len(a))
            else:
                centres = np.asarray(self.positions, dtype=np.float64)
                if self.to_elements is not None:
                    counts = np.maximum(np.asarray(self.seed_of.sum(axis=0)).ravel(), 1e-30)
                    centres = (self.seed_of.T @ centres) / counts[:, None]
                lengths = np.linalg.norm(centres[a] - centres[b], axis=1) + 1e-12
            built = (adjacency(self.n, self.edges, lengths), float(lengths.mean()) if len(lengths) else 1.0)
            with self._lock:
                self._steps = built
        return built

    def near(self, here: np.ndarray, side: np.ndarray) -> np.ndarray:
        """The nodes a later click may change: those within `REACH` times the click's distance to the other
        side of the selection's edge (`steps`). The protocol, and a user fixing an error, clicks the point
        deepest in the wrong region, so that distance says how large the region is: a click in a thin sliver
        along the edge must not swing a whole neighbouring part across.

        The search is bounded (`limit`, doubled until the other side is found, then set to the reach): a
        search over the whole graph was the largest cost of a later click on a 30K-face mesh, and the answer
        only needs the nodes within reach."""
        lengths, step = self.steps()
        sources = np.flatnonzero(here)
        limit = SEARCH_START * step
        found = -1
        while True:
            dist = dijkstra(lengths, directed=False, indices=sources, min_only=True, limit=limit)
            reached = np.isfinite(dist)
            other = ~side & reached
            if other.any():
                bound = REACH * float(dist[other].min())
                if bound <= limit:
                    return dist <= bound
                limit = bound
            elif int(reached.sum()) == found:  # the click's whole piece is searched: nothing on the other side
                return np.ones(len(dist), dtype=bool)
            else:
                found, limit = int(reached.sum()), 2.0 * limit

    def asked(self, here: np.ndarray, change: np.ndarray, near: np.ndarray | None) -> np.ndarray:
        """The part of a later click's proposed `change` the click asked for: the connected piece under the
        click, whole when the click lies at its middle (its distance to the piece's edge at least
        `CLICK_DEPTH` of the largest in the piece) and the piece is compact around it (no node farther from
        the click than `COMPACT` times that distance), else only its nodes within `REACH` (`near`; None:
        nothing). The protocol, and a user fixing an error, clicks the middle of what is wrong, so a piece
        whose middle lies elsewhere (a flood from a sliver along the edge into a neighbouring part), or a long
        strip along the edge, is not what the click asked for; a piece centred on the click is, however far
        it reaches (a wrongly selected part goes in one click, where `REACH` alone took it over several)."""
        comp = self.components(change)
        piece = change & np.isin(comp, comp[here & change])
        if not piece.any():
            return piece
        depth, reach = self._depth(piece, here)
        at_click = float(depth[here & piece].max())
        if at_click >= CLICK_DEPTH * float(depth.max()) and reach <= COMPACT * at_click:
            return piece
        return piece & near if near is not None else np.zeros_like(piece)

    def _depth(self, region: np.ndarray, here: np.ndarray) -> tuple[np.ndarray, float]:
        """Per node of `region` (0 elsewhere) its distance (`steps`) to the nearest node outside, and the
        largest distance within the region from the clicked nodes."""
        nodes = np.flatnonzero(region)
        a, b = self.edges.T
        edge = region[a] != region[b]
        rim = np.zeros(self.n, dtype=bool)
        rim[a[edge]] = True
        rim[b[edge]] = True
        inner = self.steps()[0][nodes][:, nodes]
        from_click = dijkstra(inner, directed=False, indices=np.flatnonzero(here[nodes]), min_only=True)
        reach = float(from_click[np.isfinite(from_click)].max())
        sources = np.flatnonzero(rim[nodes])
        if len(sources) == 0:  # the region is a whole piece: no edge to measure from, every node is central
            return np.where(region, np.inf, 0.0), reach
        depth = np.zeros(self.n)
        dist = dijkstra(inner, directed=False, indices=sources, min_only=True)
        depth[nodes] = np.where(np.isfinite(dist), dist, 0.0)
        return depth, reach
