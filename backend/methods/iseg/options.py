"""iSeg's typed inputs: its options (sizes per device, bounded) and its query (clicks + refinement)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ...options import Options, option
from ...scene import Scene
from ..queries import ClickQuery
from .decoder import PRESETS as DECODERS


@dataclass(frozen=True)
class ISegOptions(Options):
    """Defaults are the CPU sizes: fewer views, steps and click vertices than iSeg's GPU ones ("cuda").

    Both use the light decoder (iSeg's own head, "full", stays available) and take the prior's best-scored
    candidate mask ("best"; iSeg took SAM's smallest): the geometric prior's smallest candidate is often a
    sliver of a part. "members" > 1 trains an ensemble (seeds seed, seed + 1, …) whose answers a query
    averages; with the geometric prior it was not worth its cost (docs/journal.md). Upper bounds sit
    several times above the GPU sizes: they refuse typing mistakes, not large but sane runs.
    """

    method: ClassVar[str] = "iseg"

    views: int = option(24, 1, 2048, doc="views rendered around the mesh (bench iseg_sam renders 1,000)")
    resolution: int = option(192, 16, 1024, doc="view size in pixels (SAM reads 1024)")
    encoder_width: int = option(128, 8, 1024, doc="hidden width of the feature field")
    encoder_depth: int = option(2, 1, 16, doc="hidden layers of the feature field")
    fourier: int = option(128, 1, 1024, doc="Fourier features of a vertex position")
    sigma: float = option(5.0, 0.0, 100.0, doc="scale of the Fourier frequencies")
    encoder_steps: int = option(400, 1, 100_000, doc="feature-field training steps")
    encoder_pixels: int = option(8192, 1, 262_144, doc="pixels per feature-field step")
    encoder_lr: float = option(1e-3, 0.0, 1.0, doc="feature-field learning rate")
    click_vertices: int = option(64, 1, 65_536, doc="vertices the training clicks are drawn from (farthest points)")
    views_per_click: int = option(3, 1, 64, doc="views a training click is shown in")
    second_clicks: int = option(2, 0, 64, doc="follow-up clicks sampled per first click")
    mask: str = option("best", choices=("smallest", "best"), doc="which of the prior's candidate masks to train on")
    min_mask_pixels: int = option(4, 1, 65_536, doc="smaller prior masks are not used")
    decoder: str = option("light", choices=tuple(DECODERS), doc="click decoder head")
    decoder_steps: int = option(200, 1, 100_000, doc="decoder training steps")
    decoder_batch: int = option(16, 1, 1024, doc="samples per decoder step")
    decoder_pixels: int = option(384, 1, 65_536, doc="pixels per decoder sample")
    decoder_lr: float = option(1e-3, 0.0, 1.0, doc="decoder learning rate")
    dice_weight: float = option(1.0, 0.0, 100.0, doc="weight of the dice loss beside cross-entropy")
    threshold: float = option(0.5, 0.01, 0.99, doc="probability a vertex is selected at")
    seed: int = option(0, 0, 2**31 - 1, doc="seed of views, samples and networks")
    members: int = option(1, 1, 8, doc="ensemble members a query averages")

    @classmethod
    def presets(cls, scene: Scene | None) -> dict[str, dict[str, Any]]:
        """iSeg's GPU sizes (its click vertices grow with the mesh: 3% of the vertices), and "tiny": every
        stage runs, on a ~1,000-vertex mesh in about a second on one CPU core, but trains too little to
        separate parts (what tests of the plumbing run; tests of quality train longer)."""
        n = scene.n_elements if scene is not None else 0
        cuda = {
            "views": 100, "resolution": 224, "encoder_width": 256, "encoder_depth": 4, "fourier": 256,
            "encoder_steps": 2000, "encoder_pixels": 16384, "click_vertices": max(32, round(0.03 * n)),
            "views_per_click": 8, "second_clicks": 5, "decoder_steps": 3000, "decoder_pixels": 1024,
            "decoder_lr": 1e-4,
        }  # fmt: skip
        tiny = {
            "views": 4, "resolution": 48, "encoder_width": 32, "encoder_depth": 1, "fourier": 16,
            "encoder_steps": 10, "encoder_pixels": 512, "click_vertices": 8, "views_per_click": 2,
            "second_clicks": 1, "decoder_steps": 10, "decoder_batch": 4, "decoder_pixels": 128,
        }  # fmt: skip
        return {"cuda": cuda, "tiny": tiny}


@dataclass(frozen=True)
class ISegQuery(ClickQuery):
    """Clicks, and whether to refine the decoder's answer along creases ("auto": when the decoder's
    training loss says it is coarse)."""

    method: ClassVar[str] = "iseg"

    refine: str | bool = option("auto", choices=("auto", True, False), doc="crease refinement: 'auto', true or false")
