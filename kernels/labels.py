"""SAS's label query in one read of the features: per element, every source's cosine scores against the words
and the canonical negatives, SAS's capability-weighted fusion, the argmax label and the LERF score.

The work is compute-bound, not memory-bound: 20 words and 4 negatives over two sources of 64 fp16 components
are 3,072 multiply-adds per element against 256 bytes read, so at a million elements the products alone are
about 3 GFMA, tens of milliseconds at the peak of one core's vector units, while a streaming read of the
256 MB takes a fraction of that. So the products run as a small matrix product per 8-row tile written in
LLVM vector IR (`_gemm_tile`: the tile's 8 × up to 24 sums stay in registers, each feature value is
broadcast from the cached block and multiplied into them), on blocks of rows widened fp16 → fp32 into a
cache-sized buffer once; fusion, argmax and the score follow on the block while it is still in cache. Torch
and OpenBLAS were 2–5× slower on these skinny products (figures: docs/journal.md).

Blocks go over numba's threads (`prange`). SAS's 3D step (`spread`: one label-spreading step of the fused
scores over the element graph, methods/sas/spreading.py) needs the fused scores of the whole scene, so with it
the pass also writes them and each element's key (its word, or with `other` its largest column), and a second
pass answers again only the elements with a neighbour of another key: where an element and all its neighbours
share their largest column, every convex combination of their score rows has that largest column too (in
floating point as well: rounding is monotone), so the step cannot change its label. Such an element keeps
its own score and relevancy (docs/methods/sas.md); a frontier element answers from its spread scores.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from segany.errors import SegAnyError

LANES = 8  # float32 lanes of the tiles' vectors: the text columns are padded to a multiple
MODES = {"capability": 0, "average": 1, "source": 2}
MAX_CHANNELS = 1024  # components per source the bound below covers
# how far a bf16 path's score can be from the exact path's, per unit of ‖x‖₂·‖y‖₂ (module docstring): both
# operands rounded to bf16 (2u + u², u = 2^-8), both paths' fp32 sums of up to MAX_CHANNELS products and the
# fusion's rounding (under 2^-12 together)
EPS = 2.0**-7 + 2.0**-12
SERIAL_ROWS = 65_536  # fallbacks of fewer rows run on one thread (`_serial`)
# one query at a time in the loops: each already uses every core, and numba's fallback threading layer
# (workqueue, where neither OpenMP nor TBB is found) aborts when two threads enter parallel code at once
_RUNNING = threading.Lock()


@dataclass(frozen=True)
class Labelled:
    """Per element its word (-1: other), the relevancy of that word (0 for other) and, when asked, the
    relevancy of every word (N, W); `redone`: how many rows the exact path answered again (the bf16
    products' bound did not certify them)."""

    labels: np.ndarray  # (N,) int32
    scores: np.ndarray  # (N,) float32
    relevancy: np.ndarray | None  # (N, W) float32
    redone: int = 0


@dataclass(frozen=True)
class Neighbours:
    """The 3D step's operator: per element its share of its own scores `own` (N,) and the row-normalised
    affinities to its neighbours as CSR rows (`indptr` (N + 1,), `indices`, `weights` float32)."""

    indptr: np.ndarray
    indices: np.ndarray
    weights: np.ndarray
    own: np.ndarray


@dataclass(frozen=True)
class Filling:
    """Elements no view showed (`unseen` (U,)) take the mean fused scores of `fill` (U, k) shown elements.
    `slot` (N,) numbers the distinct fill elements (-1 for the rest), so that the one pass over the features
    keeps their fused scores, and `slots` (U, k) is each fill entry's number: nothing is formed twice."""

    unseen: np.ndarray  # (U,) int64
    fill: np.ndarray  # (U, k) int64
    slot: np.ndarray  # (N,) int32
    slots: np.ndarray  # (U, k) int32
    kept: int  # distinct fill elements


def filling(unseen: np.ndarray, fill: np.ndarray, n: int) -> Filling:
    """The `Filling` of a scene of n elements (built once per state: it sorts the fill entries)."""
    unseen = np.asarray(unseen, np.int64)
    fill = np.asarray(fill, np.int64).reshape(len(unseen), -1) if len(unseen) else np.zeros((0, 1), np.int64)
    distinct, inverse = np.unique(fill, return_inverse=True)
    slot = np.full(n, -1, np.int32)
    slot[distinct] = np.arange(len(distinct), dtype=np.int32)
    return Filling(unseen, fill, slot, inverse.reshape(fill.shape).astype(np.int32), len(distinct))


@dataclass(frozen=True)
class Narrow:
    """The features as the bf16 products read them: `pairs` (N, S·C/2) int32, two bf16 components (rounded
    to nearest even from the fp16 ones) per 32 bits, and `norms` (2, S, N) float32: per source the L2 norm of
    the fp16 features and of their rounding residual, rounded up — what bounds how far a bf16 score can be
    from the exact one."""

    pairs: np.ndarray
    norms: np.ndarray


def narrow(packed: np.ndarray, sources: int) -> Narrow | None:
    """`Narrow` of `packed` (N, S·C) int16 fp16 bits, built once per state; None where the bf16 path does not
    apply (an odd C, or C over `MAX_CHANNELS`, where `EPS` would not bound the sums' rounding)."""
    c = packed.shape[1] // sources
    if c % 2 or c > MAX_CHANNELS or not _loops().BF16:
        return None
    pairs = np.empty((packed.shape[0], packed.shape[1] // 2), np.int32)
    norms = np.empty((2, sources, packed.shape[0]), np.float32)
    with _RUNNING:
        _loops().narrow_rows(packed, sources, pairs, norms)
    return Narrow(pairs, norms)


def label_elements(
    packed: np.ndarray,
    seen: np.ndarray,
    texts: np.ndarray,
    n_words: int,
    *,
    mode: str = "capability",
    source: int = 0,
    capability: np.ndarray | None = None,
    temperature: float = 0.05,
    fill: Filling | None = None,
    other: bool = False,
    relevancy: bool = False,
    spread: Neighbours | None = None,
    fast: Narrow | None = None,
    exact: bool = False,
    evidence: np.ndarray | None = None,
) -> Labelled:
    """Label every element of `packed` (N, S·C) int16 — S sources' C fp16 components per row, side by side,
    as raw bits — by `texts` (S, K, C) float32 unit rows (the first `n_words` of K the words, the rest the
    negatives). `seen` (N,) uint8 has bit s set where source s saw the element.

    `mode`: "capability" (SAS's rule with `capability` (S, n_words) and `temperature`), "average" (the mean of
    the sources that saw the element) or "source" (source `source` alone). `fill`: the elements no view
    showed and whose scores they take. `other`: label -1 where a negative beats every word; `relevancy`:
    also return every word's relevancy (N, W); `spread`: the 3D step over these neighbours (module docstring).
    `fast`: `narrow(packed)` when the caller keeps it (else it is built here); `exact`: fp32 products
    everywhere — the same labels, with scores and relevancy exact to fp32 rounding instead of within the
    bound. `evidence` (S, N) float32 ≥ 0 (mode "capability"): each source's capability sum at an element is
    multiplied by it before the normalisation."""
    args = _args(packed, seen, texts, n_words, mode, source, capability, temperature, evidence)
    n = packed.shape[0]
    fill = fill or filling(np.zeros(0), np.zeros((0, 1)), n)
    labels, scores = np.empty(n, np.int32), np.empty(n, np.float32)
    rel = np.empty((n, n_words) if relevancy else (0, n_words), np.float32)
    if spread is not None and (len(spread.own) != n or len(spread.indptr) != n + 1):
        raise SegAnyError("invalid_array", f"the 3D step's graph has {len(spread.own)} elements, the features {n}")
    if not exact and fast is None:
        fast = narrow(packed, texts.shape[0])
    run = _Run(args, fill, bool(other), labels, scores, rel, n if spread is not None else 0, None if exact else fast)
    run.passes()
    if spread is not None:
        run.spread(spread)
    return Labelled(labels, scores, rel if relevancy else None, run.redone)


def fused_scores(
    packed: np.ndarray,
    seen: np.ndarray,
    texts: np.ndarray,
    n_words: int,
    *,
    mode: str = "capability",
    source: int = 0,
    capability: np.ndarray | None = None,
    temperature: float = 0.05,
    fill: Filling | None = None,
    evidence: np.ndarray | None = None,
) -> np.ndarray:
    """The fused scores (N, K) float32 that `label_elements` answers from (same inputs), by the exact path:
    the rule's values themselves, for checking them (the tests' hand-made cases)."""
    args = _args(packed, seen, texts, n_words, mode, source, capability, temperature, evidence)
    n = packed.shape[0]
    fill = fill or filling(np.zeros(0), np.zeros((0, 1)), n)
    labels, scores, rel = np.empty(n, np.int32), np.empty(n, np.float32), np.empty((0, n_words), np.float32)
    run = _Run(args, fill, False, labels, scores, rel, n, None)
    run.passes()
    return run.whole


class _Run:
    """One query's passes. With `fast`, the products are bf16 and each row carries a bound on how far its
    fused scores are from the exact path's; a row whose answer the bound does not certify is answered again
    by the exact path (module docstring), so the labels are the exact path's everywhere."""

    def __init__(self, args: tuple, fill: Filling, other: bool, labels, scores, rel, rows: int, fast) -> None:  # type: ignore[no-untyped-def]
        self.args, self.fill, self.other = args, fill, other
        self.labels, self.scores, self.rel = labels, scores, rel
        self.n, k = args[0].shape[0], args[4]
        self.kept = np.empty((fill.kept, k), np.float32)
        self.keys, self.whole = np.empty(rows, np.int32), np.empty((rows, k), np.float32)
        self.fast = fast
        self.errs = np.zeros(rows if fast is not None else 0, np.float32)
        self.kept_err = np.zeros(fill.kept, np.float32)
        self.redone = 0
        if fast is not None:
            self.tw, self.tscale = _narrow_texts(args[2])

    def passes(self) -> None:
        """The pass over the features, then the unseen elements; each followed by the exact path on the rows
        in doubt."""
        if self.fast is None:
            bounds = _EXACT
        else:
            doubt = np.zeros(self.n, np.uint8)
            bounds = (self.fast.pairs, self.fast.norms, self.tw, self.tscale, doubt, self.errs, self.kept_err)
        out = (self.labels, self.scores, self.rel, self.keys, self.whole)
        with _RUNNING:
            _loops().answer(*self.args, self.fill.slot, self.kept, self.other, *out, bounds)
        if self.fast is not None:
            self.redo(np.flatnonzero(doubt), answers=True)
        self.unseen(np.arange(len(self.fill.unseen)), answers=True)

    def unseen(self, which: np.ndarray, answers: bool) -> None:
        """The unseen elements `which` (positions in fill.unseen) answered from their fill elements' kept
        scores; those in doubt again once their fill elements' scores are exact. Without `answers`, their
        fused scores are made exact and only they and the keys are written (for the 3D step, which has
        answered them already)."""
        fill = self.fill
        if not answers:
            inexact = np.unique(fill.fill[which])
            self.redo(inexact[self.kept_err[fill.slot[inexact]] > 0], answers)
        doubt = np.zeros(len(which) if self.fast is not None else 0, np.uint8)
        out = (self.labels, self.scores, self.rel) if answers else _nowhere(self.n, self.rel.shape[1])
        with _RUNNING:
            _loops().answer_unseen(
                self.kept, fill.unseen[which], fill.slots[which], self.args[3], self.args[4], self.other, *out,
                self.keys, self.whole, (self.kept_err, doubt, self.errs),
            )  # fmt: skip
        if doubt.any():
            again = which[doubt > 0]
            inexact = np.unique(fill.fill[again])
            self.redo(inexact[self.kept_err[fill.slot[inexact]] > 0], answers)
            self.unseen(again, answers)

    def redo(self, ids: np.ndarray, answers: bool) -> None:
        """Shown elements `ids` by the exact path: their kept scores, fused scores and keys, and with `answers`
        their labels, scores and relevancy."""
        if len(ids) == 0:
            return
        self.redone += len(ids)
        packed, seen, *rest, evidence = self.args
        rows = len(ids) if self.whole.shape[0] else 0
        labels, scores = np.empty(len(ids), np.int32), np.empty(len(ids), np.float32)
        rel = np.empty((len(ids) if self.rel.shape[0] else 0, self.rel.shape[1]), np.float32)
        keys, whole = np.empty(rows, np.int32), np.empty((rows, self.args[4]), np.float32)
        slot = self.fill.slot[ids]
        sub = (np.ascontiguousarray(packed[ids]), seen[ids], *rest, evidence[:, ids] if evidence.shape[1] else evidence)
        with _RUNNING, _serial(len(ids)):
            _loops().answer(*sub, slot, self.kept, self.other, labels, scores, rel, keys, whole, _EXACT)
        self.kept_err[slot[slot >= 0]] = 0
        if answers:
            self.labels[ids], self.scores[ids] = labels, scores
            if rel.shape[0]:
                self.rel[ids] = rel
        if rows:
            self.keys[ids], self.whole[ids] = keys, whole
            if len(self.errs):
                self.errs[ids] = 0

    def spread(self, op: Neighbours) -> None:
        """The 3D step on the frontier; where the bounds leave a frontier row in doubt, its own and its
        neighbours' fused scores are made exact and it is answered again."""
        graph = (op.indptr, op.indices, op.weights, op.own)
        n_words, out = self.args[3], (self.labels, self.scores, self.rel)
        doubt, every = np.zeros(len(self.errs), np.uint8), np.zeros(0, np.uint8)
        with _RUNNING:
            _loops().spread_frontier(
                *graph, self.keys, self.whole, n_words, self.other, *out, self.errs, doubt, every,
                np.float32(self.errs.max(initial=0.0)),
            )  # fmt: skip
        again = np.flatnonzero(doubt)
        if len(again) == 0:
            return
        self.redone += len(again)
        counts = op.indptr[again + 1] - op.indptr[again]
        links = np.repeat(op.indptr[again] - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        needed = np.unique(np.concatenate([again, op.indices[links].astype(np.int64)]))
        needed = needed[self.errs[needed] > 0]
        position = np.full(self.n, -1, np.int64)
        position[self.fill.unseen] = np.arange(len(self.fill.unseen))
        hidden = position[needed]
        self.redo(needed[hidden < 0], answers=False)
        self.unseen(hidden[hidden >= 0], answers=False)
        with _RUNNING, _serial(len(again)):  # their rows now exact: the exact path's code, on them alone
            _loops().spread_frontier(*graph, self.keys, self.whole, n_words, self.other, *out, self.errs[:0], doubt[:0],
                                     doubt, np.float32(0.0))  # fmt: skip


_EXACT = (  # the loops' bf16 arguments, empty: the exact path
    np.zeros((0, 1), np.int32),
    np.zeros((2, 1, 0), np.float32),
    np.zeros((1, 1, 8), np.int32),
    np.zeros((2, 1), np.float32),
    np.zeros(0, np.uint8),
    np.zeros(0, np.float32),
    np.zeros(0, np.float32),
)


@contextmanager
def _serial(rows: int) -> Iterator[None]:
    """One numba thread for a fallback of few rows: waking the other threads cost more than the work
    (20 ms of wall, 7 of CPU for 2,350 rows on the loaded 2-core machine; 3 and 1.5 on one thread)."""
    if rows >= SERIAL_ROWS:
        yield
        return
    import numba

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(threads)


def _nowhere(n: int, words: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Answers written nowhere (see `_Run.unseen`)."""
    return np.empty(n, np.int32), np.empty(n, np.float32), np.empty((0, words), np.float32)


def _narrow_texts(tt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The texts (S, C, Kp) float32 as bf16 pairs (S, C/2, Kp) int32 for the bf16 tiles, and the bound's
    factors (2, S): a row's bound is scale[0, s]·‖x_s‖ + scale[1, s]·‖x_s − x̃_s‖.

    Why: x·y − x̃·ỹ = x·(y − ỹ) + (x − x̃)·ỹ exactly, so by Cauchy–Schwarz each score of source s is within
    ‖x‖·max‖y − ỹ‖ + ‖x − x̃‖·max‖ỹ‖ of its value in exact arithmetic, plus both paths' fp32 rounding of
    sums of C products (γ_C each, γ_C = C·2^-24/(1 − C·2^-24)) and of the fusion's sum of S weighted scores;
    `EPS` bounds the whole for every input."""
    bits = _bf16_bits(tt).astype(np.uint32)
    s, c, kp = tt.shape
    pairs = bits.reshape(s, c // 2, 2, kp)
    tw = np.ascontiguousarray(pairs[:, :, 0] | (pairs[:, :, 1] << 16)).view(np.int32)
    y = tt.astype(np.float64)
    rounded = (bits << 16).view(np.float32).astype(np.float64)
    size = np.sqrt((y**2).sum(axis=1)).max(axis=1)
    rounding = 2.1 * c * 2.0**-24 * (1 + 2.0**-7) + 2.0**-18  # both paths' sums and the fusion's, per ‖x‖·‖y‖
    scale = np.stack(
        [np.sqrt(((y - rounded) ** 2).sum(axis=1)).max(axis=1) + rounding * size,
         np.sqrt((rounded**2).sum(axis=1)).max(axis=1)]
    )  # fmt: skip
    return tw, (scale * (1 + 2.0**-16)).astype(np.float32)


def _bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 → bfloat16 bits, rounded to nearest even (finite values)."""
    b = np.ascontiguousarray(x, np.float32).view(np.uint32)
    return ((b + np.uint32(0x7FFF) + ((b >> 16) & np.uint32(1))) >> 16).astype(np.uint16)


def _args(packed, seen, texts, n_words, mode, source, capability, temperature, evidence) -> tuple:  # type: ignore[no-untyped-def]
    """The loops' common arguments, checked; the texts transposed per source (C, Kp), zero columns past K,
    since a tile reads whole vectors of columns."""
    n = packed.shape[0]
    s_count, k, c = texts.shape
    if packed.dtype != np.int16 or packed.shape != (n, s_count * c) or not packed.flags.c_contiguous:
        raise SegAnyError("invalid_array", f"packed must be C-contiguous int16 (N, {s_count * c}), got {packed.shape}")
    if not 0 < n_words < k or seen.shape != (n,) or mode not in MODES or not 0 <= source < s_count:
        raise SegAnyError("invalid_array", "label query: words, seen, mode or source do not fit the features")
    tt = np.zeros((s_count, c, -(-k // LANES) * LANES), dtype=np.float32)
    tt[:, :, :k] = np.transpose(texts, (0, 2, 1))
    cap = np.zeros((s_count, n_words), np.float32) if capability is None else capability.astype(np.float32)
    if evidence is None:
        evidence = np.zeros((s_count, 0), np.float32)
    elif evidence.shape != (s_count, n):
        raise SegAnyError("invalid_array", f"evidence must be ({s_count}, {n}), got {evidence.shape}")
    ev = np.ascontiguousarray(evidence, np.float32)
    return (packed, seen.astype(np.uint8), tt, n_words, k, MODES[mode], source, cap, np.float32(temperature), ev)


def _loops() -> ModuleType:
    """The numba loops (`label_loops`), imported on first use."""
    from segany.kernels import label_loops

    return label_loops
