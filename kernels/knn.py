"""k-nearest neighbours of query points among up to millions of points.

CPU: scipy's cKDTree (all cores, `workers=-1`): O((N + M·k) log N), far ahead of brute force on a CPU.
CUDA: brute force in tiles, torch.cdist on centred coordinates and a running top-k, which keeps the
GPU busy and never holds more than one (queries × points) tile. Distances are Euclidean (not squared),
ascending; ties between equally distant points may come in either order.
"""

from __future__ import annotations

import numpy as np
import torch

from segany.errors import SegAnyError
from segany.kernels import resolve_backend

_TILE_ELEMENTS = 1 << 26  # queries × points per distance tile (256 MiB in float32)


def knn(
    points: torch.Tensor, queries: torch.Tensor, k: int, backend: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances (M, k) float32 and indices (M, k) int64 of the k nearest `points` (N, D) to each query (M, D).

    `backend`: "auto" (KD-tree on CPU, tiled brute force on CUDA), "kdtree" or "torch".
    """
    points = torch.as_tensor(points)
    queries = torch.as_tensor(queries, device=points.device)
    if points.dim() != 2 or queries.dim() != 2 or points.shape[1] != queries.shape[1]:
        raise SegAnyError(
            "invalid_array",
            f"points (N, D) and queries (M, D) must agree, got {tuple(points.shape)}, {tuple(queries.shape)}",
        )
    if not 0 < k <= len(points):
        raise SegAnyError("invalid_array", f"k = {k} needs 1 <= k <= the number of points ({len(points)})")
    choice = resolve_backend(backend, points.device, cpu="kdtree", cuda="torch", others=("kdtree", "torch"))
    if choice == "kdtree":
        return _knn_kdtree(points, queries, k)
    return _knn_torch(points, queries, k)


def _knn_kdtree(points: torch.Tensor, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    from scipy.spatial import cKDTree

    tree = cKDTree(points.detach().cpu().double().numpy())
    dists, idx = tree.query(queries.detach().cpu().double().numpy(), k=k, workers=-1)
    dists = np.asarray(dists, dtype=np.float32).reshape(len(queries), k)
    idx = np.asarray(idx, dtype=np.int64).reshape(len(queries), k)
    return torch.from_numpy(dists).to(points.device), torch.from_numpy(idx).to(points.device)


def _knn_torch(points: torch.Tensor, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    dtype = torch.float64 if points.dtype == torch.float64 else torch.float32
    center = points.to(dtype).mean(0, keepdim=True)
    pts = points.to(dtype) - center
    qs = queries.to(dtype) - center
    n, m = len(pts), len(qs)
    p_tile = min(n, max(k, 1 << 16))
    q_tile = max(1, _TILE_ELEMENTS // p_tile)
    out_d = torch.empty((m, k), dtype=dtype, device=pts.device)
    out_i = torch.empty((m, k), dtype=torch.int64, device=pts.device)
    for q0 in range(0, m, q_tile):
        q = qs[q0 : q0 + q_tile]
        best_d = best_i = None
        for p0 in range(0, n, p_tile):
            d = torch.cdist(q, pts[p0 : p0 + p_tile])
            kk = min(k, d.shape[1])
            d, i = torch.topk(d, kk, dim=1, largest=False)
            i = i + p0
            if best_d is not None:
                d, i = torch.cat((best_d, d), 1), torch.cat((best_i, i), 1)
                d, order = torch.topk(d, k, dim=1, largest=False)
                i = torch.gather(i, 1, order)
            best_d, best_i = d, i
        # exact distances for the winners (the matrix form of cdist loses a few bits)
        exact = (q[:, None, :] - pts[best_i]).norm(dim=-1)
        exact, order = torch.sort(exact, dim=1)
        out_d[q0 : q0 + q_tile] = exact
        out_i[q0 : q0 + q_tile] = torch.gather(best_i, 1, order)
    return out_d.float(), out_i
