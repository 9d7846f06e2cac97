"""`segany bench kernels`: every kernel figure next to its baseline, measured in the same run.

- mesh raster (ids + depth + barycentrics + normals) of a ~100K-triangle mesh at 512² vs Embree casting the
  same primary rays (the BVH is built outside the timing, which favours Embree), in 21 turns, with the
  median and spread of the per-turn ratios;
- scale-gated similarity over 1M × 32 features, fp32 and fp16, as GB/s read vs a plain copy of the same
  bytes (copy bandwidth counted STREAM-style, read + write: the machine's memory bandwidth);
- KNN k = 16 over 1M points (queries = the points) vs scipy cKDTree called directly;
- farthest-point sampling vs the same greedy loop in numpy; scatter-mean vs torch.scatter_reduce;
  interpolation of 32-channel vertex features with backward vs a plain gather-and-sum;
- splat / volume rows from `segany.bench.kernels_splat.bench_rows(quick)` when that module exists.
On a machine with CUDA the raster and the similarity are also timed on the GPU.

torch runs with SEGANY_BENCH_THREADS threads (default 1): embreex casts on one thread, and on a shared
or busy machine torch's OpenMP threads wait on each other so much that multi-threaded figures mean little.
The process runs with `segany.kernels.tune_cpu_allocator()` applied, as the backend should (see there).
Each figure and its baseline are timed in turns (`interleaved`), so load drift hits both alike.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..threads import bench_threads, torch_threads
from .report import Row, timeit, write_report


def run(out_dir: Path, quick: bool = False) -> dict:
    with torch_threads(bench_threads()):
        return _run(out_dir, quick)


def _run(out_dir: Path, quick: bool) -> dict:
    from segany.kernels import tune_cpu_allocator

    rows: list[Row] = []
    extra: dict[str, Any] = {
        "quick": quick,
        "torch_threads": torch.get_num_threads(),
        "cpu_allocator_tuned": tune_cpu_allocator(),
    }
    rows += _mesh_rows(quick, extra)
    rows += _similarity_rows(quick, extra, "cpu")
    rows += _knn_rows(quick, extra)
    rows += _fps_rows(quick)
    rows += _scatter_rows(quick, extra)
    if torch.cuda.is_available():
        rows += _mesh_rows(quick, extra, device="cuda")
        rows += _similarity_rows(quick, extra, "cuda")
    if importlib.util.find_spec("segany.bench.kernels_splat") is not None:
        from .kernels_splat import bench_rows

        rows += bench_rows(quick)
    else:
        extra["splat_rows"] = "segany.bench.kernels_splat is not there yet"
    return write_report("kernels", out_dir, rows, extra)


def bumpy_sphere(n_lat: int, n_lon: int) -> tuple[np.ndarray, np.ndarray]:
    """A closed, lumpy latitude-longitude sphere with 2·n_lon·(n_lat − 1) triangles (deterministic)."""
    theta = np.linspace(0, np.pi, n_lat + 1)[1:-1]
    phi = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    r = 1 + 0.08 * np.sin(5 * t) * np.cos(7 * p) + 0.04 * np.sin(13 * p + 3 * t)
    ring = np.stack([r * np.sin(t) * np.cos(p), r * np.sin(t) * np.sin(p), r * np.cos(t)], -1).reshape(-1, 3)
    vertices = np.concatenate([ring, [[0, 0, 1], [0, 0, -1]]]).astype(np.float32)
    top, bottom = len(vertices) - 2, len(vertices) - 1
    idx = np.arange((n_lat - 1) * n_lon).reshape(n_lat - 1, n_lon)
    a, b = idx[:-1], np.roll(idx[:-1], -1, 1)
    c, d = idx[1:], np.roll(idx[1:], -1, 1)
    faces = [
        np.stack([a, c, b], -1).reshape(-1, 3),
        np.stack([b, c, d], -1).reshape(-1, 3),
        np.stack([np.full(n_lon, top), idx[0], np.roll(idx[0], -1)], -1),
        np.stack([np.full(n_lon, bottom), np.roll(idx[-1], -1), idx[-1]], -1),
    ]
    return vertices, np.concatenate(faces).astype(np.int64)


def interleaved(fns: list[Callable[[], Any]], repeat: int) -> list[float]:
    """Median wall seconds of each function, run in turns (see `interleaved_times`)."""
    return [float(np.median(t)) for t in interleaved_times(fns, repeat)]


def interleaved_times(fns: list[Callable[[], Any]], repeat: int) -> np.ndarray:
    """(len(fns), repeat) wall seconds of the functions run in turns after one warm-up turn: on a shared
    machine the load drifts, and taking turns exposes a figure and its baseline to the same drift."""
    for fn in fns:
        fn()
    times = np.empty((len(fns), repeat))
    for i in range(repeat):
        for j, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[j, i] = time.perf_counter() - t0
    return times


def paired_ratio(times: np.ndarray) -> dict[str, float]:
    """Median and spread of the per-turn ratios of `times[0]` to `times[1]`: within a turn both saw the same
    load, so these ratios scatter far less than the times themselves on a busy machine."""
    ratios = times[0] / times[1]
    q25, median, q75 = np.percentile(ratios, [25, 50, 75])
    return {"median": float(median), "q25": float(q25), "q75": float(q75), "min": float(ratios.min()),
            "max": float(ratios.max()), "pairs": len(ratios)}  # fmt: skip


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _mesh_rows(quick: bool, extra: dict[str, Any], device: str = "cpu") -> list[Row]:
    from embreex import rtcore_scene
    from embreex.mesh_construction import TriangleMesh

    from segany.kernels.mesh_raster import interpolate, primary_rays, rasterize_mesh

    n_lat, size = (40, 128) if quick else (225, 512)
    vertices, faces = bumpy_sphere(n_lat, n_lat - 1)
    viewmat = np.eye(4, dtype=np.float32)
    viewmat[2, 3] = 3.0
    f = size * 1.37
    k = np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]], dtype=np.float32)
    v_t, f_t = torch.from_numpy(vertices).to(device), torch.from_numpy(faces).to(device)
    vm_t, k_t = torch.from_numpy(viewmat[None]).to(device), torch.from_numpy(k[None]).to(device)

    def raster() -> Any:
        out = rasterize_mesh(v_t, f_t, vm_t, k_t, size, size)
        _sync(device)
        return out

    scene = rtcore_scene.EmbreeScene()
    TriangleMesh(scene, vertices[faces])
    origins, dirs = primary_rays(viewmat, k, size, size)
    repeat = 3 if quick else 9
    times = interleaved_times([raster, lambda: scene.run(origins, dirs, output=1)], 3 if quick else 21)
    t_torch, t_embree = np.median(times, axis=1)
    paired = paired_ratio(times)
    case = f"mesh raster {len(faces) // 1000}K tris {size}² ({device})"
    baseline = (
        f"embreex primary rays (CPU, 1 thread); paired ratio {paired['median']:.3f}, "
        f"IQR {paired['q25']:.3f}–{paired['q75']:.3f}, range {paired['min']:.3f}–{paired['max']:.3f} "
        f"over {paired['pairs']} turns"
    )
    rows = [Row(case, "time", float(t_torch), "s", baseline, float(t_embree), "<= embree")]
    result = raster()
    hit = rasterize_mesh(
        torch.from_numpy(vertices), torch.from_numpy(faces), viewmat[None], k[None], size, size, "embree"
    )
    agree = float((result.tri_ids.cpu() == hit.tri_ids).float().mean())
    extra[f"mesh_{device}"] = {
        "faces": len(faces),
        "pixels_covered": float(result.mask.float().mean()),
        "ids_equal_to_embree": agree,
        "paired_ratio_to_embree": paired,
    }
    attr = torch.randn(len(vertices), 32, device=device, requires_grad=True)

    def ours() -> None:
        interpolate(attr, f_t, result).square().sum().backward()
        _sync(device)

    def plain() -> None:
        tri = result.tri_ids.clamp_min(0)
        vals = (attr[f_t[tri]] * result.bary[..., None]).sum(-2) * result.mask[..., None]
        vals.square().sum().backward()
        _sync(device)

    rows.append(
        Row(
            f"interpolate 32 ch {size}² fwd+bwd ({device})",
            "time",
            timeit(ours, repeat=repeat),
            "s",
            "gather + weighted sum",
            timeit(plain, repeat=repeat),
        )
    )
    return rows


def _similarity_rows(quick: bool, extra: dict[str, Any], device: str) -> list[Row]:
    from segany.kernels.similarity import scale_gated_similarity

    n = 50_000 if quick else (6_000_000 if device == "cuda" else 1_000_000)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for dtype in (torch.float32, torch.float16):
        feats = torch.randn(n, 32, generator=gen).to(dtype).to(device)
        query, gate = torch.randn(32, device=device), torch.rand(32, device=device)
        dst = torch.empty_like(feats)
        nbytes = feats.numel() * feats.element_size()

        def copy(src: torch.Tensor = feats, out: torch.Tensor = dst) -> None:
            out.copy_(src)
            _sync(device)

        def query_all(src: torch.Tensor = feats, q: torch.Tensor = query, g: torch.Tensor = gate) -> None:
            scale_gated_similarity(src, q, g)
            _sync(device)

        t_sim, t_copy = interleaved([query_all, copy], 7)
        name = str(dtype).removeprefix("torch.")
        copy_bw = 2 * nbytes / t_copy / 1e9  # read + write
        rows.append(
            Row(
                f"similarity {n // 1000}K × 32 {name} ({device})",
                "bandwidth",
                nbytes / t_sim / 1e9,
                "GB/s",
                "copy of the same bytes (read + write)",
                copy_bw,
                ">= 0.7 × copy",
            )
        )
        extra[f"similarity_{name}_{device}"] = {"seconds": t_sim, "copy_seconds": t_copy, "bytes": nbytes}
        del feats, dst
    return rows


def _knn_rows(quick: bool, extra: dict[str, Any]) -> list[Row]:
    from scipy.spatial import cKDTree

    from segany.kernels.knn import knn

    n = 20_000 if quick else 1_000_000
    points = torch.rand(n, 3, generator=torch.Generator().manual_seed(1))
    pts_np = points.numpy().astype(np.float64)
    t_scipy = timeit(lambda: cKDTree(pts_np).query(pts_np, k=16, workers=-1), repeat=1 if not quick else 3)
    t_ours = timeit(lambda: knn(points, points, 16), repeat=1 if not quick else 3)
    extra["knn"] = {"points": n, "queries": n, "k": 16}
    return [Row(f"knn k=16 {n // 1000}K points (build + query)", "time", t_ours, "s", "scipy cKDTree", t_scipy)]


def _fps_numpy(points: np.ndarray, n: int) -> np.ndarray:
    out = np.empty(n, dtype=np.int64)
    nearest = np.full(len(points), np.inf)
    current = 0
    for i in range(n):
        out[i] = current
        nearest = np.minimum(nearest, ((points - points[current]) ** 2).sum(1))
        current = int(np.argmax(nearest))
    return out


def _fps_rows(quick: bool) -> list[Row]:
    from segany.kernels.fps import farthest_point_sampling

    n, m = (5_000, 50) if quick else (100_000, 1000)
    points = torch.rand(n, 3, generator=torch.Generator().manual_seed(2))
    pts_np = points.numpy()
    t_ours = timeit(lambda: farthest_point_sampling(points, m), repeat=3)
    t_np = timeit(lambda: _fps_numpy(pts_np, m), repeat=3)
    return [Row(f"fps {m} of {n // 1000}K points", "time", t_ours, "s", "numpy greedy loop", t_np)]


def _scatter_rows(quick: bool, extra: dict[str, Any]) -> list[Row]:
    from segany.kernels.scatter import HAVE_TORCH_SCATTER, scatter

    n, buckets = (50_000, 5_000) if quick else (1_000_000, 100_000)
    gen = torch.Generator().manual_seed(3)
    src = torch.randn(n, 32, generator=gen)
    index = torch.randint(0, buckets, (n,), generator=gen)
    extra["scatter_backend"] = "torch_scatter" if HAVE_TORCH_SCATTER else "torch"
    t_ours = timeit(lambda: scatter(src, index, buckets, "mean"), repeat=3)
    t_torch = timeit(lambda: scatter(src, index, buckets, "mean", backend="torch"), repeat=3)
    return [
        Row(
            f"scatter mean {n // 1000}K × 32 → {buckets // 1000}K", "time", t_ours, "s", "torch.scatter_reduce", t_torch
        )
    ]
