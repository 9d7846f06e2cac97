"""SAGA's typed inputs: the prepare's sizes and training constants (bounded, by device) and its query."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ...options import Options, option
from ...scene import Scene
from ..queries import ClickQuery


@dataclass(frozen=True)
class SAGAOptions(Options):
    """Views to render, how many contributors each pixel keeps, and the feature training.

    The defaults (a CPU's) train 32-d features (SAGA's size) for 1500 steps of 512 sampled pixels on 24
    views of 128 px; "tiny" trains for a second or two on a few hundred elements (what tests run).
    """

    method: ClassVar[str] = "saga"

    views: int = option(24, 1, 512, doc="views rendered around the scene")
    resolution: int = option(128, 16, 2048, doc="view size in pixels")
    top_k: int = option(8, 1, 64, doc="strongest contributors kept per pixel (the frozen pixel-to-element map)")
    fov_deg: float = option(45.0, 1.0, 179.0, doc="field of view of the views, in degrees")
    dim: int = option(32, 4, 256, doc="channels of each element's affinity feature")
    smooth_k: int = option(16, 1, 64, doc="neighbours whose features an element's feature is averaged over (SAGA's K)")
    steps: int = option(1500, 1, 1_000_000, doc="training steps")
    pixels: int = option(512, 8, 65536, doc="pixels sampled per step (all their pairs are compared)")
    scales_per_step: int = option(4, 1, 64, doc="scales each step's pixel pairs are judged at")
    lr: float = option(0.01, 1e-6, 1.0, doc="Adam learning rate of the features and the gate")
    seed: int = option(0, 0, 2**31, doc="seed of the views, the initial features and the sampling")

    @classmethod
    def presets(cls, scene: Scene | None) -> dict[str, dict[str, Any]]:
        """A GPU's larger views and longer training; "tiny": seconds on a few hundred elements."""
        return {
            "cuda": {"views": 48, "resolution": 224, "steps": 4000, "pixels": 1024},
            "tiny": {"views": 8, "resolution": 64, "top_k": 4, "steps": 200, "pixels": 256},
        }


@dataclass(frozen=True)
class SAGAQuery(ClickQuery):
    """Clicks plus the physical size of the part wanted: `scale` in scene units (> 0), "auto" (the prior's
    size around the click) or "reference" (the median size of every mask of the prepare)."""

    method: ClassVar[str] = "saga"

    scale: float | str = option(
        "auto",
        1e-30,
        None,
        doc='size of the part in scene units (a number > 0), "auto" or "reference"',
    )
