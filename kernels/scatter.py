"""Scatter reductions: rows of `src` reduced into `dim_size` buckets by `index` (lifting 2D answers to
3D elements: per-pixel values summed, averaged or maxed into per-vertex / per-Gaussian slots).

torch-scatter when it is installed with support for the inputs' device, else torch's own
scatter_reduce; both give the same numbers: empty buckets are 0 for every reduction, mean divides by the count.
Differentiable with respect to `src` either way.
"""

from __future__ import annotations

import importlib.util

import torch

from segany.errors import SegAnyError
from segany.kernels import resolve_backend

REDUCTIONS = ("sum", "mean", "max", "min")
HAVE_TORCH_SCATTER = importlib.util.find_spec("torch_scatter") is not None


def scatter(
    src: torch.Tensor,
    index: torch.Tensor,
    dim_size: int | None = None,
    reduce: str = "sum",
    backend: str = "auto",
) -> torch.Tensor:
    """Reduce rows of `src` (N, ...) into (dim_size, ...) by `index` (N,) int64 along dimension 0.

    `reduce`: sum, mean, max or min. `backend`: "auto" (torch-scatter if installed), "torch_scatter" or
    "torch". `dim_size` defaults to index.max() + 1.
    """
    if reduce not in REDUCTIONS:
        raise SegAnyError("bad_request", f"unknown reduction {reduce!r}: use one of {', '.join(REDUCTIONS)}")
    index = torch.as_tensor(index, device=src.device).to(torch.int64)
    if index.dim() != 1 or len(index) != len(src):
        raise SegAnyError("invalid_array", f"index must be (N,) for src of {len(src)} rows, got {tuple(index.shape)}")
    if dim_size is None:
        dim_size = int(index.max()) + 1 if len(index) else 0
    if len(index) and (int(index.min()) < 0 or int(index.max()) >= dim_size):
        raise SegAnyError("invalid_array", f"scatter indices must lie in [0, {dim_size})")
    default = "torch_scatter" if _torch_scatter_runs_on(src.device) else "torch"
    choice = resolve_backend(backend, src.device, cpu=default, cuda=default, others=("torch_scatter", "torch"))
    if choice == "torch_scatter":
        if not _torch_scatter_runs_on(src.device):
            raise SegAnyError(
                "unsupported", f"torch-scatter is not installed with {src.device.type} support; use backend='torch'"
            )
        import torch_scatter

        return torch_scatter.scatter(src, index, dim=0, dim_size=dim_size, reduce=reduce)
    expanded = index.reshape(-1, *([1] * (src.dim() - 1))).expand_as(src)
    out = src.new_zeros((dim_size, *src.shape[1:]))
    op = {"sum": "sum", "mean": "mean", "max": "amax", "min": "amin"}[reduce]
    return out.scatter_reduce(0, expanded, src, op, include_self=False)


def _torch_scatter_runs_on(device: torch.device) -> bool:
    """torch-scatter wheels built without CUDA import fine but fail on CUDA tensors."""
    if not HAVE_TORCH_SCATTER:
        return False
    if device.type != "cuda":
        return True
    import torch_scatter  # noqa: F401  (registers torch.ops.torch_scatter)

    return int(torch.ops.torch_scatter.cuda_version()) != -1
