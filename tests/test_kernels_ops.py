"""KNN, scatter, farthest-point sampling and the scale-gated similarity against simple references."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from segany.errors import SegAnyError
from segany.kernels import resolve_backend, similarity, tune_cpu_allocator
from segany.kernels.fps import farthest_point_sampling
from segany.kernels.knn import knn
from segany.kernels.scatter import HAVE_TORCH_SCATTER, scatter
from segany.kernels.similarity import scale_gated_similarity

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")


def brute_knn(points: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    d = np.sqrt(((queries[:, None, :].astype(np.float64) - points[None, :, :]) ** 2).sum(-1))
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, idx, 1), idx


@pytest.mark.parametrize("backend", ["kdtree", "torch"])
def test_knn_matches_brute_force(backend: str) -> None:
    rng = np.random.default_rng(0)
    points = rng.normal(size=(500, 3)).astype(np.float32) + 100.0  # far from the origin: tests centring
    queries = rng.normal(size=(60, 3)).astype(np.float32) + 100.0
    ref_d, ref_i = brute_knn(points, queries, 7)
    d, i = knn(torch.from_numpy(points), torch.from_numpy(queries), 7, backend=backend)
    assert d.dtype == torch.float32 and i.dtype == torch.int64 and d.shape == (60, 7)
    np.testing.assert_allclose(d.numpy(), ref_d, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(i.numpy(), ref_i)


def test_knn_torch_tiles_across_point_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    import segany.kernels.knn as knn_mod

    monkeypatch.setattr(knn_mod, "_TILE_ELEMENTS", 4096)  # force many query and point tiles on tiny inputs
    rng = np.random.default_rng(1)
    points = rng.uniform(size=(70000, 2)).astype(np.float32)
    queries = rng.uniform(size=(5, 2)).astype(np.float32)
    ref_d, ref_i = brute_knn(points, queries, 4)
    d, i = knn(torch.from_numpy(points), torch.from_numpy(queries), 4, backend="torch")
    np.testing.assert_allclose(d.numpy(), ref_d, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(i.numpy(), ref_i)


def test_knn_rejects_bad_k_and_backend() -> None:
    pts = torch.zeros(3, 3)
    with pytest.raises(SegAnyError):
        knn(pts, pts, 4)
    with pytest.raises(SegAnyError):
        knn(pts, pts, 1, backend="faiss")


def loop_scatter(src: torch.Tensor, index: torch.Tensor, size: int, reduce: str) -> torch.Tensor:
    out = torch.zeros((size, *src.shape[1:]), dtype=src.dtype)
    for j in range(size):
        rows = [src[i] for i in range(len(index)) if int(index[i]) == j]
        if rows:
            stacked = torch.stack(rows)
            out[j] = {
                "sum": stacked.sum(0),
                "mean": stacked.mean(0),
                "max": stacked.max(0).values,
                "min": stacked.min(0).values,
            }[reduce]
    return out


@pytest.mark.parametrize("backend", ["torch", "torch_scatter"])
@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min"])
def test_scatter_matches_loop(backend: str, reduce: str) -> None:
    if backend == "torch_scatter" and not HAVE_TORCH_SCATTER:
        with pytest.raises(SegAnyError):
            scatter(torch.zeros(2), torch.zeros(2, dtype=torch.int64), backend=backend)
        return
    gen = torch.Generator().manual_seed(0)
    src = torch.randn(40, 3, generator=gen, dtype=torch.float64)
    index = torch.randint(0, 9, (40,), generator=gen)
    index[index == 4] = 5  # bucket 4 stays empty: every reduction gives 0 there
    out = scatter(src, index, 11, reduce, backend=backend)
    torch.testing.assert_close(out, loop_scatter(src, index, 11, reduce))
    vec = scatter(src[:, 0], index, 11, reduce, backend=backend)
    torch.testing.assert_close(vec, out[:, 0])


def test_scatter_gradients_agree_and_defaults() -> None:
    src = torch.randn(30, 2, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 6, (30,))
    assert scatter(src, index).shape[0] == int(index.max()) + 1
    assert torch.autograd.gradcheck(lambda s: scatter(s, index, 6, "mean", backend="torch"), (src,))
    if HAVE_TORCH_SCATTER:
        for reduce in ("sum", "mean", "max"):
            (ga,) = torch.autograd.grad(scatter(src, index, 6, reduce, backend="torch").sum(), src)
            (gb,) = torch.autograd.grad(scatter(src, index, 6, reduce, backend="torch_scatter").sum(), src)
            torch.testing.assert_close(ga, gb)
    with pytest.raises(SegAnyError):
        scatter(src, index, 3)
    with pytest.raises(SegAnyError):
        scatter(src, index, reduce="median")


def loop_fps(points: np.ndarray, n: int, start: int) -> list[int]:
    chosen = [start]
    for _ in range(n - 1):
        best, best_d = -1, -1.0
        for i, p in enumerate(points):
            d = min(float(((p - points[j]) ** 2).sum()) for j in chosen)
            if d > best_d:
                best, best_d = i, d
        chosen.append(best)
    return chosen


def test_fps_matches_loop() -> None:
    points = np.random.default_rng(2).normal(size=(120, 3))
    for start in (0, 17):
        out = farthest_point_sampling(torch.from_numpy(points), 12, start=start)
        assert out.dtype == torch.int64
        assert out.tolist() == loop_fps(points, 12, start)
    assert farthest_point_sampling(torch.from_numpy(points).float(), 120).unique().numel() == 120
    with pytest.raises(SegAnyError):
        farthest_point_sampling(torch.from_numpy(points), 121)
    with pytest.raises(SegAnyError):
        farthest_point_sampling(torch.from_numpy(points), 3, start=500)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "torch-blocks"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_similarity_matches_direct_formula(dtype: torch.dtype, fused: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if fused:
        assert similarity.HAVE_NUMBA, "numba is a dependency: the fused CPU engine must be tested"
    else:
        monkeypatch.setattr(similarity, "HAVE_NUMBA", False)  # the engine CUDA and numba-less CPUs run
    gen = torch.Generator().manual_seed(3)
    features = torch.randn(1003, 32, generator=gen).to(dtype)  # 8-row tiles and a 3-row tail
    features[[5, 1001]] = 0  # a zero feature scores 0
    query = torch.randn(32, generator=gen)
    gate = torch.rand(32, generator=gen)
    gate[:4] = 0  # gated-off channels
    out = scale_gated_similarity(features, query, gate, block_rows=96)  # several blocks, ragged tail
    f = features.double()
    g, q = gate.double(), query.double()
    ref = torch.stack([torch.dot(g * fi, g * q) / ((g * fi).norm() * (g * q).norm()) for fi in f])
    ref[[5, 1001]] = 0
    assert out.dtype == torch.float32 and out.shape == (1003,)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(scale_gated_similarity(features, query, gate), out, atol=1e-6, rtol=0)
    assert (scale_gated_similarity(features, query, torch.zeros(32)) == 0).all()


@pytest.mark.parametrize("channels", [8, 6], ids=["8-row-tiles", "plain-loop"])
def test_similarity_fused_channel_counts_and_strided_features(channels: int) -> None:
    gen = torch.Generator().manual_seed(5)
    features = torch.randn(517, 2 * channels, generator=gen)[:, ::2].to(torch.float16)  # not contiguous
    query, gate = torch.randn(channels, generator=gen), torch.rand(channels, generator=gen)
    h = features.double() * gate.double()
    gq = gate.double() * query.double()
    ref = (h @ gq) / (h.norm(dim=1) * gq.norm())
    torch.testing.assert_close(scale_gated_similarity(features, query, gate).double(), ref, atol=1e-5, rtol=0)


def test_similarity_rejects_mismatched_channels() -> None:
    with pytest.raises(SegAnyError):
        scale_gated_similarity(torch.zeros(4, 8), torch.zeros(7), torch.zeros(8))
    with pytest.raises(SegAnyError):
        scale_gated_similarity(torch.zeros(4, 8, dtype=torch.int32), torch.zeros(8), torch.zeros(8))


def test_resolve_backend() -> None:
    cpu = torch.device("cpu")
    assert resolve_backend("auto", cpu, cpu="a", cuda="b") == "a"
    assert resolve_backend("auto", torch.device("cuda"), cpu="a", cuda="b") == "b"
    assert resolve_backend("cuda", cpu, cpu="a", cuda="b") == "b"
    assert resolve_backend("x", cpu, cpu="a", cuda="b", others=("x",)) == "x"
    with pytest.raises(SegAnyError):
        resolve_backend("y", cpu, cpu="a", cuda="b")


def test_tune_cpu_allocator_applies_on_linux() -> None:
    assert tune_cpu_allocator() is sys.platform.startswith("linux")
    assert torch.ones(1 << 20).sum() == 1 << 20  # allocation still works afterwards


@needs_gpu
def test_cuda_ops_match_cpu() -> None:
    gen = torch.Generator().manual_seed(4)
    points, queries = torch.rand(20000, 3, generator=gen), torch.rand(300, 3, generator=gen)
    d_cpu, i_cpu = knn(points, queries, 16)
    d_gpu, i_gpu = knn(points.cuda(), queries.cuda(), 16)
    assert i_gpu.is_cuda
    torch.testing.assert_close(d_gpu.cpu(), d_cpu, atol=1e-5, rtol=1e-5)
    assert (i_gpu.cpu() == i_cpu).float().mean() > 0.999  # equal-distance ties may swap
    src, index = torch.randn(5000, 4, generator=gen), torch.randint(0, 100, (5000,), generator=gen)
    for reduce in ("sum", "mean", "max", "min"):
        torch.testing.assert_close(
            scatter(src.cuda(), index.cuda(), 100, reduce).cpu(), scatter(src, index, 100, reduce)
        )
    pts = torch.rand(5000, 3, generator=gen)
    assert torch.equal(farthest_point_sampling(pts.cuda(), 50).cpu(), farthest_point_sampling(pts, 50))
    feats, q, g = torch.randn(100000, 32, generator=gen), torch.randn(32, generator=gen), torch.rand(32, generator=gen)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        f = feats.to(dtype)
        torch.testing.assert_close(
            scale_gated_similarity(f.cuda(), q.cuda(), g.cuda()).cpu(),
            scale_gated_similarity(f, q, g),
            atol=1e-5,
            rtol=0,
        )
