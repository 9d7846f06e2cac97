"""Device-agnostic compute kernels: torch tensors in, torch tensors out, on the device of the inputs.

- mesh_raster: triangle id, depth, barycentrics and normals per pixel; attribute interpolation with
  gradients; shading; picking (torch z-buffer on CPU and CUDA, Embree on CPU).
- splat_raster: 3D Gaussian splatting of colours and any feature channels, with gradients.
- volume: ray marching through a density grid built from a point cloud.
- knn: k nearest neighbours (KD-tree on CPU, tiled brute force on CUDA).
- scatter: sum / mean / max / min reductions by index (torch-scatter when installed).
- fps: farthest-point sampling.
- similarity: SAGA's scale-gated cosine similarity of per-Gaussian features to a query, in one pass.
- labels: SAS's label query (every source's scores, capability fusion, argmax, LERF score) in one read of
  the fp16 features (CPU; its numba loops in label_loops).

Functions that have several engines take `backend=`; "auto" picks by the inputs' device
(`resolve_backend`, the one place that rule lives). `tune_cpu_allocator` is for the backend process to
call once at start (the kernel bench does).
"""

from __future__ import annotations

import ctypes
import sys

import torch

from segany.errors import SegAnyError


def resolve_backend(backend: str, device: torch.device, cpu: str, cuda: str, others: tuple[str, ...] = ()) -> str:
    """The engine to run: for "auto" the `cpu` or `cuda` engine by the inputs' device; "cpu" / "cuda" force
    that device's engine; any name in `others` runs as asked. Unknown names raise an actionable error."""
    if backend == "auto":
        return cuda if device.type == "cuda" else cpu
    if backend in ("cpu", "cuda"):
        return cpu if backend == "cpu" else cuda
    if backend in others:
        return backend
    names = ", ".join(("auto", "cpu", "cuda", *others))
    raise SegAnyError("bad_request", f"unknown backend {backend!r}: use one of {names}")


_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_cpu_allocator() -> bool:
    """Keep freed memory in the process instead of handing it back to the OS (glibc only).

    torch's CPU kernels allocate and free large temporaries on every op. By default glibc serves blocks
    over 128 KiB with fresh mmaps and trims freed heap memory, so each new large tensor pays page faults;
    on a busy machine that costs the mesh rasterizer much of its time (docs/journal.md). Process-wide and
    irreversible: the price is that the process keeps
    its peak heap. Returns whether the settings took effect (False on macOS, Windows, non-glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))
