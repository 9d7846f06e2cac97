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
    if features.dim() != 2:
        raise SegAnyError("invalid_array", f"features must be (N, C), got {tuple(features.shape)}")
    if features.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise SegAnyError("invalid_array", f"features must be float32, float16 or bfloat16, not {features.dtype}")
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


def _tile8(channels: int, dtype: str) -> Callable[..., None]:
    """Scores of rows start..start+7 written as LLVM vector IR. Each row's two dot products end as 8-lane
    partial sums; a shuffle-and-add tree (a transpose) reduces the 16 vectors to two vectors of 8 sums,
    so the horizontal sums cost about a third of per-row reductions, and sqrt / divide / clamp run on 8
    rows at once, which beats a plain per-row loop (docs/journal.md)."""
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.core.extending import intrinsic

    f8 = ir.VectorType(ir.FloatType(), _LANES)
    i64, i32, i8p = ir.IntType(64), ir.IntType(32), ir.IntType(8).as_pointer()
    prefetch_type = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])  # address, read, locality, data

    @intrinsic
    def tile8(typingctx, rows, gate, unit_gq, out, start):  # type: ignore[no-untyped-def]
        def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
            data, g, w, o = (
                context.make_array(t)(context, builder, a).data for t, a in zip(sig.args[:4], args[:4], strict=True)
            )

            def fn(name: str, arity: int) -> Any:
                return cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(f8, [f8] * arity), f"llvm.{name}.v8f32"
                )

            def load(ptr: Any, index: Any, vec: ir.VectorType) -> Any:
                return builder.load(builder.bitcast(builder.gep(ptr, [index]), vec.as_pointer()), align=1)

            def shuffle(a: Any, b: Any, mask: list[int]) -> Any:
                return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(i32, _LANES), mask))

            def transpose_sum(vs: list[Any]) -> Any:
                for lo, hi in (
                    ([0, 8, 2, 10, 4, 12, 6, 14], [1, 9, 3, 11, 5, 13, 7, 15]),
                    ([0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]),
                    ([0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]),
                ):
                    vs = [
                        builder.fadd(shuffle(a, b, lo), shuffle(a, b, hi))
                        for a, b in zip(vs[::2], vs[1::2], strict=True)
                    ]
                return vs[0]

            fmuladd, sqrt, maxnum, minnum = fn("fmuladd", 3), fn("sqrt", 1), fn("maxnum", 2), fn("minnum", 2)
            vectors = range(channels // _LANES)
            gates = [load(g, ir.Constant(i64, _LANES * k), f8) for k in vectors]
            weights = [load(w, ir.Constant(i64, _LANES * k), f8) for k in vectors]
            if dtype != "float32":
                # hint the rows _PREFETCH_ROWS ahead into cache a line at a time (never faults past the end):
                # with the hardware prefetcher alone fp16 waits on memory; fp32 gains nothing and is left
                # without (docs/journal.md)
                prefetch = cgutils.get_or_insert_function(builder.module, prefetch_type, "llvm.prefetch.p0i8")
                ahead = builder.mul(builder.add(args[4], ir.Constant(i64, _PREFETCH_ROWS)), ir.Constant(i64, channels))
                for line in range(0, _LANES * channels * 2, 64):
                    at = builder.gep(data, [builder.add(ahead, ir.Constant(i64, line // 2))])
                    builder.call(prefetch, [builder.bitcast(at, i8p), *(ir.Constant(i32, v) for v in (0, 3, 1))])
            nums, dens = [], []
            for r in range(_LANES):
                row = builder.mul(builder.add(args[4], ir.Constant(i64, r)), ir.Constant(i64, channels))
                num = den = ir.Constant(f8, [0.0] * _LANES)
                for k in vectors:
                    index = builder.add(row, ir.Constant(i64, _LANES * k))
                    if dtype == "float32":
                        x = load(data, index, f8)
                    else:
                        x = _widen_ir(builder, load(data, index, ir.VectorType(ir.IntType(16), _LANES)), dtype)
                    h = builder.fmul(x, gates[k])
                    num = builder.call(fmuladd, [h, weights[k], num])
                    den = builder.call(fmuladd, [h, h, den])
                nums.append(num)
                dens.append(den)
            den = builder.call(maxnum, [transpose_sum(dens), ir.Constant(f8, [1e-30] * _LANES)])
            score = builder.fdiv(transpose_sum(nums), builder.call(sqrt, [den]))
            score = builder.call(maxnum, [score, ir.Constant(f8, [-1.0] * _LANES)])
            score = builder.call(minnum, [score, ir.Constant(f8, [1.0] * _LANES)])
            builder.store(score, builder.bitcast(builder.gep(o, [args[4]]), f8.as_pointer()), align=1)
            return context.get_dummy_value()

        return types.void(rows, gate, unit_gq, out, start), codegen

    return tile8
