"""SAS's capability-guided fusion of several sources' scores per element, laid out for one read of the features.

feat_fusion/fusion_scannet.py of SAS: each source predicts a class; a source's weight is its capability for
both candidate classes (its own prediction's and the other source's), the weights are normalised to sum 1,
then sharpened by a softmax with temperature 0.05, and the fused feature is the weighted sum of the
sources' features. With more than two sources a source's weight sums its capability over every source's
prediction. Cosine scores are linear in the feature, so fusing each source's scores against the words is
fusing the features, and the sources need not share one embedding space.

The rule runs in `segany.kernels.labels`, which forms every source's scores, fuses and answers block by
block in one read of the features (figures: docs/methods/sas.md, Speed). This module keeps a state's
features in the layout it reads — every source's fp16 components side by side per element, a source's
"seen" as a bit — built once per state (half the bytes of unpacking them to float32).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from segany.kernels.labels import Filling, Labelled, Neighbours, filling, label_elements


@dataclass(frozen=True)
class Packed:
    """A state's features as the label kernel reads them."""

    rows: np.ndarray  # (N, S·C) int16: the fp16 bits of every source's components, zero-padded to C
    seen: np.ndarray  # (N,) uint8: bit s set where source s saw the element (a non-zero feature)
    fill: Filling  # the elements no view showed and the shown ones each takes its scores from
    sample_rows: np.ndarray  # (M, S·C) int16: `rows` of the capability sample
    sample_seen: np.ndarray  # (M,) uint8
    channels: int  # C
    evidence: np.ndarray | None  # (S, N) float32: each source's weight at the element (`source{i}.evidence`)


def pack(tensors: dict[str, torch.Tensor], n_sources: int) -> Packed:
    """The state's `source{i}.features` (N, C_i) float16, `unseen`, `fill` and `sample` as `Packed`."""
    features = [tensors[f"source{i}.features"] for i in range(n_sources)]
    n = len(features[0])
    c = max(f.shape[1] for f in features)
    rows = np.zeros((n, n_sources * c), np.int16)
    seen = np.zeros(n, np.uint8)
    for i, f in enumerate(features):
        bits = f.contiguous().view(torch.int16).numpy()
        rows[:, i * c : i * c + f.shape[1]] = bits
        seen |= ((bits & 0x7FFF) != 0).any(axis=1).astype(np.uint8) << i  # ±0 is no opinion
    fill = filling(tensors["unseen"].numpy(), tensors["fill"].numpy(), n)
    sample = tensors["sample"].numpy().astype(np.int64)
    named = [f"source{i}.evidence" for i in range(n_sources)]
    evidence = np.stack([tensors[k].numpy() for k in named]).astype(np.float32) if named[0] in tensors else None
    return Packed(rows, seen, fill, np.ascontiguousarray(rows[sample]), seen[sample], c, evidence)


def text_table(texts: list[torch.Tensor], channels: int) -> np.ndarray:
    """Per source its (K, C_i) text rows as one (S, K, C) float32 array, zero-padded like `Packed.rows`."""
    out = np.zeros((len(texts), len(texts[0]), channels), np.float32)
    for i, t in enumerate(texts):
        out[i, :, : t.shape[1]] = t.numpy()
    return out


def consensus(packed: Packed, texts: np.ndarray, n_words: int) -> np.ndarray:
    """Per sampled element the nearest word of the mean score of the sources that saw it, -1 where none did:
    what the capability estimate compares each source's views with (`capability.py`)."""
    done = label_elements(packed.sample_rows, packed.sample_seen, texts, n_words, mode="average")
    return np.where(packed.sample_seen > 0, done.labels, -1)


def label(
    packed: Packed,
    texts: np.ndarray,
    n_words: int,
    *,
    mode: str,
    source: int,
    capability: np.ndarray,
    temperature: float,
    other: bool,
    relevancy: bool,
    spread: Neighbours | None = None,
) -> Labelled:
    """Every element's label (and score, and with `relevancy` every word's relevancy) by SAS's rule
    (`mode` "capability"), the sources' mean ("average") or one source ("source"); an element no view showed
    takes the mean fused scores of its `fill` elements. `spread`: the 3D step's operator (spreading.py)."""
    keys = {"mode": mode, "source": source, "capability": capability, "temperature": temperature}
    return label_elements(
        packed.rows,
        packed.seen,
        texts,
        n_words,
        **keys,
        fill=packed.fill,
        other=other,
        relevancy=relevancy,
        spread=spread,
        evidence=packed.evidence if mode == "capability" else None,
    )
