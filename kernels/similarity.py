"""SAGA's scale-gated similarity query: score_i = cos(g ⊙ f_i, g ⊙ q) for every Gaussian i.

g = g(s) is the gate SAGA's scale MLP gives for the physical scale s of the click, f_i the per-Gaussian
affinity feature, q the query feature. With h_i = g ⊙ f_i and gq = g ⊙ q:

    score_i = (h_i · gq / ‖gq‖) / ‖h_i‖

Memory bandwidth is the limit (a click scores millions of Gaussians), so the features are read once.
On the CPU a fused numba loop widens each row to float32 in registers (fp16 / bf16 features accumulate in
fp32) and forms both dot products in that one read, 8 rows at a time in AVX vectors (`_tile8`). torch
ops cannot do this: each op is another pass over the features, so a block-wise torch engine stays far from
the copy bandwidth the fused loop nearly reaches (figures: docs/journal.md). On CUDA, or where numba is
missing, the features go block by block (sized to stay in cache) through torch matrix-vector products. A
zero gated feature scores 0.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from segany.errors import SegAnyError

_CPU_BLOCK_ROWS = 16384
_CUDA_BLOCK_ROWS = 1 << 18
_LANES = 8  # float32 lanes of an AVX register
_PREFETCH_ROWS = 128  # 8 KiB ahead for 32 fp16 channels; the distance barely matters (docs/journal.md)
HAVE_NUMBA = importlib.util.find_spec("numba") is not None


def scale_gated_similarity(
    features: torch.Tensor, query: torch.Tensor, gate: torch.Tensor, block_rows: int | None = None
) -> torch.Tensor:
    """Scores (N,) float32 in [-1, 1] of `features` (N, C) (float32, float16 or bfloat16) against `query`
    (C,) under the scale gate `gate` (C,). `block_rows` sizes the blocks of the torch engine (CUDA, or a
    CPU without numba); the fused CPU engine reads each row once and needs no blocks."""
    _check_features(features)
    n, c = features.shape
    dev = features.device
    query = torch.as_tensor(query, device=dev).to(torch.float32).reshape(-1)
    gate = torch.as_tensor(gate, device=dev).to(torch.float32).reshape(-1)
    if len(query) != c or len(gate) != c:
        raise SegAnyError("invalid_array", f"query and gate must have {c} channels, got {len(query)} and {len(gate)}")
    gq = gate * query
    gq_norm = float(gq.norm())
    if n == 0 or gq_norm == 0.0:
        return torch.zeros(n, dtype=torch.float32, device=dev)
    if dev.type == "cpu" and HAVE_NUMBA:
        return _fused_cpu(features, gate, gq / gq_norm)
    return _torch_blocks(
        features, gate, gq / gq_norm, block_rows or (_CUDA_BLOCK_ROWS if dev.type == "cuda" else _CPU_BLOCK_ROWS)
    )


CLICK_GROUP = 4  # clicks whose scores one read of the features forms; more clicks read the features again


def click_similarity(
    features: torch.Tensor, queries: torch.Tensor, positive: torch.Tensor, gate: torch.Tensor
) -> torch.Tensor:
    """SAGA's combined click scores (N,) float32 in [0, 1]: each element's largest gated cosine to a positive
    query, clamped at 0, and 0 where some negative query is at least as similar (a tie removes). `queries`
    (Q, C), `positive` (Q,) bool, `gate` (C,). A zero gated query scores 0 everywhere, as in
    `scale_gated_similarity`.

    The fused CPU engine reads the features once per CLICK_GROUP clicks and combines in the same pass, so
    a click query costs one read of the features and one write of the scores rather than a read per click
    plus a pass per combining op (figures: docs/performance.md)."""
    _check_features(features)
    n, c = features.shape
    dev = features.device
    queries = torch.as_tensor(queries, device=dev).to(torch.float32)
    positive = torch.as_tensor(positive, device=dev).to(torch.bool).reshape(-1)
    gate = torch.as_tensor(gate, device=dev).to(torch.float32).reshape(-1)
    if queries.dim() != 2 or queries.shape[1] != c or len(queries) != len(positive) or len(gate) != c:
        raise SegAnyError(
            "invalid_array",
            f"queries (Q, {c}), positive (Q,) and gate ({c},) must match, got {tuple(queries.shape)}, "
            f"{tuple(positive.shape)} and {tuple(gate.shape)}",
        )
    gq = gate * queries
    norms = gq.norm(dim=1, keepdim=True)
    unit = torch.where(norms > 0, gq / norms.clamp_min(1e-30), torch.zeros_like(gq))  # a zero query: cosine 0
    if dev.type == "cpu" and HAVE_NUMBA and n > 0 and len(queries) > 0:
        return _fused_clicks(features, gate, unit, positive)
    best_pos = torch.full((n,), -math.inf, device=dev)
    best_neg = torch.full((n,), -math.inf, device=dev)
    rows = _CUDA_BLOCK_ROWS if dev.type == "cuda" else _CPU_BLOCK_ROWS
    for w, p in zip(unit, positive.tolist(), strict=True):
        sim = _torch_blocks(features, gate, w, rows) if n else torch.zeros(0, device=dev)
        torch.maximum(best_pos, sim, out=best_pos) if p else torch.maximum(best_neg, sim, out=best_neg)
    return torch.where(best_neg >= best_pos, 0.0, best_pos.clamp(0.0, 1.0))


def _check_features(features: torch.Tensor) -> None:
    if features.dim() != 2:
        raise SegAnyError("invalid_array", f"features must be (N, C), got {tuple(features.shape)}")
    if features.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise SegAnyError("invalid_array", f"features must be float32, float16 or bfloat16, not {features.dtype}")


def _torch_blocks(features: torch.Tensor, gate: torch.Tensor, unit_gq: torch.Tensor, rows: int) -> torch.Tensor:
    """Block-wise torch engine: each block is widened to float32 once and both products run on the cached
    block, so no (N, C) temporary is ever made."""
    n, c = features.shape
    dev = features.device
    weight = gate * unit_gq
    gate_sq = gate * gate
    scores = torch.empty(n, dtype=torch.float32, device=dev)
    den = torch.empty(min(rows, n), dtype=torch.float32, device=dev)
    widened = torch.empty((min(rows, n), c), dtype=torch.float32, device=dev)
    squares = torch.empty((min(rows, n), c), dtype=torch.float32, device=dev)
    for start in range(0, n, rows):
        block = features[start : start + rows]
        m = len(block)
        if block.dtype != torch.float32 or not block.is_contiguous():
            block = widened[:m].copy_(block)
        out = scores[start : start + m]
        torch.mv(block, weight, out=out)
        torch.mv(torch.mul(block, block, out=squares[:m]), gate_sq, out=den[:m])
        # a zero gated feature has a zero numerator too: 0 · rsqrt(tiny) = 0
        out.mul_(den[:m].clamp_min_(1e-30).rsqrt_()).clamp_(-1.0, 1.0)
    return scores


def _fused_cpu(features: torch.Tensor, gate: torch.Tensor, unit_gq: torch.Tensor) -> torch.Tensor:
    """Fused numba engine on the calling thread: the pass is memory-bound, and splitting its rows over two
    threads was slower on a shared 2-core machine (docs/journal.md), so it stays serial."""
    n, c = features.shape
    feats = features.detach().contiguous()
    if feats.dtype != torch.float32:
        feats = feats.view(torch.int16)  # numba has no half types: the kernel widens the raw bits
    rows = feats.numpy()
    scores = np.empty(n, dtype=np.float32)
    kernel = _kernel(c, str(features.dtype).removeprefix("torch."))
    kernel(rows, gate.detach().numpy(), unit_gq.detach().numpy(), scores)
    return torch.from_numpy(scores)


@functools.cache
def _kernel(channels: int, dtype: str) -> Callable[..., None]:
    """The fused loop compiled for one channel count and feature dtype. Rows go 8 at a time through
    `_tile8` when the channels fill whole 8-float vectors; other rows through a plain loop."""
    from numba import njit

    widen = _scalar_widen(dtype)

    # reassoc lets LLVM vectorise the two reductions; no approximate sqrt or division
    @njit(fastmath={"reassoc", "contract"}, nogil=True, boundscheck=False)
    def rows_loop(rows, gate, unit_gq, out, start):  # type: ignore[no-untyped-def]
        for i in range(start, rows.shape[0]):
            num = np.float32(0.0)
            den = np.float32(0.0)
            for j in range(channels):  # a constant count: LLVM unrolls the row into whole vectors
                h = widen(rows[i, j]) * gate[j]
                num += h * unit_gq[j]
                den += h * h
            # a zero gated feature has a zero numerator too: 0 / sqrt(tiny) = 0
            out[i] = min(max(num / np.sqrt(max(den, np.float32(1e-30))), np.float32(-1.0)), np.float32(1.0))

    if channels % _LANES:

        @njit(nogil=True)
        def plain(rows, gate, unit_gq, out):  # type: ignore[no-untyped-def]
            rows_loop(rows, gate, unit_gq, out, 0)

        return plain
    tile8 = _tile8(channels, dtype)

    @njit(nogil=True, boundscheck=False)
    def kernel(rows, gate, unit_gq, out):  # type: ignore[no-untyped-def]
        full = rows.shape[0] - rows.shape[0] % _LANES
        for start in range(0, full, _LANES):
            tile8(rows, gate, unit_gq, out, start)
        rows_loop(rows, gate, unit_gq, out, full)

    return kernel


def _scalar_widen(dtype: str) -> Callable[..., float]:
    """One feature element to float32: numba has no half types, so fp16 / bf16 arrive as int16 bits."""
    from numba import njit, types
    from numba.core.extending import intrinsic

    if dtype == "float32":
        return njit(inline="always")(lambda x: x)

    @intrinsic
    def widen(typingctx, bits):  # type: ignore[no-untyped-def]
        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            return _widen_ir(builder, args[0], dtype)

        return types.float32(types.int16), codegen

    return widen


def _widen_ir(builder: Any, bits: Any, dtype: str) -> Any:
    """LLVM IR widening int16 bits (a scalar or a vector) of fp16 / bf16 to float32: fp16 through the half
    type (one vcvtph2ps per 8 values on F16C CPUs), bf16 by moving the bits into the top of a float."""
    from llvmlite import ir

    count = bits.type.count if isinstance(bits.type, ir.VectorType) else None

    def of(t: Any) -> Any:
        return t if count is None else ir.VectorType(t, count)

    if dtype == "float16":
        return builder.fpext(builder.bitcast(bits, of(ir.HalfType())), of(ir.FloatType()))
    i32 = of(ir.IntType(32))
    sixteen = ir.Constant(i32, 16 if count is None else [16] * count)
    return builder.bitcast(builder.shl(builder.zext(bits, i32), sixteen), of(ir.FloatType()))


class _Vectors:
    """LLVM IR pieces both fused tiles share, bound to one builder: 8-float vectors, unaligned loads, the
    transpose-sum and a tile's gated dot products."""

    def __init__(self, builder: Any) -> None:
        from llvmlite import ir

        self.ir, self.builder = ir, builder
        self.f8 = ir.VectorType(ir.FloatType(), _LANES)
        self.i64, self.i32, self.i8p = ir.IntType(64), ir.IntType(32), ir.IntType(8).as_pointer()

    def const(self, value: float) -> Any:
        return self.ir.Constant(self.f8, [value] * _LANES)

    def fn(self, name: str, arity: int) -> Any:
        from numba.core import cgutils

        f8 = self.f8
        return cgutils.get_or_insert_function(
            self.builder.module, self.ir.FunctionType(f8, [f8] * arity), f"llvm.{name}.v8f32"
        )

    def load(self, ptr: Any, index: Any, vec: Any = None) -> Any:
        b = self.builder
        return b.load(b.bitcast(b.gep(ptr, [index]), (vec or self.f8).as_pointer()), align=1)

    def store(self, value: Any, ptr: Any, index: Any) -> None:
        b = self.builder
        b.store(value, b.bitcast(b.gep(ptr, [index]), self.f8.as_pointer()), align=1)

    def transpose_sum(self, vs: list[Any]) -> Any:
        """Eight 8-lane partial sums → one vector of their eight totals (a shuffle-and-add tree)."""
        b, ir = self.builder, self.ir
        for lo, hi in (
            ([0, 8, 2, 10, 4, 12, 6, 14], [1, 9, 3, 11, 5, 13, 7, 15]),
            ([0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]),
            ([0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]),
        ):
            masks = [ir.Constant(ir.VectorType(self.i32, _LANES), m) for m in (lo, hi)]
            vs = [
                b.fadd(b.shuffle_vector(x, y, masks[0]), b.shuffle_vector(x, y, masks[1]))
                for x, y in zip(vs[::2], vs[1::2], strict=True)
            ]
        return vs[0]

    def tile_sums(
        self, data: Any, start: Any, channels: int, dtype: str, gate: Any, weights: list[list[Any]]
    ) -> tuple[Any, list[Any]]:
        """Rows start..start+7: the vector of their gated squared norms and, per weight set, the vector of
        their gated dot products with it (`weights[q]` holds a set's 8-float vectors)."""
        from numba.core import cgutils

        b, ir, i64, i32 = self.builder, self.ir, self.i64, self.i32
        fmuladd = self.fn("fmuladd", 3)
        vectors = range(channels // _LANES)
        gates = [self.load(gate, ir.Constant(i64, _LANES * k)) for k in vectors]
        if dtype != "float32":
            # hint the rows _PREFETCH_ROWS ahead into cache a line at a time (never faults past the end):
            # with the hardware prefetcher alone fp16 waits on memory; fp32 gains nothing and is left
            # without (docs/journal.md)
            prefetch_type = ir.FunctionType(ir.VoidType(), [self.i8p, i32, i32, i32])  # address, read, locality, data
            prefetch = cgutils.get_or_insert_function(b.module, prefetch_type, "llvm.prefetch.p0i8")
            ahead = b.mul(b.add(start, ir.Constant(i64, _PREFETCH_ROWS)), ir.Constant(i64, channels))
            for line in range(0, _LANES * channels * 2, 64):
                at = b.gep(data, [b.add(ahead, ir.Constant(i64, line // 2))])
                b.call(prefetch, [b.bitcast(at, self.i8p), *(ir.Constant(i32, v) for v in (0, 3, 1))])
        nums: list[list[Any]] = [[] for _ in weights]
        dens = []
        for r in range(_LANES):
            row = b.mul(b.add(start, ir.Constant(i64, r)), ir.Constant(i64, channels))
            num = [self.const(0.0) for _ in weights]
            den = self.const(0.0)
            for k in vectors:
                index = b.add(row, ir.Constant(i64, _LANES * k))
                if dtype == "float32":
                    x = self.load(data, index)
                else:
                    x = _widen_ir(b, self.load(data, index, ir.VectorType(ir.IntType(16), _LANES)), dtype)
                h = b.fmul(x, gates[k])
                num = [b.call(fmuladd, [h, w[k], acc]) for w, acc in zip(weights, num, strict=True)]
                den = b.call(fmuladd, [h, h, den])
            for q, acc in enumerate(num):
                nums[q].append(acc)
            dens.append(den)
        return self.transpose_sum(dens), [self.transpose_sum(v) for v in nums]


def _tile8(channels: int, dtype: str) -> Callable[..., None]:
    """Scores of rows start..start+7 written as LLVM vector IR. Each row's two dot products end as 8-lane
    partial sums; a shuffle-and-add tree (a transpose) reduces the 16 vectors to two vectors of 8 sums,
    so the horizontal sums cost about a third of per-row reductions, and sqrt / divide / clamp run on 8
    rows at once, which beats a plain per-row loop (docs/journal.md)."""
    from llvmlite import ir
    from numba import types
    from numba.core.extending import intrinsic

    @intrinsic
    def tile8(typingctx, rows, gate, unit_gq, out, start):  # type: ignore[no-untyped-def]
        def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
            data, g, w, o = (
                context.make_array(t)(context, builder, a).data for t, a in zip(sig.args[:4], args[:4], strict=True)
            )
            v = _Vectors(builder)
            sqrt, maxnum, minnum = v.fn("sqrt", 1), v.fn("maxnum", 2), v.fn("minnum", 2)
            weights = [v.load(w, ir.Constant(v.i64, _LANES * k)) for k in range(channels // _LANES)]
            den, (num,) = v.tile_sums(data, args[4], channels, dtype, g, [weights])
            score = builder.fdiv(num, builder.call(sqrt, [builder.call(maxnum, [den, v.const(1e-30)])]))
            score = builder.call(minnum, [builder.call(maxnum, [score, v.const(-1.0)]), v.const(1.0)])
            v.store(score, o, args[4])
            return context.get_dummy_value()

        return types.void(rows, gate, unit_gq, out, start), codegen

    return tile8


def _fused_clicks(
    features: torch.Tensor, gate: torch.Tensor, unit: torch.Tensor, positive: torch.Tensor
) -> torch.Tensor:
    """`click_similarity` on the calling thread, CLICK_GROUP queries per read of the features; between
    groups each element's best positive and negative cosines wait in two (N,) arrays."""
    n, c = features.shape
    feats = features.detach().contiguous()
    dtype = str(features.dtype).removeprefix("torch.")
    rows = (feats if feats.dtype == torch.float32 else feats.view(torch.int16)).numpy()
    weights = unit.detach().numpy()
    signs = np.where(positive.numpy(), np.float32(1.0), np.float32(-1.0)).astype(np.float32)
    q = len(weights)
    several = q > CLICK_GROUP
    best_pos = np.empty(n if several else 0, dtype=np.float32)
    best_neg = np.empty(n if several else 0, dtype=np.float32)
    out = np.empty(n, dtype=np.float32)
    g = gate.detach().numpy()
    for start in range(0, q, CLICK_GROUP):
        stop = min(start + CLICK_GROUP, q)
        kernel = _clicks_kernel(c, dtype, stop - start)
        kernel(rows, g, np.ascontiguousarray(weights[start:stop]), signs[start:stop], best_pos, best_neg, out,
               start == 0, stop == q)  # fmt: skip
    return torch.from_numpy(out)


@functools.cache
def _clicks_kernel(channels: int, dtype: str, queries: int) -> Callable[..., None]:
    """The fused click loop for one channel count, feature dtype and number of queries (1..CLICK_GROUP):
    8 rows at a time through `_clicks_tile8` when the channels fill whole vectors, other rows one by one.
    `first` starts from no click seen, `last` writes the combined score instead of the running bests."""
    from numba import njit

    widen = _scalar_widen(dtype)

    @njit(fastmath={"reassoc", "contract"}, nogil=True, boundscheck=False)
    def rows_loop(rows, gate, weights, signs, best_pos, best_neg, out, start, first, last):  # type: ignore[no-untyped-def]
        for i in range(start, rows.shape[0]):
            den = np.float32(0.0)
            for j in range(channels):
                h = widen(rows[i, j]) * gate[j]
                den += h * h
            norm = np.sqrt(max(den, np.float32(1e-30)))
            pos = np.float32(-np.inf) if first else best_pos[i]
            neg = np.float32(-np.inf) if first else best_neg[i]
            for k in range(queries):
                num = np.float32(0.0)
                for j in range(channels):
                    num += widen(rows[i, j]) * gate[j] * weights[k, j]
                if signs[k] > 0:
                    pos = max(pos, num / norm)
                else:
                    neg = max(neg, num / norm)
            if last:
                out[i] = np.float32(0.0) if neg >= pos else min(max(pos, np.float32(0.0)), np.float32(1.0))
            else:
                best_pos[i] = pos
                best_neg[i] = neg

    if channels % _LANES:

        @njit(nogil=True)
        def plain(rows, gate, weights, signs, best_pos, best_neg, out, first, last):  # type: ignore[no-untyped-def]
            rows_loop(rows, gate, weights, signs, best_pos, best_neg, out, 0, first, last)

        return plain
    tile8 = _clicks_tile8(channels, dtype, queries)

    @njit(nogil=True, boundscheck=False)
    def kernel(rows, gate, weights, signs, best_pos, best_neg, out, first, last):  # type: ignore[no-untyped-def]
        full = rows.shape[0] - rows.shape[0] % _LANES
        for start in range(0, full, _LANES):
            tile8(rows, gate, weights, signs, best_pos, best_neg, out, start, first, last)
        rows_loop(rows, gate, weights, signs, best_pos, best_neg, out, full, first, last)

    return kernel


def _clicks_tile8(channels: int, dtype: str, queries: int) -> Callable[..., None]:
    """Combined click scores of rows start..start+7 as LLVM vector IR: the rows' gated norms and their dot
    products with every query come from one read (`_Vectors.tile_sums`); the running best positive and
    negative cosines are vectors, chosen by each query's sign at run time, so one kernel serves every mix
    of positive and negative clicks."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.core.extending import intrinsic

    @intrinsic
    def tile8(typingctx, rows, gate, weights, signs, best_pos, best_neg, out, start, first, last):  # type: ignore[no-untyped-def]
        def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
            data, g, w, sg, bp, bn, o = (
                context.make_array(t)(context, builder, a).data for t, a in zip(sig.args[:7], args[:7], strict=True)
            )
            v = _Vectors(builder)
            sqrt, maxnum, minnum = v.fn("sqrt", 1), v.fn("maxnum", 2), v.fn("minnum", 2)
            at = args[7]
            sets = [
                [v.load(w, ir.Constant(v.i64, q * channels + _LANES * k)) for k in range(channels // _LANES)]
                for q in range(queries)
            ]
            den, nums = v.tile_sums(data, at, channels, dtype, g, sets)
            norm = builder.call(sqrt, [builder.call(maxnum, [den, v.const(1e-30)])])
            pos_slot, neg_slot = cgutils.alloca_once(builder, v.f8), cgutils.alloca_once(builder, v.f8)
            builder.store(v.const(-np.inf), pos_slot)
            builder.store(v.const(-np.inf), neg_slot)
            is_first = builder.icmp_unsigned("!=", args[8], ir.Constant(args[8].type, 0))
            with builder.if_then(builder.not_(is_first)):
                builder.store(v.load(bp, at), pos_slot)
                builder.store(v.load(bn, at), neg_slot)
            pos, neg = builder.load(pos_slot), builder.load(neg_slot)
            for q, num in enumerate(nums):
                cos = builder.fdiv(num, norm)
                sign = builder.load(builder.gep(sg, [ir.Constant(v.i64, q)]))
                positive = builder.fcmp_ordered(">", sign, ir.Constant(ir.FloatType(), 0.0))
                pos = builder.select(positive, builder.call(maxnum, [pos, cos]), pos)
                neg = builder.select(positive, neg, builder.call(maxnum, [neg, cos]))
            is_last = builder.icmp_unsigned("!=", args[9], ir.Constant(args[9].type, 0))
            with builder.if_else(is_last) as (then, otherwise):
                with then:
                    kept = builder.call(minnum, [builder.call(maxnum, [pos, v.const(0.0)]), v.const(1.0)])
                    v.store(builder.select(builder.fcmp_ordered(">=", neg, pos), v.const(0.0), kept), o, at)
                with otherwise:
                    v.store(pos, bp, at)
                    v.store(neg, bn, at)
            return context.get_dummy_value()

        return types.void(rows, gate, weights, signs, best_pos, best_neg, out, start, first, last), codegen

    return tile8
