"""What `segany label` writes: the scene labelled by word (PLY), a picture with a colour legend, and a JSON key.

The PLY is the parts PLY (`segany everything` writes the same: an int `part` and its colour per element,
splats keep the 3DGS layout); here `part` is the word's index in labels.json's `words`, -1 for other.
Colours are the parts' palette, so a label file and a parts file of one scene read alike.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .formats import write_parts_ply
from .methods.base import Selection
from .methods.saga.everything import cluster_colours
from .picture import render_parts
from .scene import Scene


def split_words(text: str) -> list[str]:
    """ "seat, leg , back" → ["seat", "leg", "back"]: commas separate, spaces around a word do not count."""
    return [w.strip() for w in text.split(",") if w.strip()]


def write_labels(scene: Scene, sel: Selection, words: list[str], out: Path) -> dict[str, Path]:
    """labels.ply, labels.png (legend: word, share of the elements) and labels.json (words, colours, counts)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(sel.extras["labels"], np.int32)
    colours = cluster_colours(len(words))
    ply = write_parts_ply(out / "labels.ply", scene, labels, colours)
    png = render_parts(scene, labels, colours, out / "labels.png", shown=len(words), names=list(words))
    counts = np.bincount(labels[labels >= 0], minlength=len(words))
    key = {
        "words": list(words),
        "colours": np.round(colours, 4).tolist(),
        "counts": dict(zip(words, counts.tolist(), strict=True)),
        "other": int((labels < 0).sum()),
        "elements": int(scene.n_elements),
        "kind": scene.kind,
    }
    path = out / "labels.json"
    path.write_text(json.dumps(key, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return {"ply": ply, "png": png, "json": path}
