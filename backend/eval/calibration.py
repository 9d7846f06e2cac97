"""Capability tables from labelled scenes: each language source's per-word IoU, as `segany calibrate` writes.

SAS defines a model's capability as its per-category IoU on a labelled set. Here the labelled set is scenes
like the user's (a PSB directory or labelled PLYs with part names); each source labels each scene alone and
its per-word IoU is scored exactly as `segany eval --task label` scores the `source:<name>` variant. A word's
capability is the mean of its IoUs over the scenes that have it (each scene counts once, whatever its size).
The table's JSON is what a label query's `calibration` takes (`segany.methods.sas.calibration.Calibration`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SegAnyError
from ..methods.sas.calibration import FORMAT, Calibration, check_calibration
from ..options import parse_options

SOURCE = "source:"  # the label eval's variant of one source alone


def calibration_table(shapes: list[dict[str, Any]], note: str) -> dict[str, Any]:
    """The table (JSON) from label-eval shape records that ran each source alone."""
    if not shapes:
        raise SegAnyError("bad_request", "no labelled scenes to calibrate on")
    models: dict[str, str] = {}
    for s in shapes:
        for name, model in s["models"].items():
            if models.setdefault(name, model) != model:
                raise SegAnyError(
                    "bad_request", f"source {name!r} ran as {model} on shape {s['id']} but as {models[name]} before"
                )
    ious: dict[str, dict[str, list[float]]] = {name: {} for name in models}
    for s in shapes:
        for name in models:
            for word, iou in s["variants"][SOURCE + name]["iou"].items():
                ious[name].setdefault(word, []).append(iou)
    sources = []
    for name, per in ious.items():
        words = sorted(per)
        sources.append(
            {"name": name, "model": models[name], "words": words, "iou": [float(np.mean(per[w])) for w in words]}
        )
    return {"format": FORMAT, "sources": sources, "note": note}


def table_capability(table: dict[str, Any], words: list[str]) -> dict[str, dict[str, float]]:
    """Per source, the table's IoU of each of `words` that every source has (what a query would use)."""
    per = {s["name"]: dict(zip(s["words"], s["iou"], strict=True)) for s in table["sources"]}
    covered = [w for w in words if all(w in p for p in per.values())]
    return {name: {w: p[w] for w in covered} for name, p in per.items()}


def load_table(path: Path) -> dict[str, Any]:
    """A calibration file's JSON, checked as a query would check it (so a bad file fails before any prepare)."""
    path = Path(path)
    if not path.is_file():
        raise SegAnyError("not_found", f"calibration file {path} does not exist (write one with `segany calibrate`)")
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SegAnyError("corrupt_file", f"calibration file {path} is not JSON: {exc}") from exc
    check_calibration(parse_options(Calibration, table, owner=f"calibration file {path.name}"))
    return table
