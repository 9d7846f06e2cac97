"""SAGA as a SegAny method: prepare trains scale-aware affinity features; a query is a gated similarity."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ClassVar

import numpy as np
import torch

from ...errors import SegAnyError
from ...jobs import JobContext
from ...priors import Prior
from ...scene import Scene, element_positions
from ..base import Method, Parts, PerState, Selection, State
from ..queries import parse_query
from .everything import everything_parts
from .options import SAGAOptions, SAGAQuery
from .pixels import capture_pixels
from .query import (
    THRESHOLD,
    checked_scale,
    click_scale,
    click_scores,
    coarser_scales,
    fits_its_prior,
    reference_scale,
    similarity,
)
from .refine import CreaseRefiner
from .train import element_scales, fill_hidden, scale_range, seen_elements, train

FORMAT = "saga/2"  # 2: element_scales, KNN-smoothed features
BUILDER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="saga-graph")  # walk graphs, one at a time


def trained_range(state: State) -> np.ndarray:
    """(2,) float32: the smallest and largest mask scale the features were trained at, in scene units; answers
    carry it so the add-on's scale slider stays where the features mean something."""
    return np.asarray(state.meta["scale_range"], np.float32)


class SAGA(Method):
    """Segment Any 3D GAussians (Cen et al., AAAI 2025), on splats, points and meshes alike.

    Every element gets a D-dim affinity feature and a scale gate maps a physical scale to a soft weight
    per channel; both are trained so that rendered features of two pixels agree exactly when the prior's
    masks put them in one part at that scale. A click then selects by gated cosine similarity.
    """

    name: ClassVar[str] = "saga"
    scene_kinds: ClassVar[tuple[str, ...]] = ("splats", "points", "mesh")
    default_prior: ClassVar[str] = "geometric"
    state_format: ClassVar[str | None] = FORMAT
    Options: ClassVar[type[SAGAOptions]] = SAGAOptions
    Query: ClassVar[type[SAGAQuery]] = SAGAQuery

    def __init__(self) -> None:
        # a scene's walk graph, started on its first click so a later click finds it built (11 s on 1M elements)
        self._refiners: PerState[Future[CreaseRefiner]] = PerState(size=8)

    def prepare(self, scene: Scene, prior: Prior, options: SAGAOptions, ctx: JobContext) -> State:
        if scene.n_elements < 2:
            raise SegAnyError(
                "bad_request", f"saga needs at least 2 elements to tell parts apart, got {scene.n_elements}"
            )
        device = ctx.device if str(ctx.device).startswith("cuda") and torch.cuda.is_available() else "cpu"
        t0 = time.perf_counter()
        pixels = capture_pixels(
            scene, prior, options.views, options.resolution, options.top_k, options.fov_deg, options.seed, device,
            ctx.sub(0.0, 0.3).progress,
        )  # fmt: skip
        t1 = time.perf_counter()
        positions = np.ascontiguousarray(element_positions(scene), dtype=np.float32)
        features, gate, losses = train(pixels, positions, scene.n_elements, options, ctx.sub(0.3, 0.99).progress)
        seen = seen_elements(pixels, scene.n_elements)
        features = fill_hidden(features, seen, positions)
        scales = fill_hidden(element_scales(pixels, scene.n_elements), seen, positions)
        lo, hi = scale_range(pixels.scales)
        meta = {
            "format": FORMAT,
            "scene_kind": scene.kind,
            "n_elements": scene.n_elements,
            "options": options.to_dict(),
            "scale_reference": gate.reference,
            "scale_range": [lo, hi],
            "masks": len(pixels.scales),
            "hidden": int((~seen).sum()),
            "losses": losses,
            "timings": {"capture": t1 - t0, "train": time.perf_counter() - t1},
        }
        tensors = {
            "features": features.to(torch.float16).contiguous(),
            "seen": torch.from_numpy(seen.astype(np.uint8)),
            "element_scales": scales.contiguous(),
            **gate.to_tensors(),
        }
        ctx.progress(1.0, "prepared")
        return State(tensors=tensors, meta=meta)

    def query(self, scene: Scene, state: State, query: dict[str, Any]) -> Selection:
        self.check_state(scene, state)
        raw = query.get("scale", "auto") if isinstance(query, dict) else "auto"
        scale = reference_scale(state) if raw == "reference" else checked_scale(raw)
        parsed = parse_query(self.Query, query, scene)
        elements, positive = parsed.elements.numpy(), parsed.positive.numpy()
        used = click_scale(state, elements, positive, scale)
        first = np.flatnonzero(positive)[:1]
        cut = scale is None and scene.kind == "mesh"  # a mesh's creases are exact; kNN normals are estimated
        if len(first) and (cut or first[0] < len(positive) - 1):  # snapped to the creases: refine.py
            refiner = self._refiner(scene, state).result()
            clicks = list(zip(elements.tolist(), np.where(positive, 1, -1).tolist(), strict=True))
            scales = [used, *coarser_scales(state, elements[first[0]], used)] if cut else [used]
            asked = cut or fits_its_prior(state)  # a later click changes only what it asked for: refine.py
            scores, used = refiner.scores(
                clicks, scales, lambda some, at: similarity(state, some, at), cut_first=cut, asked=asked
            )
        else:  # a first click (at a number: the scale slider's size) is the similarity alone
            scores = click_scores(state, elements, positive, used)
            if len(first) and scale is None:  # a click tool's first click: a later one will want the graph
                self._refiner(scene, state)  # built while the user looks at the answer (not for a slider's drag)
        extras = {"scale": np.array([used], np.float32), "scale_range": trained_range(state)}  # the slider's span
        return Selection(scores.astype(np.float32), THRESHOLD, extras=extras)

    def _refiner(self, scene: Scene, state: State) -> Future[CreaseRefiner]:
        """The state's crease refiner, its build started on the first call and kept with the state."""
        return self._refiners.get(state, lambda: BUILDER.submit(CreaseRefiner, scene))

    def everything(self, scene: Scene, state: State, query: dict[str, Any]) -> Parts:
        """HDBSCAN on the gated features at the query's scale (or scales: a hierarchy); see everything.py."""
        self.check_state(scene, state)
        parts = everything_parts(scene, state, query)
        parts.extras["scale_range"] = trained_range(state)
        return parts
