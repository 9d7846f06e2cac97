"""Capability from a labelled calibration set: each source's measured per-word IoU, given with the query.

SAS's capability is a model's per-category IoU on labelled images. When the user has labelled scenes like
theirs, `segany calibrate` measures each source's per-word IoU on them (`segany.eval.calibration`) and
writes a table; a label query that carries the table (`"calibration": {...}`, the file's JSON as it is)
uses those IoUs instead of the scene-consensus estimate (`capability.py`), which cannot see a mistake every
source makes. The table is independent of any scene: it names each source and the model behind it, so a
table measured with other weights or other source settings is refused rather than silently misapplied.

A word the table lacks for some source keeps the scene estimate for every source (mixing a measured IoU
with an agreement score would compare unlike numbers); `extras["calibrated"]` says which words used the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ...errors import SegAnyError
from ...options import listed, option
from ...priors import Prior

FORMAT = "segany-capability/1"
MAX_SOURCES = 16
MAX_CALIBRATED_WORDS = 4096  # a vocabulary, not a query's word list
# options that are scene data (the evaluation oracle's labels and names) or a file's place, not the model
_NOT_THE_MODEL = ("labels", "names", "checkpoint")


@dataclass(frozen=True)
class SourceCalibration:
    """One source's measured IoU per word."""

    name: str = option(doc="the source's name, as the state lists it (e.g. oracle_a, clip, clip_crops)")
    model: str = option(doc="the model behind the source (model_id), so other weights or settings are refused")
    words: tuple[str, ...] = option(most=MAX_CALIBRATED_WORDS, doc="the calibrated words")
    iou: np.ndarray = option(kinds="iuf", ndim=1, doc="per word, the source's mean IoU on the labelled scenes")  # noqa: RUF009


@dataclass(frozen=True)
class Calibration:
    """What `segany calibrate` writes and a label query's `calibration` takes."""

    format: str = option(choices=(FORMAT,), doc="the table's format")
    sources: tuple[SourceCalibration, ...] = option(most=MAX_SOURCES, doc="per language source, its IoU per word")
    note: str = option("", doc="how it was measured (data, scenes, commit); for people")


def model_id(source: Prior) -> str:
    """What identifies the model behind a language source across scenes: its name and its options, less
    scene data and file places (a CLIP source's weights are named by their content key)."""
    return f"{source.name}({_settings(source.describe().options)})"


def _settings(options: dict[str, Any]) -> str:
    parts = []
    for key in sorted(options):
        value = options[key]
        if key in _NOT_THE_MODEL or isinstance(value, (np.ndarray, list, tuple)):
            continue
        parts.append(f"{key}=({_settings(value)})" if isinstance(value, dict) else f"{key}={value!r}")
    return ", ".join(parts)


def check_calibration(table: Calibration) -> None:
    """bad_request for a table no query can use: no sources, a source twice, words twice or missing IoUs,
    IoUs outside [0, 1] or not numbers."""
    if not table.sources:
        raise SegAnyError("bad_request", "the calibration table has no sources; measure one with `segany calibrate`")
    names = [s.name for s in table.sources]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SegAnyError("bad_request", f"the calibration table lists sources {listed(twice)} more than once")
    for s in table.sources:
        where = f"calibration source {s.name!r}"
        if not s.words:
            raise SegAnyError("bad_request", f"{where} has no words")
        folded = [w.strip().casefold() for w in s.words]
        if len(set(folded)) != len(folded):
            raise SegAnyError("bad_request", f"{where} lists a word twice")
        if len(s.iou) != len(s.words):
            raise SegAnyError("bad_request", f"{where} has {len(s.words)} words but {len(s.iou)} IoUs")
        iou = np.asarray(s.iou, dtype=np.float64)
        if not np.all(np.isfinite(iou)) or iou.min() < 0 or iou.max() > 1:
            raise SegAnyError("bad_request", f"{where}: every IoU must be a number in [0, 1], got {iou.tolist()[:8]}")


def apply_calibration(
    estimate: torch.Tensor, table: Calibration, sources: dict[str, Prior], words: tuple[str, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The capability (S, W), measured where the table has the word for every source and `estimate`
    elsewhere, and per word whether it was measured (W,) bool. `sources` in the state's order."""
    given = {s.name: s for s in table.sources}
    unknown = sorted(set(given) - set(sources))
    missing = sorted(set(sources) - set(given))
    if unknown or missing:
        raise SegAnyError(
            "bad_request",
            f"the calibration table's sources {sorted(given)} are not this scene's {list(sources)}; "
            "calibrate with the prior the scene was prepared with (`segany calibrate DATA --prior …`)",
        )
    out = estimate.clone()
    found = torch.ones(len(words), dtype=torch.bool)
    for i, (name, source) in enumerate(sources.items()):
        entry, expected = given[name], model_id(source)
        if entry.model != expected:
            raise SegAnyError(
                "bad_request",
                f"the calibration of source {name!r} was measured with {entry.model}, but this scene's source is "
                f"{expected}; calibrate again with these weights and options",
            )
        index = {w.strip().casefold(): j for j, w in enumerate(entry.words)}
        for k, word in enumerate(words):
            j = index.get(word.casefold())
            if j is None:
                found[k] = False
            else:
                out[i, k] = float(entry.iou[j])
    return torch.where(found[None, :], out, estimate), found
