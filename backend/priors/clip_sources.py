"""Both CLIP language sources over one loaded model, as the one prior a method takes (`sas` fuses them).

Dense maps see every pixel but blur part boundaries; crops see whole parts but only where a mask is.
SAS's point is that sources err differently, so fusing the two beats either; loading the weights once
halves the memory and the start-up.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .base import Prior
from .clip_crops import ClipCropsPrior
from .config import PriorContext, PriorSpec


class ClipSourcesPrior(Prior):
    """`clip` (dense, ClearCLIP) and `clip_crops` (masks' crops) sharing one CLIP model; options as clip_crops'."""

    name: ClassVar[str] = "clip_sources"
    capabilities: ClassVar[frozenset[str]] = frozenset({"text"})
    Config: ClassVar[type] = ClipCropsPrior.Config

    def __init__(self, config: ClipCropsPrior.Config, ctx: PriorContext | None = None) -> None:
        self.config = config
        self.crops = ClipCropsPrior(config, ctx)

    def describe(self) -> PriorSpec:
        return PriorSpec(self.name, self.crops.describe().options)

    def text_sources(self) -> dict[str, Prior]:
        return {"clip": self.crops.clip, "clip_crops": self.crops}

    def embed_text(self, words: list[str]) -> np.ndarray:
        """Text in the space both sources share (one model)."""
        return self.crops.clip.embed_text(words)
