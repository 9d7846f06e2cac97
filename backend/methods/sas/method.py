"""SAS as a SegAny method: prepare lifts every language source onto the elements; a query labels them."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.spatial import cKDTree

from segany.kernels.labels import Labelled, Neighbours

from ...cameras import cameras_for_scene
from ...clock import clock, since
from ...errors import SegAnyError
from ...jobs import JobContext
from ...options import parse_options
from ...priors import Prior
from ...render import render
from ...scene import Scene, element_positions
from ..base import Method, PerState, Selection, State
from .calibration import apply_calibration
from .capability import agreement
from .fusion import Packed, consensus, label, pack, text_table
from .lift import Lifted, RegionVotes, lift_source
from .options import LabelQuery, SASOptions, parse_label_query
from .spreading import element_graph, spreading

FORMAT = "sas/3"  # 2: the walk graph of the elements instead of superpoint ids; 3: per-element view evidence
NEGATIVES = ("object", "things", "stuff", "texture")  # LERF's canonical negatives
FILL_NEIGHBOURS = 8  # an element no view showed takes the mean scores of this many nearest shown ones


@dataclass
class _Live:
    """Per live State: the unpacked tensors and the text embeddings of recent word lists."""

    sources: dict[str, Prior] | None = None
    packed: Packed | None = None
    texts: dict[tuple[str, ...], list[torch.Tensor]] = field(default_factory=dict)
    spreading: Neighbours | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)  # queries run on the callers' threads


def _pack(i: int, lifted: Lifted) -> dict[str, torch.Tensor]:
    v = lifted.votes
    return {
        f"source{i}.features": torch.as_tensor(lifted.features.astype(np.float16)),
        f"source{i}.evidence": torch.as_tensor(lifted.evidence),
        f"source{i}.basis": torch.as_tensor(lifted.basis),
        f"source{i}.regions": torch.as_tensor(v.embeddings.astype(np.float16)),
        f"source{i}.vote_element": torch.as_tensor(v.element),
        f"source{i}.vote_region": torch.as_tensor(v.region),
        f"source{i}.vote_weight": torch.as_tensor(v.weight),
    }


def _votes(tensors: dict[str, torch.Tensor], i: int) -> RegionVotes:
    t = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(f"source{i}.")}
    return RegionVotes(
        t["vote_element"].numpy(), t["vote_region"].numpy(), t["vote_weight"].numpy(), t["regions"].float().numpy()
    )


class SAS(Method):
    """Segment Any 3D Scene with integrated 2D priors (Li, Lu et al., ICCV 2025), training-free.

    Each language source (see docs/methods/sas.md) is registered onto the elements; a query embeds the words
    in every source's space, estimates each source's capability per word (`capability.py`), fuses by SAS's
    rule (`fusion.py`) and spreads the fused scores over the walk graph (`spreading.py`).
    """

    name: ClassVar[str] = "sas"
    scene_kinds: ClassVar[tuple[str, ...]] = ("mesh", "splats", "points")
    default_prior: ClassVar[str] = "clip_crops"
    state_format: ClassVar[str | None] = FORMAT
    queries_prior: ClassVar[bool] = True  # the words are embedded by the sources at query time
    Options: ClassVar[type[SASOptions]] = SASOptions
    Query: ClassVar[type] = LabelQuery  # words, not clicks: the add-on keeps sas out of its click methods

    def __init__(self) -> None:
        self._live: PerState[_Live] = PerState(size=4)

    def prepare(self, scene: Scene, prior: Prior, options: SASOptions, ctx: JobContext) -> State:
        prior.require("text")
        sources = prior.text_sources()
        for source in sources.values():
            source.require("embed")
        device = ctx.device if str(ctx.device).startswith("cuda") and torch.cuda.is_available() else "cpu"
        start = clock()  # wall and the process's CPU (all threads) per stage
        cams = cameras_for_scene(
            scene, options.views, options.resolution, options.resolution, fov_deg=options.fov_deg, seed=options.seed
        )
        renders = render(scene, cams, device=device, contributors=options.top_k, progress=ctx.sub(0.0, 0.2).progress)
        timings, cpu = {}, {}
        timings["render"], cpu["render"] = since(start)
        n = scene.n_elements
        rng = np.random.default_rng(options.seed)
        sample = np.sort(rng.choice(n, min(n, options.sample), replace=False)).astype(np.int64)
        tensors: dict[str, torch.Tensor] = {"sample": torch.as_tensor(sample.astype(np.int32))}
        seen = np.zeros(n, dtype=bool)
        share = 0.7 / max(len(sources), 1)
        for i, (name, source) in enumerate(sources.items()):
            start = clock()
            sub = ctx.sub(0.2 + i * share, 0.2 + (i + 1) * share).progress
            lifted = lift_source(source, renders, n, sample, options.dims, sub)
            tensors.update(_pack(i, lifted))
            seen |= lifted.seen
            timings[f"lift {name}"], cpu[f"lift {name}"] = since(start)
        ctx.progress(0.9, "graph")
        start = clock()
        ids, weights = renders.contrib_ids, renders.contrib_weights
        coverage = np.bincount(ids[ids >= 0], weights=weights[ids >= 0], minlength=n) / max(len(cams), 1)
        tensors["coverage"] = torch.as_tensor(coverage.astype(np.float32))
        edges, affinity = element_graph(scene)
        tensors["graph_edges"], tensors["graph_weights"] = torch.as_tensor(edges), torch.as_tensor(affinity)
        tensors.update(_fill(element_positions(scene), seen))
        timings["graph"], cpu["graph"] = since(start)
        per_element = sum(int(t.numel() * t.element_size()) for t in tensors.values()) / max(n, 1)
        meta = {
            "format": FORMAT,
            "scene_kind": scene.kind,
            "n_elements": n,
            "sources": list(sources),
            "options": options.to_dict(),
            "timings": timings,
            "cpu_timings": cpu,
            "bytes_per_element": per_element,
        }
        ctx.progress(1.0, "prepared")
        return State(tensors=tensors, meta=meta, prior=prior)

    def query(self, scene: Scene, state: State, query: dict[str, Any]) -> Selection:
        self.check_state(scene, state)
        parsed = parse_label_query(query)
        names = list(state.meta["sources"])
        if parsed.source is not None and parsed.source not in names:
            raise SegAnyError("bad_request", f"sas query 'source' must be one of {names}, got {parsed.source!r}")
        if state.prior is None:
            raise SegAnyError("not_prepared", "this sas state came without its prior; prepare it again")
        live = self._live.get(state, _Live)
        with live.lock:
            if live.sources is None:
                live.packed = pack(state.tensors, len(names))  # laid out once per state for the label kernel
                live.sources = state.prior.text_sources()
                t = state.tensors
                live.spreading = spreading(t["graph_edges"], t["graph_weights"], t["coverage"])
        words = parsed.words
        texts = self._texts(state, live, names, words)
        w = len(words)
        table = text_table(texts, live.packed.channels)
        agreed = consensus(live.packed, table, w)
        capability = torch.stack([self._capability(state, i, agreed, texts[i], w) for i in range(len(names))])
        calibrated = torch.zeros(w, dtype=torch.bool)
        if parsed.calibration is not None:
            capability, calibrated = apply_calibration(capability, parsed.calibration, live.sources, words)
        mode = "source" if parsed.source is not None else parsed.fusion
        packed = live.packed
        if mode == "sas":  # SAS's rule as published: the capability sums without each source's view evidence
            mode, packed = "capability", replace(packed, evidence=None)
        done = label(
            packed,
            table,
            w,
            mode=mode,
            source=names.index(parsed.source) if parsed.source is not None else 0,
            capability=capability.numpy(),
            temperature=parse_options(self.Options, state.meta["options"]).temperature,
            other=parsed.other,
            relevancy=parsed.relevancy,
            spread=live.spreading if parsed.superpoints else None,
        )
        return _answer(done, capability, calibrated)

    def _texts(self, state: State, live: _Live, names: list[str], words: tuple[str, ...]) -> list[torch.Tensor]:
        """Per source the words and the negatives in its kept components, unit rows (W + 4, d); recent lists
        are remembered so that repeated highlighting does not run a text encoder again."""
        with live.lock:
            hit = live.texts.get(words)
        if hit is not None:
            return hit
        out = []
        for i, name in enumerate(names):
            text = np.asarray(live.sources[name].embed_text([*words, *NEGATIVES]), dtype=np.float32)
            reduced = torch.as_tensor(text) @ state.tensors[f"source{i}.basis"].T
            out.append(torch.nn.functional.normalize(reduced, dim=1))
        with live.lock:
            if len(live.texts) >= 16:
                live.texts.pop(next(iter(live.texts)))
            live.texts[words] = out
        return out

    @staticmethod
    def _capability(state: State, i: int, consensus: np.ndarray, text: torch.Tensor, w: int) -> torch.Tensor:
        """Source i's capability per word (w,), from its per-view labels against the consensus."""
        votes = _votes(state.tensors, i)
        # numpy: torch's product took 14 ms of this tiny one right after the kernel's threads (journal)
        said = (votes.embeddings @ text[:w].numpy().T).argmax(axis=1)
        return torch.as_tensor(agreement(votes, consensus, said, w), dtype=torch.float32)


def _fill(positions: np.ndarray, seen: np.ndarray) -> dict[str, torch.Tensor]:
    """For every element no view showed, its nearest shown elements (U, FILL_NEIGHBOURS)."""
    shown = np.flatnonzero(seen)
    unseen = np.flatnonzero(~seen)
    if len(unseen) == 0 or len(shown) == 0:
        return {"unseen": torch.zeros(0, dtype=torch.int32), "fill": torch.zeros((0, 1), dtype=torch.int32)}
    k = min(FILL_NEIGHBOURS, len(shown))
    _, idx = cKDTree(positions[shown]).query(positions[unseen], k=k)
    idx = np.asarray(idx).reshape(len(unseen), k)
    return {"unseen": torch.as_tensor(unseen.astype(np.int32)), "fill": torch.as_tensor(shown[idx].astype(np.int32))}


def _answer(done: Labelled, capability: torch.Tensor, calibrated: torch.Tensor) -> Selection:
    """The Selection of a label query: per element its word's relevancy as the score (0 for other), the labels,
    every word's relevancy when asked, and the capability used."""
    extras = {"labels": done.labels, "capability": capability.numpy(), "calibrated": calibrated.numpy()}
    if done.relevancy is not None:
        extras["relevancy"] = done.relevancy
    return Selection(scores=done.scores, threshold=0.5, extras=extras)
