"""SA3D as a SegAny method: prepare renders the views once; a query lifts the prior's masks across them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ...errors import SegAnyError
from ...jobs import JobContext
from ...options import parse_options
from ...priors import Prior
from ...scene import PointScene, Scene, SplatScene
from ..base import Method, PerState, Selection, State
from ..queries import parse_query
from .capture import capture, from_tensors, to_tensors
from .options import SA3DOptions, SA3DQuery
from .segment import Segmenter, Settings

FORMAT = "sa3d/2"  # 2: the engine records the prior (segany.priors.PriorSpec), no recipe of its own


@dataclass
class _Live:
    """Per live State object: its segmenter (views unpacked once)."""

    segmenter: Segmenter | None = None


def _positions(scene: Scene) -> np.ndarray:
    return scene.means if isinstance(scene, SplatScene) else scene.xyz


class SA3D(Method):
    """Segment Anything in 3D (Cen et al., NeurIPS 2023; its 3D Gaussian version SA3D-GS), training-free.

    A click becomes a 2D mask in the view that shows it best; the mask is lifted onto the Gaussians (or
    points) by mask inverse rendering; the lifted mask, rendered into each next view, self-prompts the
    prior there, and every answer consistent with it (IoU) is lifted in turn.
    """

    name: ClassVar[str] = "sa3d"
    scene_kinds: ClassVar[tuple[str, ...]] = ("splats", "points")
    default_prior: ClassVar[str] = "geometric"
    state_format: ClassVar[str | None] = FORMAT
    queries_prior: ClassVar[bool] = True
    Options: ClassVar[type[SA3DOptions]] = SA3DOptions
    Query: ClassVar[type[SA3DQuery]] = SA3DQuery

    def __init__(self) -> None:
        self._live: PerState[_Live] = PerState(size=4)

    def prepare(self, scene: Scene, prior: Prior, options: SA3DOptions, ctx: JobContext) -> State:
        if not isinstance(scene, (SplatScene, PointScene)):
            raise SegAnyError("unsupported", f"sa3d segments splat and point scenes, not {scene.kind!r} scenes")
        prior.require("prompt")
        device = ctx.device if str(ctx.device).startswith("cuda") and torch.cuda.is_available() else "cpu"
        t0 = time.perf_counter()
        cap = capture(
            scene, options.views, options.resolution, options.top_k, options.fov_deg, options.seed, device,
            ctx.sub(0.0, 0.95).progress,
        )  # fmt: skip
        tensors = to_tensors(cap)
        meta = {
            "format": FORMAT,
            "scene_kind": scene.kind,
            "n_elements": scene.n_elements,
            "views_key": cap.views.key,
            "options": options.to_dict(),
            "timings": {"render": time.perf_counter() - t0},
        }
        state = State(tensors=tensors, meta=meta, prior=prior)
        ctx.progress(1.0, "prepared")
        return state

    def query(self, scene: Scene, state: State, query: dict[str, Any]) -> Selection:
        self.check_state(scene, state)
        meta = state.meta
        parsed = parse_query(self.Query, query, scene)
        opts = parse_options(self.Options, meta["options"])
        settings = Settings(opts.prompts, opts.iou_threshold, opts.negative_weight, opts.mask, opts.fill_hidden)
        live = self._live.get(state, _Live)
        if live.segmenter is None:
            live.segmenter = Segmenter(from_tensors(state.tensors, meta["views_key"]), _positions(scene))
        if state.prior is None:
            raise SegAnyError("not_prepared", "this sa3d state came without its prior; prepare it again")
        seg, prior = live.segmenter, state.prior
        res = seg.run(prior, parsed.elements.numpy(), parsed.positive.numpy(), settings)
        return Selection(
            res.scores, res.threshold, extras={"accepted_views": res.accepted, "rejected_views": res.rejected}
        )
