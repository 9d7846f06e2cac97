"""The seeded random-walk solve in one triangular pass per click, however many nodes the clicks seed.

`segany.graphwalk` solves (L + γI + βS) x = γ prior + βS t through the Woodbury identity with one full
solve per seeded node; a click on a point seeds the point and its ~10 neighbours, so a click costs ~10
full solves. Here L + γI (symmetric positive definite) is factored once per γ as Pᵀ L D Lᵀ P (SuperLU in
symmetric mode, minimum-degree ordering on A + Aᵀ, diagonal pivots: U is D Lᵀ). Row i of the inverse is
then Lᵀ-sparse: L⁻¹ P eᵢ lies on the elimination-tree path from i to the root, a few hundred nodes, so
the seeded block of the inverse costs one short path solve per seeded node (kept for later clicks), and
the answer itself one forward and one backward pass over L.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import scipy.sparse as sp
from numba import njit
from scipy.sparse.linalg import splu

from ...graphwalk import SEED_WEIGHT, CreaseGraph

MAX_CACHED_PATHS = 4096  # per γ: path solves for seeded nodes kept for later clicks


@njit(nogil=True, boundscheck=False, cache=True)
def _forward(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, x: np.ndarray) -> None:  # pragma: no cover
    """x ← L⁻¹ x in place; L unit lower triangular, its strictly lower part in CSC."""
    for j in range(x.shape[0]):
        xj = x[j]
        if xj != 0.0:
            for p in range(indptr[j], indptr[j + 1]):
                x[indices[p]] -= data[p] * xj


@njit(nogil=True, boundscheck=False, cache=True)
def _backward(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, x: np.ndarray) -> None:  # pragma: no cover
    """x ← L⁻ᵀ x in place: column j of L is row j of Lᵀ, so each step is one dot product."""
    for j in range(x.shape[0] - 1, -1, -1):
        acc = x[j]
        for p in range(indptr[j], indptr[j + 1]):
            acc -= data[p] * x[indices[p]]
        x[j] = acc


@njit(nogil=True, boundscheck=False, cache=True)
def _path_solve(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, parent: np.ndarray, start: int, work: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    """L⁻¹ e_start as (rows, values) on the elimination-tree path from `start` to the root.

    `work` is all zeros on entry and on exit: every row L touches from the path lies on the path.
    """
    m = 0
    j = start
    while j >= 0:
        m += 1
        j = parent[j]
    rows = np.empty(m, np.int64)
    vals = np.empty(m, np.float64)
    work[start] = 1.0
    j = start
    k = 0
    while j >= 0:
        xj = work[j]
        work[j] = 0.0
        rows[k] = j
        vals[k] = xj
        k += 1
        if xj != 0.0:
            for p in range(indptr[j], indptr[j + 1]):
                work[indices[p]] -= data[p] * xj
        j = parent[j]
    return rows, vals


class SeededFactor:
    """Pᵀ L D Lᵀ P of one symmetric positive definite matrix, and the seeded solves made with it."""

    def __init__(self, matrix: sp.spmatrix) -> None:
        n = matrix.shape[0]
        lu = splu(
            sp.csc_matrix(matrix),
            permc_spec="MMD_AT_PLUS_A",
            diag_pivot_thresh=0.0,
            options={"SymmetricMode": True},
        )
        if not np.array_equal(lu.perm_r, lu.perm_c):  # symmetric mode pivots on the diagonal of an SPD matrix
            raise ArithmeticError("the walk's matrix lost its symmetric factorisation (row and column orders differ)")
        self.n = n
        self.perm = lu.perm_r.astype(np.int64)  # node i is row perm[i] of the factor
        self.diag = lu.U.diagonal().copy()
        lower = lu.L.tocoo()
        strict = lower.row > lower.col
        lo = sp.csc_matrix((lower.data[strict], (lower.row[strict], lower.col[strict])), (n, n))
        lo.sort_indices()
        self.indptr = lo.indptr.astype(np.int64)
        self.indices = lo.indices.astype(np.int64)
        self.data = np.ascontiguousarray(lo.data, dtype=np.float64)
        counts = np.diff(self.indptr)
        first = self.indices[np.minimum(self.indptr[:-1], max(len(self.indices) - 1, 0))] if len(self.indices) else 0
        self.parent = np.where(counts > 0, first, -1).astype(np.int64)  # elimination tree: first row below the diagonal
        self.nnz = len(self.data) + n
        self._paths: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()

    def _path(self, node: int) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            found = self._paths.get(node)
        if found is None:
            work = np.zeros(self.n)
            found = _path_solve(self.indptr, self.indices, self.data, self.parent, int(self.perm[node]), work)
            with self._lock:
                if len(self._paths) >= MAX_CACHED_PATHS:
                    self._paths.clear()
                self._paths[node] = found
        return found

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """A⁻¹ rhs."""
        w = np.empty(self.n)
        w[self.perm] = rhs
        _forward(self.indptr, self.indices, self.data, w)
        w /= self.diag
        _backward(self.indptr, self.indices, self.data, w)
        return w[self.perm]

    def seeded(self, rhs: np.ndarray | None, nodes: np.ndarray, target: np.ndarray, beta: float) -> np.ndarray:
        """(A + β Σ eᵢeᵢᵀ) x = rhs + β Σ tᵢ eᵢ over the seeded `nodes`; `rhs` None means 0.

        With y = A⁻¹ rhs and Z the seeded block of A⁻¹, x = y + A⁻¹ E c where (I/β + Z) c = t − y_S.
        """
        paths = [self._path(int(i)) for i in nodes]
        union = np.unique(np.concatenate([rows for rows, _ in paths]))
        rows_of = np.zeros((len(nodes), len(union)))  # row i: L⁻¹ P e_i on the union of the paths
        for i, (rows, vals) in enumerate(paths):
            rows_of[i, np.searchsorted(union, rows)] = vals
        scaled = rows_of / self.diag[union]
        z = scaled @ rows_of.T
        w = np.zeros(self.n)  # D⁻¹ L⁻¹ P rhs
        if rhs is not None:
            w[self.perm] = rhs
            _forward(self.indptr, self.indices, self.data, w)
            w /= self.diag
        y_seeded = rows_of @ w[union]
        c = np.linalg.solve(np.identity(len(nodes)) / beta + z, np.asarray(target, dtype=np.float64) - y_seeded)
        w[union] += c @ scaled
        _backward(self.indptr, self.indices, self.data, w)
        return w[self.perm]


class SeededCreaseGraph(CreaseGraph):
    """A CreaseGraph whose walks cost one triangular pass per click (see the module docstring); every
    rule on top of the walk (sweep, first region, follow) is CreaseGraph's own."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._seeded: dict[float, SeededFactor] = {}
        self._seeded_lock = threading.Lock()

    def factor(self, gamma: float) -> SeededFactor:
        """The factorisation for pull γ, built on first use (the one-time cost of a graph)."""
        with self._seeded_lock:
            found = self._seeded.get(gamma)
            if found is None:
                found = self._seeded[gamma] = SeededFactor(self.L + sp.identity(self.n) * (gamma * self.mean_degree))
            return found

    def walk(self, prior: np.ndarray | float, seed: np.ndarray, gamma: float) -> np.ndarray:
        factor = self.factor(gamma)
        nodes = np.flatnonzero(seed)
        uniform = np.ndim(prior) == 0  # (L + γI)⁻¹ γc·1 = c·1 (L's rows sum to zero): no solve needed
        if len(nodes) == 0:
            if uniform:
                return np.full(self.n, float(np.clip(prior, 0.0, 1.0)))
            return np.clip(factor.solve(gamma * self.mean_degree * np.asarray(prior, dtype=np.float64)), 0.0, 1.0)
        target = (seed[nodes] > 0).astype(np.float64)
        beta = SEED_WEIGHT * self.mean_degree
        if uniform:  # x = c·1 + the walk from the seeds with targets t − c
            c = float(prior)
            return np.clip(c + factor.seeded(None, nodes, target - c, beta), 0.0, 1.0)
        rhs = gamma * self.mean_degree * np.asarray(prior, dtype=np.float64)
        return np.clip(factor.seeded(rhs, nodes, target, beta), 0.0, 1.0)
