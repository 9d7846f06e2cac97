"""SAS's typed inputs: its options (view sizes by device, SAS's fusion temperature) and its label query."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from ...errors import SegAnyError
from ...options import Options, listed, option, parse_options, shown
from ...scene import Scene
from .calibration import Calibration, check_calibration

MAX_WORDS = 64  # one colour and one attribute per word in the add-on; past this a list is a script's mistake
MAX_WORD = 200  # characters in one word (a short phrase); CLIP reads 77 tokens at most


@dataclass(frozen=True)
class SASOptions(Options):
    """How the scene is seen and how much is kept. The fusion temperature is SAS's (0.05,
    feat_fusion/fusion_scannet.py); the CPU defaults render 20 views of 160 px as SA3D does."""

    method: ClassVar[str] = "sas"

    views: int = option(20, 1, 512, doc="views rendered around the scene")
    resolution: int = option(160, 16, 2048, doc="view size in pixels")
    top_k: int = option(8, 1, 64, doc="strongest contributors per pixel an embedding is registered onto")
    fov_deg: float = option(45.0, 1.0, 179.0, doc="field of view of the views, in degrees")
    seed: int = option(0, 0, 2**31, doc="seed of the views and of the capability sample")
    dims: int = option(64, 4, 1024, doc="embedding components kept per element and source (2 bytes each)")
    temperature: float = option(0.05, 1e-4, 100.0, doc="softmax temperature over the sources' capability weights")
    sample: int = option(20_000, 100, 10_000_000, doc="elements whose per-view labels estimate each capability")

    @classmethod
    def presets(cls, scene: Scene | None) -> dict[str, dict[str, Any]]:
        """A GPU's larger views; "tiny": a prepare under a second on a few hundred elements (what tests run)."""
        return {
            "cuda": {"views": 32, "resolution": 224},
            "tiny": {"views": 6, "resolution": 48, "top_k": 4},
        }


@dataclass(frozen=True)
class LabelQuery:
    """Words to label the scene with (see docs/methods/sas.md); `fusion`, `source` and `superpoints` pick the
    evaluation's variants."""

    words: tuple[str, ...] = option(most=MAX_WORDS, doc="the words, one label each")
    other: bool = option(False, doc="label -1 where a canonical negative beats every word")
    # "capability": SAS's rule with each source's capability sum times its view evidence at the element
    # (capability.py); "sas": the rule as published, per-word capability only; "average": the plain mean
    fusion: str = option(
        "capability", choices=("capability", "sas", "average"), doc="fusion rule: ours, SAS's as published, a mean"
    )
    source: str | None = option(None, doc="one language source alone (evaluation)")
    # named for SAS's superpoint stage, which it stands in for: on by default since it gained on every scene
    # kind of the oracle evaluation (docs/methods/sas.md); false gives the fused scores as they are
    superpoints: bool = option(True, doc="the 3D step: spread the fused scores over the walk graph")
    # off unless asked: (N, W) float32 is 80 MB at a million elements and 20 words, and only highlighting reads it
    relevancy: bool = option(False, doc="also answer every word's relevancy per element (extras.relevancy)")
    calibration: Calibration | None = option(None, doc="measured capability (`segany calibrate`'s table)")  # noqa: RUF009


def parse_label_query(query: Any) -> LabelQuery:
    """The query checked: 1..MAX_WORDS distinct, non-empty words of at most MAX_WORD characters."""
    usage = f'a sas query is {{"words": ["seat", "leg", ...], "other": false}} with 1 to {MAX_WORDS} distinct words'
    if not isinstance(query, dict) or "words" not in query:
        raise SegAnyError("bad_request", usage)
    words = query["words"]
    if not isinstance(words, (list, tuple)):
        raise SegAnyError("bad_request", f"words must be a list of texts, got {shown(words)}; {usage}")
    if len(words) > MAX_WORDS:
        raise SegAnyError("bad_request", f"a query takes at most {MAX_WORDS} words, got {len(words)}; label in parts")
    parsed = parse_options(LabelQuery, query, owner="sas query")
    cleaned = tuple(w.strip() for w in parsed.words)
    if not cleaned:
        raise SegAnyError("bad_request", f"no words to label with; {usage}")
    for i, w in enumerate(cleaned):
        if not w or len(w) > MAX_WORD:
            raise SegAnyError("bad_request", f"word {i} must hold 1 to {MAX_WORD} characters, got {shown(w)}")
    folded = [w.casefold() for w in cleaned]
    twice = sorted({w for w in cleaned if folded.count(w.casefold()) > 1})
    if twice:
        raise SegAnyError("bad_request", f"words {listed(twice)} are given twice; each label needs its own word")
    if parsed.calibration is not None:
        check_calibration(parsed.calibration)
    return replace(parsed, words=cleaned)
