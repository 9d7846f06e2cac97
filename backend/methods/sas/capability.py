"""How good each language source is at each word, and at each element, measured on the scene itself.

SAS measures a model's per-category IoU on images Stable Diffusion synthesises; without a generator we
measure each source against what all sources agree on after lifting. For word w, compare what the source
said in each view (its region's nearest word) with the consensus (the nearest word of the sources' mean
lifted score), over a fixed sample of elements weighted by blend weight:

    capability(w) = Σ weight · [view says w and consensus says w] / Σ weight · [view says w or consensus says w],

the IoU of the source's per-view labels with the consensus labels. Where sources are weak on different
words the consensus is mostly right, so a source that mistakes a part in many views scores low on both the
part's word and the word it takes it for, while the source that tells them apart scores high on both —
which is what SAS's rule needs to pick it. Its blind spot: a mistake every source makes is the consensus.
With one source the consensus is its own lifted label, and the estimate measures multi-view agreement.

A per-word capability is global, and so blind where a source says a word both rightly and wrongly: on a mug
(two names, one source taking the body for the handle in most views, the other the handle for the body) the
first source's "handle" is unreliable overall, so SAS's rule follows the second everywhere, handle included
(any per-word IoU, precision or recall has the same blind spot). What tells the sources apart there is local:
on the handle the first source's views all say "handle", the second's disagree. `view_evidence` is that
number per element and source, and fusion multiplies each source's capability sum by it (fusion.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .lift import RegionVotes


def agreement(votes: RegionVotes, consensus: np.ndarray, region_labels: np.ndarray, n_words: int) -> np.ndarray:
    """Per word, the IoU (n_words,) between region labels and consensus labels over the sample's credits;
    `consensus` (S,) per sampled element, `region_labels` (R,) per region, -1 for neither."""
    said = region_labels[votes.region]
    lifted = consensus[votes.element]
    w = votes.weight.astype(np.float64)
    both = np.bincount(
        said[(said == lifted) & (said >= 0)], weights=w[(said == lifted) & (said >= 0)], minlength=n_words
    )
    said_total = np.bincount(said[said >= 0], weights=w[said >= 0], minlength=n_words)
    lifted_total = np.bincount(lifted[lifted >= 0], weights=w[lifted >= 0], minlength=n_words)
    union = said_total + lifted_total - both
    return np.divide(both, union, out=np.zeros(n_words), where=union > 0)[:n_words]


def view_evidence(length: np.ndarray, credit: np.ndarray, weight: np.ndarray, weight_sq: np.ndarray) -> np.ndarray:
    """Per element r ** n (N,) float32 from its credits: r = |Σ w·e| / Σ w·|e|, the blend-weighted mean cosine
    between what each view said (e) and the element's lifted feature, and n = (Σ w)² / Σ w², the effective
    number of views (Kish's), so that agreement of many views counts for more than of a few (n views each
    agreeing r: r ** n, as independent evidence multiplies). 1 where every view said the same; 0 where no view
    spoke. `length` |Σ w·e|, `credit` Σ w·|e|, `weight` Σ w, `weight_sq` Σ w² per element."""
    seen = (credit > 0) & (weight_sq > 0)
    r = np.clip(np.divide(length, credit, out=np.zeros_like(length), where=seen), 0.0, 1.0)
    n = np.divide(weight * weight, weight_sq, out=np.zeros_like(weight), where=seen)
    return np.where(seen, r.astype(np.float64) ** n, 0.0).astype(np.float32)
