"""SAS's label query in one read of the features: per element, every source's cosine scores against the words
and the canonical negatives, SAS's capability-weighted fusion, the argmax label and the LERF score.

The work is compute-bound, not memory-bound: 20 words and 4 negatives over two sources of 64 fp16 components
are 3,072 multiply-adds per element against 256 bytes read, so at a million elements the products alone are
about 3 GFMA, tens of milliseconds at the peak of one core's vector units, while a streaming read of the
256 MB takes a fraction of that. So the products run as a small matrix product per 8-row tile written in
LLVM vector IR (`_gemm_tile`: the tile's 8 × up to 24 sums stay in registers, each feature value is
broadcast from the cached block and multiplied into them), on blocks of rows widened fp16 → fp32 into a
cache-sized buffer once; fusion, argmax and the score follow on the block while it is still in cache. Torch
or a BLAS takes 5–10× longer on these skinny products (figures: docs/journal.md).

Blocks go over numba's threads (`prange`). A step that needs the fused scores of the whole scene first (SAS's
3D step) takes them from `fused_scores` and answers with `label_scores`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from segany.errors import SegAnyError

LANES = 8  # float32 lanes of the tiles' vectors: the text columns are padded to a multiple
MODES = {"capability": 0, "average": 1, "source": 2}


@dataclass(frozen=True)
class Labelled:
    """Per element its word (-1: other), the relevancy of that word (0 for other) and, when asked, the
    relevancy of every word (N, W)."""

    labels: np.ndarray  # (N,) int32
    scores: np.ndarray  # (N,) float32
    relevancy: np.ndarray | None  # (N, W) float32


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
    unseen: np.ndarray | None = None,
    fill: np.ndarray | None = None,
    other: bool = False,
    relevancy: bool = False,
) -> Labelled:
    """Label every element of `packed` (N, S·C) int16 — S sources' C fp16 components per row, side by side,
    as raw bits — by `texts` (S, K, C) float32 unit rows (the first `n_words` of K the words, the rest the
    negatives). `seen` (N,) uint8 has bit s set where source s saw the element.

    `mode`: "capability" (SAS's rule with `capability` (S, n_words) and `temperature`), "average" (the mean of
    the sources that saw the element) or "source" (source `source` alone). Elements in `unseen` (U,), sorted,
    take the mean fused scores of their `fill` (U, k) rows. `other`: label -1 where a negative beats every
    word; `relevancy`: also return every word's relevancy (N, W)."""
    q = _Query.of(packed, seen, texts, n_words, mode, source, capability, temperature, unseen, fill)
    n = packed.shape[0]
    labels, scores = np.empty(n, np.int32), np.empty(n, np.float32)
    rel = np.empty((n, n_words) if relevancy else (0, n_words), np.float32)
    _loops().answer(*q.args, q.unseen, q.filled(), bool(other), labels, scores, rel)
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
    unseen: np.ndarray | None = None,
    fill: np.ndarray | None = None,
) -> np.ndarray:
    """The fused scores (N, K) float32 that `label_elements` answers from (same inputs), for a step that
    works on the scores of the whole scene before the answer (the 3D step) — then `label_scores`."""
    q = _Query.of(packed, seen, texts, n_words, mode, source, capability, temperature, unseen, fill)
    out = np.empty((packed.shape[0], texts.shape[1]), np.float32)
    _loops().fused_all(*q.args, q.unseen, q.filled(), out)
    return out


def label_scores(fused: np.ndarray, n_words: int, *, other: bool = False, relevancy: bool = False) -> Labelled:
    """`label_elements`' answer from fused scores (N, K) float32 (the words, then the negatives)."""
    n, k = fused.shape
    if not 0 < n_words < k:
        raise SegAnyError("invalid_array", f"fused scores need the {n_words} words and a negative, got {k} columns")
    labels, scores = np.empty(n, np.int32), np.empty(n, np.float32)
    rel = np.empty((n, n_words) if relevancy else (0, n_words), np.float32)
    _loops().words(np.ascontiguousarray(fused, np.float32), n_words, k, bool(other), labels, scores, rel)
    return Labelled(labels, scores, rel if relevancy else None)


@dataclass(frozen=True)
class _Query:
    """A query's inputs checked and laid out for the kernels."""

    args: tuple
    kp: int
    unseen: np.ndarray
    fill: np.ndarray

    @classmethod
    def of(cls, packed, seen, texts, n_words, mode, source, capability, temperature, unseen, fill) -> _Query:  # type: ignore[no-untyped-def]
        n = packed.shape[0]
        s_count, k, c = texts.shape
        if packed.dtype != np.int16 or packed.shape != (n, s_count * c) or not packed.flags.c_contiguous:
            raise SegAnyError(
                "invalid_array", f"packed must be C-contiguous int16 (N, {s_count * c}), got {packed.shape}"
            )
        if not 0 < n_words < k or seen.shape != (n,) or mode not in MODES or not 0 <= source < s_count:
            raise SegAnyError("invalid_array", "label query: words, seen, mode or source do not fit the features")
        kp = -(-k // LANES) * LANES
        # per source the texts transposed (C, Kp), zero columns past K: the tile reads whole vectors
        tt = np.zeros((s_count, c, kp), dtype=np.float32)
        tt[:, :, :k] = np.transpose(texts, (0, 2, 1))
        cap = np.zeros((s_count, n_words), np.float32) if capability is None else capability.astype(np.float32)
        unseen = np.zeros(0, np.int64) if unseen is None else unseen.astype(np.int64)
        fill = np.zeros((0, 1), np.int64) if fill is None else fill.astype(np.int64)
        if len(unseen) > 1 and np.any(np.diff(unseen) <= 0):
            raise SegAnyError("invalid_array", "unseen must be sorted and distinct")
        args = (packed, seen.astype(np.uint8), tt, n_words, k, MODES[mode], source, cap, np.float32(temperature))
        return cls(args, kp, unseen, fill)

    def filled(self) -> np.ndarray:
        """Per unseen element the mean fused scores of its fill rows (U, Kp)."""
        out = np.empty((len(self.unseen), self.kp), np.float32)
        _loops().fill(*self.args, self.fill, out)
        return out


def _loops() -> ModuleType:
    """The numba loops (`label_loops`), imported on first use."""
    from segany.kernels import label_loops

    return label_loops
