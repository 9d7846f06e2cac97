"""How good each language source is at each word, measured on the scene itself.

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
"""

from __future__ import annotations

import numpy as np

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
