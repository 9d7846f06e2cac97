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
# one query at a time in the loops: each already uses every core, and numba's fallback threading layer
# (workqueue, where neither OpenMP nor TBB is found) aborts when two threads enter parallel code at once
_RUNNING = threading.Lock()
# a query over fewer rows runs on one thread: waking numba's threads cost ~3 ms on this machine, more than half
# a one-thread pass of 32K rows saves (0.17 µs a row; the capability sample's 20,000 rows: 5.7 -> 2.5 ms)
SERIAL_ROWS = 32_768
_whole: list[np.ndarray] = [np.empty(0, np.float32)]  # the 3D step's (N, K) fused scores, reused under _RUNNING


@dataclass(frozen=True)
class Labelled:
    """Per element its word (-1: other), the relevancy of that word (0 for other) and, when asked, the
    relevancy of every word (N, W)."""

    labels: np.ndarray  # (N,) int32
    scores: np.ndarray  # (N,) float32
    relevancy: np.ndarray | None  # (N, W) float32


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
    evidence: np.ndarray | None = None,
) -> Labelled:
    """Label every element of `packed` (N, S·C) int16 — S sources' C fp16 components per row, side by side,
    as raw bits — by `texts` (S, K, C) float32 unit rows (the first `n_words` of K the words, the rest the
    negatives). `seen` (N,) uint8 has bit s set where source s saw the element.

    `mode`: "capability" (SAS's rule with `capability` (S, n_words) and `temperature`), "average" (the mean of
    the sources that saw the element) or "source" (source `source` alone). `fill`: the elements no view
    showed and whose scores they take. `other`: label -1 where a negative beats every word; `relevancy`:
    also return every word's relevancy (N, W); `spread`: the 3D step over these neighbours (module docstring);
    `evidence` (S, N) float32 ≥ 0 (mode "capability"): each source's capability sum at an element is
    multiplied by it before the normalisation."""
    args = _args(packed, seen, texts, n_words, mode, source, capability, temperature, evidence)
    n = packed.shape[0]
    fill = fill or filling(np.zeros(0), np.zeros((0, 1)), n)
    labels, scores = np.empty(n, np.int32), np.empty(n, np.float32)
    rel = np.empty((n, n_words) if relevancy else (0, n_words), np.float32)
    if spread is not None and (len(spread.own) != n or len(spread.indptr) != n + 1):
        raise SegAnyError("invalid_array", f"the 3D step's graph has {len(spread.own)} elements, the features {n}")
    with _RUNNING, _threads(n):
        keys, whole = _passes(args, fill, other, labels, scores, rel, n if spread is not None else 0)
        if spread is not None:
            graph = (spread.indptr, spread.indices, spread.weights, spread.own)
            _loops().spread_frontier(*graph, keys, whole, n_words, bool(other), labels, scores, rel)
    return Labelled(labels, scores, rel if relevancy else None)


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
    """The fused scores (N, K) float32 that `label_elements` answers from (same inputs): the rule's values
    themselves, for checking them (the tests' hand-made cases)."""
    args = _args(packed, seen, texts, n_words, mode, source, capability, temperature, evidence)
    n = packed.shape[0]
    fill = fill or filling(np.zeros(0), np.zeros((0, 1)), n)
    labels, scores, rel = np.empty(n, np.int32), np.empty(n, np.float32), np.empty((0, n_words), np.float32)
    with _RUNNING, _threads(n):
        return _passes(args, fill, False, labels, scores, rel, n)[1].copy()  # a copy: the buffer is reused


def _passes(args: tuple, fill: Filling, other: bool, labels, scores, rel, rows: int) -> tuple:  # type: ignore[no-untyped-def]
    """The pass over the features and the unseen elements' answers; with `rows` (N), also every element's key
    and fused scores (N, K), the 3D step's inputs, the latter in a buffer kept between queries (a fresh 96 MB
    at a million rows cost its page faults every query; the caller holds _RUNNING while it is in use)."""
    k = args[4]
    kept = np.empty((fill.kept, k), np.float32)
    if _whole[0].size < rows * k:
        _whole[0] = np.empty(rows * k, np.float32)
    keys, whole = np.empty(rows, np.int32), _whole[0][: rows * k].reshape(rows, k)
    loops = _loops()
    loops.answer(*args, fill.slot, kept, bool(other), labels, scores, rel, keys, whole)
    loops.answer_unseen(kept, fill.unseen, fill.slots, args[3], k, bool(other), labels, scores, rel, keys, whole)
    return keys, whole


@contextmanager
def _threads(rows: int) -> Iterator[None]:
    """numba's threads for a pass over `rows` rows: one below SERIAL_ROWS (numba's count is per calling thread)."""
    import numba  # here: a process that never labels need not load numba

    before = numba.get_num_threads()
    numba.set_num_threads(1 if rows < SERIAL_ROWS else before)
    try:
        yield
    finally:
        numba.set_num_threads(before)


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
