"""The walk's typed inputs: its graph options (the same on every device) and its query (clicks only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ...options import Options, option
from ..queries import ClickQuery
from .graph import KNN


@dataclass(frozen=True)
class WalkOptions(Options):
    """How the graph is built; nothing here is trained, so no preset changes them."""

    method: ClassVar[str] = "walk"

    colour: float = option(1.0, 0.0, 100.0, doc="weight of colour differences between neighbours (0: colour ignored)")
    neighbours: int = option(KNN, 3, 64, doc="nearest neighbours a splat or point is joined to")
    max_nodes: int = option(
        50_000, 1_000, 2_000_000, doc="larger splat and point scenes are coarsened to this many nodes"
    )


@dataclass(frozen=True)
class WalkQuery(ClickQuery):
    """Clicks only."""

    method: ClassVar[str] = "walk"
