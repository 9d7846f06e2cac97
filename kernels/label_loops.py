"""The numba loops of SAS's label query (`segany.kernels.labels` is the interface; its docstring says why they
are built this way). Module-level and cached on disk (`cache=True`): compiling them takes ~25 s of CPU,
loading them from the cache ~2 s. Every size is read from the
arrays at run time, so one compiled set serves every source count, width and word count.

Imported on first use: numba loads in a fraction of a second, which a process that never labels need not pay.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.core.extending import intrinsic

from segany.kernels.similarity import _LANES, _scalar_widen, _Vectors

BLOCK_ROWS = 256  # rows widened per block: 2 sources × 64 fp32 = 128 KiB of buffer, inside L2
RUN_BLOCKS = 16  # blocks a thread takes at a time, allocating their scratch once (zeroing the 128 KiB buffer
# per block was 512 MB of writes at a million rows); 4,096 rows, so threads still share the work evenly
GROUP = 3  # 8-float column vectors one tile accumulates: 8 rows × 3 = 24 registers of the 32
RELEVANCY_SCALE = 10.0  # LERF's relevancy is a softmax over 10 × cosine (its get_relevancy)
FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}  # no "nnan" / "ninf": -inf marks unseen sources
JIT = {"nogil": True, "boundscheck": False, "error_model": "numpy", "cache": True}  # numpy's: no zero-division branch

_widen = _scalar_widen("float16")


@intrinsic
def _pow2(typingctx, n):  # type: ignore[no-untyped-def]
    """2**n as a float32 for an int32 n in -126..127, by placing n in the exponent bits."""

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        i32 = ir.IntType(32)
        bits = builder.shl(builder.add(args[0], ir.Constant(i32, 127)), ir.Constant(i32, 23))
        return builder.bitcast(bits, ir.FloatType())

    return types.float32(types.int32), codegen


@njit(fastmath=FAST, inline="always", **JIT)
def fexp(x):  # type: ignore[no-untyped-def]
    """exp for float32 that LLVM can vectorise (numba's exp is a scalar libm call without SVML): Cephes'
    expf, a degree-6 polynomial after taking out the power of two, within 2 ulp."""
    f32 = np.float32
    x = min(max(x, f32(-87.0)), f32(88.0))
    n = np.floor(x * f32(1.44269504089) + f32(0.5))
    f = x - n * f32(0.693359375) + n * f32(2.12194440e-4)
    p = f32(1.9875691500e-4) * f + f32(1.3981999507e-3)
    p = p * f + f32(8.3334519073e-3)
    p = p * f + f32(4.1665795894e-2)
    p = p * f + f32(1.6666665459e-1)
    p = p * f + f32(5.0000001201e-1)
    return (p * f * f + f + f32(1.0)) * _pow2(np.int32(n))


def _gemm_tile(size: int) -> Any:
    """out[r0 + r, c0 : c0 + 8·size] = buf[r0 + r, off : off + channels] @ tt[:, c0 : c0 + 8·size] for r < 8, as
    LLVM vector IR: the 8 × size accumulators live in registers for the whole row, each feature value is
    broadcast from the (cached) block and multiplied into them, so a multiply-add per vector is all the work
    (LLVM folds the broadcast into the multiply-add's memory operand)."""

    @intrinsic
    def tile(typingctx, buf, tt, out, off, r0, c0):  # type: ignore[no-untyped-def]
        def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
            arrays = [context.make_array(t)(context, builder, a) for t, a in zip(sig.args[:3], args[:3], strict=True)]
            data, weights, dest = (a.data for a in arrays)
            width = cgutils.unpack_tuple(builder, arrays[0].shape, 2)[1]  # buf (B, S·C)
            channels, kp = cgutils.unpack_tuple(builder, arrays[1].shape, 2)  # tt (C, Kp)
            rows = cgutils.unpack_tuple(builder, arrays[2].shape, 2)[1]  # out (Kp, B)
            v = _Vectors(builder)
            fmuladd = v.fn("fmuladd", 3)
            i64 = v.i64
            at, first_row, col = args[3], args[4], args[5]
            zero_mask = ir.Constant(ir.VectorType(v.i32, _LANES), [0] * _LANES)
            undef = ir.Constant(v.f8, ir.Undefined)
            # the sums live in allocas that LLVM promotes to registers around a real loop over the channels:
            # fully unrolled, its scheduler hoisted the weight loads and spilled the sums
            slots = [[cgutils.alloca_once_value(builder, v.const(0.0)) for _ in range(size)] for _ in range(_LANES)]
            bases = [
                builder.add(builder.mul(builder.add(first_row, ir.Constant(i64, r)), width), at) for r in range(_LANES)
            ]
            with cgutils.for_range(builder, channels) as loop:
                j = loop.index
                row_w = builder.add(builder.mul(j, kp), col)
                ws = [v.load(weights, builder.add(row_w, ir.Constant(i64, _LANES * q))) for q in range(size)]
                for r in range(_LANES):
                    x = builder.load(builder.gep(data, [builder.add(bases[r], j)]))
                    xs = builder.shuffle_vector(
                        builder.insert_element(undef, x, ir.Constant(v.i32, 0)), undef, zero_mask
                    )
                    for q in range(size):
                        builder.store(builder.call(fmuladd, [xs, ws[q], builder.load(slots[r][q])]), slots[r][q])
            acc = [[builder.load(slot) for slot in row] for row in slots]
            for q in range(size):
                columns = _transpose8(builder, [acc[r][q] for r in range(_LANES)])
                for lane, vec in enumerate(columns):
                    c = builder.add(col, ir.Constant(i64, _LANES * q + lane))
                    v.store(vec, dest, builder.add(builder.mul(c, rows), first_row))
            return context.get_dummy_value()

        return types.void(buf, tt, out, off, r0, c0), codegen

    return tile


def _transpose8(builder: Any, vectors: list[Any]) -> list[Any]:
    """Eight 8-float vectors (rows) → eight vectors of their columns: three rounds of swapping the
    off-diagonal blocks of size 4, 2, 1 (24 shuffles)."""
    i32 = ir.IntType(32)
    vs = list(vectors)
    for b in (4, 2, 1):
        low = ir.Constant(
            ir.VectorType(i32, _LANES), [lane if lane & b == 0 else _LANES + lane - b for lane in range(_LANES)]
        )
        high = ir.Constant(
            ir.VectorType(i32, _LANES), [lane + b if lane & b == 0 else _LANES + lane for lane in range(_LANES)]
        )
        for i in range(_LANES):
            if i & b == 0:
                vs[i], vs[i + b] = (
                    builder.shuffle_vector(vs[i], vs[i + b], low),
                    builder.shuffle_vector(vs[i], vs[i + b], high),
                )
    return vs


_tile1, _tile2, _tile3 = _gemm_tile(1), _gemm_tile(2), _gemm_tile(3)


@njit(**JIT)
def products(buf, tt, out, m, mode, source):  # type: ignore[no-untyped-def]
    """out[s, c, r] = buf[r, s-th C] · tt[s, :, c] for the block's rows, 8 at a time, up to 24 columns a tile."""
    sources, channels, kp = tt.shape
    vectors = kp // _LANES
    for s in range(sources):
        if mode == 2 and s != source:
            continue
        for r0 in range(0, m, _LANES):
            for g in range(0, vectors, GROUP):
                size = min(GROUP, vectors - g)
                if size == 3:
                    _tile3(buf, tt[s], out[s], s * channels, r0, g * _LANES)
                elif size == 2:
                    _tile2(buf, tt[s], out[s], s * channels, r0, g * _LANES)
                else:
                    _tile1(buf, tt[s], out[s], s * channels, r0, g * _LANES)


@njit(fastmath=FAST, **JIT)
def fuse_block(sc, m, bits, n_words, n_cols, mode, source, cap, temperature, fused, soft, which, rows, evidence):  # type: ignore[no-untyped-def]
    """SAS's fusion (methods/sas/fusion.py) of the block's per-source scores sc (S, Kp, B) into fused (Kp, B).
    `evidence` (S, B), when it has columns: each source's capability sum at the row is multiplied by it
    before the normalisation."""
    sources = sc.shape[0]
    if mode == 2:
        for j in range(n_cols):
            for r in range(m):
                fused[j, r] = sc[source, j, r]
        return
    # every loop has the block's rows innermost and indexes 1-D views, so that LLVM runs it 8 or 16 rows per
    # vector instruction (as in answer_block)
    best, top, norm = rows[0], rows[1], rows[2]
    for r in range(m):
        norm[r] = np.float32(0.0)
    for s in range(sources):
        ws = soft[s]
        for r in range(m):
            ws[r] = np.float32(0.0)
    if mode == 1:
        for s in range(sources):
            for r in range(m):
                norm[r] += np.float32((bits[r] >> s) & 1)
        for s in range(sources):
            ws = soft[s]
            for r in range(m):
                ws[r] = np.float32((bits[r] >> s) & 1) / max(norm[r], np.float32(1.0))
    else:
        # a source's weight sums its capability for every seeing source's prediction: each prediction's
        # argmax vectorised over the rows, then a table lookup per row and source
        for t in range(sources):
            row = sc[t, 0]
            for r in range(m):
                best[r] = row[r]
                which[r] = 0
            for j in range(1, n_words):
                row = sc[t, j]
                for r in range(m):  # strict, so that the first maximum stays
                    above = row[r] > best[r]
                    best[r] = row[r] if above else best[r]
                    which[r] = j if above else which[r]
            for r in range(m):
                if (bits[r] >> t) & 1:
                    for s in range(sources):
                        soft[s, r] += cap[s, which[r]]
        if evidence.shape[1] > 0:
            for s in range(sources):
                ws, ev = soft[s], evidence[s]
                for r in range(m):
                    ws[r] *= ev[r]
        for r in range(m):
            top[r] = np.float32(-np.inf)
        for s in range(sources):
            ws = soft[s]
            for r in range(m):
                norm[r] += ws[r]  # the total weight, first
        for s in range(sources):
            ws = soft[s]
            for r in range(m):
                share = ws[r] / norm[r] if norm[r] > 0 else np.float32(1.0) / np.float32(sources)
                ws[r] = share / temperature
                top[r] = max(top[r], ws[r]) if (bits[r] >> s) & 1 else top[r]
        for r in range(m):
            norm[r] = np.float32(0.0)  # now the softmax's sum
        for s in range(sources):
            ws = soft[s]
            for r in range(m):
                e = fexp(ws[r] - top[r]) if (bits[r] >> s) & 1 else np.float32(0.0)
                ws[r] = e
                norm[r] += e
        for s in range(sources):
            ws = soft[s]
            for r in range(m):
                ws[r] = ws[r] / norm[r] if norm[r] > 0 else np.float32(0.0)
    for j in range(n_cols):
        out, row, w = fused[j], sc[0, j], soft[0]
        for r in range(m):
            out[r] = row[r] * w[r]
    for s in range(1, sources):
        for j in range(n_cols):
            out, row, w = fused[j], sc[s, j], soft[s]
            for r in range(m):
                out[r] += row[r] * w[r]


@njit(fastmath=FAST, **JIT)
def answer_block(fused, m, n_words, n_cols, other, labels, scores, rel, keys, at0, best, worst, which):  # type: ignore[no-untyped-def]
    """Labels, scores and (when rel has rows) relevancy of the block's rows at0.. from fused (Kp, B); when keys
    has rows, also each row's key for the 3D step's frontier test (`spread_frontier`): its word's number,
    or with `other` the number of its largest column of all (a negative's: n_words + its number)."""
    for r in range(m):
        worst[r] = fused[n_words, r]
        best[r] = fused[0, r]
        which[r] = 0
    for j in range(n_words + 1, n_cols):
        row = fused[j]
        for r in range(m):
            worst[r] = max(worst[r], row[r])
    for j in range(1, n_words):
        row = fused[j]  # 1-D views: LLVM vectorised these loops only without the 2-D index arithmetic
        for r in range(m):
            above = row[r] > best[r]
            best[r] = row[r] if above else best[r]
            which[r] = j if above else which[r]
    scale = np.float32(RELEVANCY_SCALE)
    for r in range(m):
        out = other and worst[r] > best[r]
        labels[at0 + r] = -1 if out else which[r]
        sigmoid = np.float32(1.0) / (np.float32(1.0) + fexp(-scale * (best[r] - worst[r])))
        scores[at0 + r] = np.float32(0.0) if out else sigmoid
    if keys.shape[0] > 0:
        for r in range(m):
            key = which[r]
            if other and worst[r] > best[r]:
                for j in range(n_words, n_cols):  # the first of the largest negatives
                    if fused[j, r] == worst[r]:
                        key = j
                        break
            keys[at0 + r] = key
    if rel.shape[0] > 0:  # asked for; word by word over the rows (vectorised), then stored row by row
        for j in range(n_words):
            row = fused[j]
            for r in range(m):
                best[r] = np.float32(1.0) / (np.float32(1.0) + fexp(-scale * (row[r] - worst[r])))
            for r in range(m):
                rel[at0 + r, j] = best[r]


@njit(**JIT)
def widen_range(packed, start, m, buf):  # type: ignore[no-untyped-def]
    for r in range(m):
        for j in range(packed.shape[1]):
            buf[r, j] = _widen(packed[start + r, j])


@njit(**JIT)
def scratch(sources, width, kp):  # type: ignore[no-untyped-def]
    return (
        np.zeros((BLOCK_ROWS, width), np.float32),
        np.empty((sources, kp, BLOCK_ROWS), np.float32),
        np.empty((kp, BLOCK_ROWS), np.float32),
        np.empty((sources, BLOCK_ROWS), np.float32),
        np.empty(BLOCK_ROWS, np.int32),
        np.empty((3, BLOCK_ROWS), np.float32),
    )


@njit(**JIT)
def fused_range(packed, seen, tt, n_words, n_cols, mode, source, cap, temperature, evidence, start, m, work):  # type: ignore[no-untyped-def]
    """Fused scores (Kp, B) of rows start..start+m."""
    buf, sc, fused, soft, which, rows = work
    widen_range(packed, start, m, buf)
    products(buf, tt, sc, m, mode, source)
    fuse_block(
        sc, m, seen[start:], n_words, n_cols, mode, source, cap, temperature, fused, soft, which, rows,
        evidence[:, start:],
    )  # fmt: skip
    return fused


@njit(parallel=True, **JIT)
def answer(  # type: ignore[no-untyped-def]
    packed,
    seen,
    tt,
    n_words,
    n_cols,
    mode,
    source,
    cap,
    temperature,
    evidence,
    slot,
    kept,
    other,
    labels,
    scores,
    rel,
    keys,
    whole,
):
    """Every row answered from its fused scores; the rows with a `slot` also keep them in `kept` (the scores
    the unseen elements average, see `answer_unseen`). When `whole` has rows, every row's fused scores go
    there too, and its key into `keys` (the 3D step's inputs)."""
    n = packed.shape[0]
    blocks = (n + BLOCK_ROWS - 1) // BLOCK_ROWS
    for run in prange((blocks + RUN_BLOCKS - 1) // RUN_BLOCKS):
        work = scratch(tt.shape[0], packed.shape[1], tt.shape[2])  # once per run of blocks, not per block
        for b in range(run * RUN_BLOCKS, min((run + 1) * RUN_BLOCKS, blocks)):
            start = b * BLOCK_ROWS
            m = min(BLOCK_ROWS, n - start)
            fused = fused_range(
                packed, seen, tt, n_words, n_cols, mode, source, cap, temperature, evidence, start, m, work
            )
            for r in range(m):
                at = slot[start + r]
                if at >= 0:
                    for j in range(n_cols):
                        kept[at, j] = fused[j, r]
            if whole.shape[0] > 0:
                for r in range(m):
                    for j in range(n_cols):
                        whole[start + r, j] = fused[j, r]
            best, worst, which = work[5][0], work[5][1], work[4]
            answer_block(fused, m, n_words, n_cols, other, labels, scores, rel, keys, start, best, worst, which)


@njit(parallel=True, **JIT)
def answer_unseen(kept, unseen, slots, n_words, n_cols, other, labels, scores, rel, keys, whole):  # type: ignore[no-untyped-def]
    """The elements no view showed answered again, from the mean kept scores of their fill elements (and
    those scores, with their keys, into `whole` and `keys` when they have rows). Blocks go over numba's
    threads; an element's fill rows are added row by row, vectorised over the columns (each column still
    summed in the fill order: the same floats as column by column, which gathered every value apart)."""
    k = slots.shape[1]
    kp = (n_cols + _LANES - 1) // _LANES * _LANES
    blocks = (len(unseen) + BLOCK_ROWS - 1) // BLOCK_ROWS
    for run in prange((blocks + RUN_BLOCKS - 1) // RUN_BLOCKS):
        fused = np.zeros((kp, BLOCK_ROWS), np.float32)
        total = np.empty(n_cols, np.float32)
        best, worst = np.empty(BLOCK_ROWS, np.float32), np.empty(BLOCK_ROWS, np.float32)
        which = np.empty(BLOCK_ROWS, np.int32)
        got_labels, got_scores = np.empty(BLOCK_ROWS, np.int32), np.empty(BLOCK_ROWS, np.float32)
        got_rel = np.empty((BLOCK_ROWS if rel.shape[0] > 0 else 0, rel.shape[1]), np.float32)
        got_keys = np.empty(BLOCK_ROWS if keys.shape[0] > 0 else 0, np.int32)
        for b in range(run * RUN_BLOCKS, min((run + 1) * RUN_BLOCKS, blocks)):
            start = b * BLOCK_ROWS
            m = min(BLOCK_ROWS, len(unseen) - start)
            for r in range(m):
                for j in range(n_cols):
                    total[j] = np.float32(0.0)
                for i in range(k):
                    row = kept[slots[start + r, i]]
                    for j in range(n_cols):
                        total[j] += row[j]
                for j in range(n_cols):
                    fused[j, r] = total[j] / np.float32(k)
            answer_block(
                fused, m, n_words, n_cols, other, got_labels, got_scores, got_rel, got_keys, 0, best, worst, which
            )
            for r in range(m):
                e = unseen[start + r]
                labels[e] = got_labels[r]
                scores[e] = got_scores[r]
                if got_rel.shape[0] > 0:
                    for j in range(rel.shape[1]):
                        rel[e, j] = got_rel[r, j]
                if got_keys.shape[0] > 0:
                    keys[e] = got_keys[r]
                    for j in range(n_cols):
                        whole[e, j] = fused[j, r]


@njit(fastmath=FAST, **JIT)
def mix_row(indptr, indices, weights, own, whole, i, acc, out, col):  # type: ignore[no-untyped-def]
    """out[:, col] = own_i · whole[i] + (1 − own_i) · Σ_j P_ij whole[j] (spreading.py's step), the neighbours
    summed in their order, each over the columns in vectors."""
    n_cols = whole.shape[1]
    for k in range(n_cols):
        acc[k] = np.float32(0.0)
    for p in range(indptr[i], indptr[i + 1]):
        w, row = weights[p], whole[indices[p]]
        for k in range(n_cols):
            acc[k] += w * row[k]
    mine, share = whole[i], own[i]
    for k in range(n_cols):
        out[k, col] = share * mine[k] + (np.float32(1.0) - share) * acc[k]


@njit(parallel=True, **JIT)
def spread_frontier(indptr, indices, weights, own, keys, whole, n_words, other, labels, scores, rel):  # type: ignore[no-untyped-def]
    """The 3D step where it can change a label: the rows with a neighbour of another key are answered again
    from their spread scores; a row whose neighbours all share its key keeps its answer, since a convex
    combination of score rows that share their largest column has that largest column too."""
    n, n_cols = whole.shape
    kp = (n_cols + _LANES - 1) // _LANES * _LANES
    for b in prange((n + BLOCK_ROWS - 1) // BLOCK_ROWS):
        start = b * BLOCK_ROWS
        ids = np.empty(BLOCK_ROWS, np.int64)
        m = 0
        for i in range(start, min(start + BLOCK_ROWS, n)):
            key = keys[i]
            for p in range(indptr[i], indptr[i + 1]):
                if keys[indices[p]] != key:
                    ids[m] = i
                    m += 1
                    break
        if m == 0:
            continue
        fused = np.empty((kp, BLOCK_ROWS), np.float32)  # the answer reads the first n_cols rows, m columns
        acc = np.empty(n_cols, np.float32)
        for r in range(m):
            mix_row(indptr, indices, weights, own, whole, ids[r], acc, fused, r)
        best, worst = np.empty(BLOCK_ROWS, np.float32), np.empty(BLOCK_ROWS, np.float32)
        which = np.empty(BLOCK_ROWS, np.int32)
        got_labels, got_scores = np.empty(BLOCK_ROWS, np.int32), np.empty(BLOCK_ROWS, np.float32)
        got_rel = np.empty((BLOCK_ROWS if rel.shape[0] > 0 else 0, rel.shape[1]), np.float32)
        no_keys = np.empty(0, np.int32)
        answer_block(fused, m, n_words, n_cols, other, got_labels, got_scores, got_rel, no_keys, 0, best, worst, which)
        for r in range(m):
            e = ids[r]
            labels[e] = got_labels[r]
            scores[e] = got_scores[r]
            if got_rel.shape[0] > 0:
                for j in range(rel.shape[1]):
                    rel[e, j] = got_rel[r, j]
