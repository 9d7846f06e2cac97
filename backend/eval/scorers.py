"""What the harness clicks on: a method behind the Engine, or the in-harness classical baseline.

Both answer `query(clicks) -> Selection` for the shape last given to `prepare`, so the protocol code
never knows which one it drives.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from ..methods.base import Selection
from ..scene import PointScene, Scene, SplatScene, splat_normals
from .baseline import RandomWalkBaseline
from .clicks import Click
from .data import Shape
from .geometry import Geometry


class Scorer(Protocol):
    name: str
    scene_kinds: tuple[str, ...]

    def fits(self, scene: Scene) -> bool:
        """Whether it works on this scene's kind (a shape of another kind is skipped for it)."""

    def prepare(self, shape: Shape, geom: Geometry) -> str:
        """Per-shape work; returns a short note (e.g. 'loaded from cache')."""

    def query(self, clicks: list[Click]) -> Selection: ...

    def release(self) -> None:
        """Drop what prepare kept for the current shape."""


def element_normals(scene: Scene) -> np.ndarray | None:
    """Normals for the baseline's concavity test: given normals, or each Gaussian's shortest axis."""
    if isinstance(scene, PointScene):
        return scene.normals
    if isinstance(scene, SplatScene):
        return splat_normals(scene)
    return None


class BaselineScorer:
    """The classical random-walker baseline (see baseline.py); no model, no prior."""

    name = "baseline"
    scene_kinds = ("mesh", "splats", "points")

    def __init__(self) -> None:
        self._walker: RandomWalkBaseline | None = None

    def fits(self, scene: Scene) -> bool:
        return scene.kind in self.scene_kinds

    def prepare(self, shape: Shape, geom: Geometry) -> str:
        self._walker = RandomWalkBaseline(geom, element_normals(shape.scene))
        return "graph built"

    def query(self, clicks: list[Click]) -> Selection:
        if self._walker is None:
            raise AssertionError("BaselineScorer.query before prepare")
        return self._walker.query(clicks)

    def release(self) -> None:
        self._walker = None


class EngineScorer:
    """A product method run the way the CLI and the server run it: through the Engine."""

    def __init__(
        self,
        engine: Any,
        method: str,
        prior: str | None,
        options: dict[str, Any] | None = None,
        prior_options: dict[str, Any] | None = None,
        query_options: dict[str, Any] | None = None,
    ) -> None:
        self.engine = engine
        self.name = method  # the row's name; the method is what comes before an "@" (see run.method_names)
        self.method = method.partition("@")[0]
        self.prior = prior
        self.options = dict(options or {})
        self.prior_options = dict(prior_options or {})
        self.query_options = dict(query_options or {})
        self._sid: str | None = None

    @property
    def scene_kinds(self) -> tuple[str, ...]:
        return tuple(self.engine.method(self.method).scene_kinds)

    def fits(self, scene: Scene) -> bool:
        return scene.kind in self.scene_kinds

    def prepare(self, shape: Shape, geom: Geometry) -> str:
        self._sid = self.engine.add_scene(shape.scene)
        popts = dict(self.prior_options)
        if self.prior == "oracle":
            popts["labels"] = shape.labels
        result = self.engine.prepare(
            self.method, self._sid, prior=self.prior, options=self.options, prior_options=popts
        )
        return str(result.get("message", "")) if isinstance(result, dict) else ""

    def query(self, clicks: list[Click]) -> Selection:
        if self._sid is None:
            raise AssertionError("EngineScorer.query before prepare")
        return self.engine.query(
            self.method,
            self._sid,
            {**self.query_options, "clicks": [[int(e), int(s)] for e, s in clicks]},
            prior=self.prior,
        )

    def release(self) -> None:
        if self._sid is not None:
            self.engine.drop_scene(self._sid)
            self._sid = None
