"""SA3D's typed inputs: its options (sizes by device, SA3D's published constants, each bounded) and its query."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ...options import Options, option
from ...scene import Scene
from ..queries import ClickQuery


@dataclass(frozen=True)
class SA3DOptions(Options):
    """SA3D's constants (3 self-prompt points, IoU 0.5 rejection, λ = 0.3) and view sizes for the device.

    The defaults (a CPU's) render 20 views at 160 px with the 8 strongest contributors per pixel: the real
    45K-Gaussian donut renders in seconds and a query stays within seconds. A GPU ("cuda") renders more and
    larger views.
    """

    method: ClassVar[str] = "sa3d"

    views: int = option(20, 1, 512, doc="views rendered around the scene")
    resolution: int = option(160, 16, 2048, doc="view size in pixels")
    top_k: int = option(8, 1, 64, doc="strongest contributors kept per pixel")
    fov_deg: float = option(45.0, 1.0, 179.0, doc="field of view of the views, in degrees")
    prompts: int = option(3, 1, 32, doc="self-prompt points per view")
    iou_threshold: float = option(0.5, 0.0, 1.0, doc="a view's mask is rejected below this IoU with the lifted mask")
    negative_weight: float = option(0.3, 0.0, 100.0, doc="weight of negative evidence (λ)")
    mask: str = option("best", choices=("best", "smallest", "largest"), doc="which candidate mask a prompt takes")
    fill_hidden: bool = option(True, doc="select the inside of a selected closed shell too")
    seed: int = option(0, 0, 2**31, doc="seed of the views")

    @classmethod
    def presets(cls, scene: Scene | None) -> dict[str, dict[str, Any]]:
        """A GPU's larger views; "tiny": a prepare under a second on a few hundred elements (what tests run)."""
        return {"cuda": {"views": 32, "resolution": 224}, "tiny": {"views": 8, "resolution": 56, "top_k": 4}}


@dataclass(frozen=True)
class SA3DQuery(ClickQuery):
    """Clicks only: SA3D's settings are fixed at prepare."""

    method: ClassVar[str] = "sa3d"
