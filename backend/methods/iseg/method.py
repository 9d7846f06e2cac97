"""iSeg as a SegAny method: prepare trains the feature field and the click decoder; a query is one pass."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, ClassVar

import numpy as np
import torch

from segany.kernels.fps import farthest_point_sampling

from ...errors import SegAnyError
from ...jobs import JobContext
from ...priors import Prior
from ...scene import MeshScene, Scene
from ..base import Method, PerState, Selection, State
from ..clicks import parse_clicks
from .data import make_samples, pixel_corners, visible_vertices
from .decoder import PRESETS, ClickScorer, Decoder, DecoderConfig
from .encoder import EncoderConfig, normalise
from .refine import REFINED_THRESHOLD, CreaseRefiner, wants_refinement
from .rendering import at_cells, views_around
from .train import Schedule, train_decoder, train_encoder

FORMAT = "iseg/1"
_INT_OPTIONS = (
    "views", "resolution", "encoder_width", "encoder_depth", "fourier", "encoder_steps", "encoder_pixels",
    "click_vertices", "views_per_click", "second_clicks", "min_mask_pixels", "decoder_steps", "decoder_batch",
    "decoder_pixels", "seed", "members",
)  # fmt: skip
_FLOAT_OPTIONS = ("sigma", "encoder_lr", "decoder_lr", "dice_weight", "threshold")
_CHOICES = {"mask": ("smallest", "best"), "decoder": tuple(PRESETS)}


def _check_options(opts: dict[str, Any]) -> dict[str, Any]:
    """Refuse unknown keys and out-of-range values with a message naming the option."""
    known = set(_INT_OPTIONS) | set(_FLOAT_OPTIONS) | set(_CHOICES) | {"device"}
    unknown = sorted(set(opts) - known)
    if unknown:
        raise SegAnyError("bad_request", f"unknown iseg options {unknown}; known: {sorted(known)}")
    out = {"members": 1, **opts}
    for k in _INT_OPTIONS:
        v = out[k]
        if (
            isinstance(v, bool)
            or not isinstance(v, (int, np.integer))
            or v < (0 if k in ("second_clicks", "seed") else 1)
        ):
            raise SegAnyError("bad_request", f"iseg option {k!r} must be a positive integer, got {v!r}")
        out[k] = int(v)
    for k in _FLOAT_OPTIONS:
        v = out[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
            raise SegAnyError("bad_request", f"iseg option {k!r} must be a non-negative number, got {v!r}")
        out[k] = float(v)
    for k, allowed in _CHOICES.items():
        if out[k] not in allowed:
            raise SegAnyError("bad_request", f"iseg option {k!r} must be one of {list(allowed)}, got {out[k]!r}")
    if not 0.0 < out["threshold"] < 1.0:
        raise SegAnyError("bad_request", f"iseg option 'threshold' must be in (0, 1), got {out['threshold']}")
    return out


Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (clicked vertices, positive) → probability per vertex


def member_prefix(i: int) -> str:
    """Tensor-name prefix of ensemble member i; member 0 keeps the single-member names."""
    return "" if i == 0 else f"member{i}."


def build_scorer(state: State) -> Scorer:
    """The decoders and features of a state (from prepare or from disk): clicks → the members' mean
    probability per vertex."""
    meta = state.meta
    if meta.get("format") != FORMAT:
        raise SegAnyError(
            "not_prepared", f"this state is not an iSeg state ({meta.get('format')!r}); run prepare again"
        )
    dec = meta["decoder"]
    cfg = DecoderConfig(int(dec["dim"]), tuple(int(w) for w in dec["widths"]), bool(dec["compare"]))
    scorers = []
    for i in range(int(meta.get("members", 1))):
        prefix = member_prefix(i) + "decoder."
        decoder = Decoder(cfg)
        decoder.load_state_dict({k[len(prefix) :]: v for k, v in state.tensors.items() if k.startswith(prefix)})
        scorers.append(ClickScorer(decoder, state.tensors[member_prefix(i) + "features"].float()))
    if len(scorers) == 1:
        return scorers[0]
    return lambda vertices, positive: torch.stack([s(vertices, positive) for s in scorers]).mean(dim=0)


def _tensors(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}


class ISeg(Method):
    """Interactive attention on meshes (Lang et al., SIGGRAPH Asia 2024), trained per mesh from a 2D prior."""

    name: ClassVar[str] = "iseg"
    scene_kinds: ClassVar[tuple[str, ...]] = ("mesh",)
    default_prior: ClassVar[str] = "geometric"
    state_format: ClassVar[str | None] = FORMAT

    def __init__(self) -> None:
        self._scorers: PerState[Scorer] = PerState()  # the decoders rebuilt once per live state
        self._refiners: PerState[CreaseRefiner] = PerState()  # and its crease graph + memoised answers

    def default_options(self, scene: Scene, device: str) -> dict[str, Any]:
        """iSeg's sizes on a GPU; on a CPU fewer views, steps and click vertices.

        Both use the light decoder (iSeg's own head, "full", stays available as an option) and take the
        prior's best-scored candidate mask ("best"; iSeg took SAM's smallest, "smallest"): the
        geometric prior's smallest candidate is often a sliver of a part. "members" (not listed: 1) trains
        an ensemble of encoder + decoder pairs (seeds seed, seed + 1, …) whose answers a query averages;
        with the geometric prior it was not worth its cost (docs/journal.md).
        """
        gpu = str(device).startswith("cuda")
        n = scene.n_elements
        return {
            "views": 100 if gpu else 24,
            "resolution": 224 if gpu else 192,
            "encoder_width": 256 if gpu else 128,
            "encoder_depth": 4 if gpu else 2,
            "fourier": 256 if gpu else 128,
            "sigma": 5.0,
            "encoder_steps": 2000 if gpu else 400,
            "encoder_pixels": 16384 if gpu else 8192,
            "encoder_lr": 1e-3,
            "click_vertices": max(32, round(0.03 * n)) if gpu else 64,
            "views_per_click": 8 if gpu else 3,
            "second_clicks": 5 if gpu else 2,
            "mask": "best",
            "min_mask_pixels": 4,
            "decoder": "light",
            "decoder_steps": 3000 if gpu else 200,
            "decoder_batch": 16,
            "decoder_pixels": 1024 if gpu else 384,
            "decoder_lr": 1e-4 if gpu else 1e-3,
            "dice_weight": 1.0,
            "threshold": 0.5,
            "seed": 0,
        }

    def prepare(self, scene: Scene, prior: Prior, options: dict[str, Any], ctx: JobContext) -> State:
        if not isinstance(scene, MeshScene):
            raise SegAnyError("unsupported", f"iseg segments meshes, not {scene.kind!r} scenes")
        prior.require("prompt")
        prior.require("embed")
        opts = _check_options({**self.default_options(scene, ctx.device), **options})
        device = torch.device(ctx.device if str(ctx.device).startswith("cuda") and torch.cuda.is_available() else "cpu")
        timings: dict[str, float] = {}
        t0 = time.perf_counter()

        vertices = torch.as_tensor(scene.vertices)
        faces = torch.as_tensor(scene.faces)
        positions, centre, scale = normalise(vertices)
        renders = views_around(scene, opts["views"], opts["resolution"], opts["seed"], ctx.sub(0.0, 0.03).progress)
        views = renders.views
        tri_ids, bary = torch.as_tensor(views.ids), torch.as_tensor(renders.bary)
        timings["render"] = time.perf_counter() - t0

        ctx.progress(0.03, "prior embeddings")
        emb = torch.as_tensor(prior.embed(views))
        emb_corners = pixel_corners(*at_cells(tri_ids, bary, emb.shape[1], emb.shape[2]), faces)
        targets = emb.reshape(len(views), -1, emb.shape[-1])[emb_corners.view, emb_corners.pixel].float()
        timings["embed"] = time.perf_counter() - t0 - sum(timings.values())

        enc_cfg = EncoderConfig(
            out_dim=int(emb.shape[-1]), width=opts["encoder_width"], depth=opts["encoder_depth"],
            fourier=opts["fourier"], sigma=opts["sigma"],
        )  # fmt: skip
        dec_cfg = DecoderConfig(
            dim=enc_cfg.out_dim, widths=PRESETS[opts["decoder"]], compare=opts["decoder"] == "light"
        )
        visible = visible_vertices(views.ids, renders.bary, scene.faces, len(vertices))
        n_clicks = min(opts["click_vertices"], len(vertices))
        click_vertices = farthest_point_sampling(vertices, n_clicks, start=0).cpu().numpy().astype(np.int64)
        corners = pixel_corners(tri_ids, bary, faces)
        enc_sched = Schedule(opts["encoder_steps"], opts["encoder_lr"], opts["encoder_pixels"])
        dec_sched = Schedule(opts["decoder_steps"], opts["decoder_lr"], opts["decoder_batch"], opts["decoder_pixels"])
        tensors: dict[str, torch.Tensor] = {}
        enc_last, dec_last, counts = [], [], []
        members = opts["members"]
        for i in range(members):
            span = ctx.sub(0.05 + 0.95 * i / members, 0.05 + 0.95 * (i + 1) / members)
            gen = torch.Generator().manual_seed(opts["seed"] + i)
            rng = np.random.default_rng(opts["seed"] + i)
            t1 = time.perf_counter()
            encoder, features, enc_losses = train_encoder(
                positions.to(device), emb_corners, targets.to(device), enc_cfg, enc_sched, span.sub(0.0, 0.4), gen
            )
            t2 = time.perf_counter()
            samples = make_samples(
                prior, views, visible, positions.numpy(), click_vertices, opts, rng, span.sub(0.4, 0.6)
            )
            if len(samples) == 0:
                raise SegAnyError(
                    "unsupported", "no training clicks: no sampled vertex is visible with a usable mask in any view"
                )
            t3 = time.perf_counter()
            decoder, dec_losses = train_decoder(
                features, samples, corners, dec_cfg, dec_sched, opts["dice_weight"], span.sub(0.6, 1.0), gen
            )
            for name, seconds in (("encoder", t2 - t1), ("samples", t3 - t2), ("decoder", time.perf_counter() - t3)):
                timings[name] = timings.get(name, 0.0) + seconds
            prefix = member_prefix(i)
            tensors[prefix + "features"] = features.detach().cpu().float().contiguous()
            tensors.update(_tensors(prefix + "encoder", encoder))
            tensors.update(_tensors(prefix + "decoder", decoder))
            enc_last.append(float(np.mean(enc_losses[-10:])))
            dec_last.append(float(np.mean(dec_losses[-10:])))
            counts.append(samples.counts())
        ctx.progress(1.0, "prepared")

        tensors.update(
            centre=centre.contiguous(), scale=scale.contiguous(), click_vertices=torch.as_tensor(click_vertices)
        )
        meta = {
            "format": FORMAT,
            "n_vertices": len(vertices),
            "n_faces": len(faces),
            "encoder": asdict(enc_cfg),
            "decoder": {**asdict(dec_cfg), "widths": list(dec_cfg.widths), "preset": opts["decoder"]},
            "threshold": opts["threshold"],
            "options": {k: v for k, v in opts.items() if k != "device"},
            "members": members,
            "samples": counts[0] if members == 1 else counts,
            "losses": {
                "encoder_last": float(np.mean(enc_last)),
                "decoder_last": float(np.mean(dec_last)),
            },
            "timings": timings,
        }
        return State(tensors=tensors, meta=meta)

    def query(self, scene: Scene, state: State, query: dict[str, Any]) -> Selection:
        n = int(state.meta.get("n_vertices", -1))
        if n != scene.n_elements:
            raise SegAnyError(
                "not_prepared", f"the iseg state was prepared for {n} vertices but the scene has {scene.n_elements}"
            )
        vertices, positive = parse_clicks(query, n)
        unknown = sorted(set(query) - {"clicks", "refine"})
        refine = query.get("refine", "auto")
        if unknown or not (refine == "auto" or isinstance(refine, bool)):
            raise SegAnyError(
                "bad_request",
                'an iseg query is {"clicks": [[vertex, sign], ...], "refine": "auto"|true|false}'
                + (
                    f"; unknown keys {unknown}"
                    if unknown
                    else f"; refine must be 'auto', true or false, got {refine!r}"
                ),
            )
        threshold = float(state.meta.get("threshold", 0.5))
        if len(vertices) == 0:
            return Selection(np.zeros(n, dtype=np.float32), threshold)
        scorer = self._scorers.get(state, lambda: build_scorer(state))
        if refine == "auto":
            refine = wants_refinement(state.meta.get("losses", {}).get("decoder_last"))
        if not refine:
            return Selection(scorer(vertices, positive).numpy().astype(np.float32), threshold)

        def decode(clicks: list[tuple[int, int]]) -> np.ndarray:
            v = torch.as_tensor([c[0] for c in clicks], dtype=torch.long)
            return scorer(v, torch.as_tensor([c[1] > 0 for c in clicks])).numpy()

        clicks = list(zip(vertices.tolist(), [1 if p else -1 for p in positive.tolist()], strict=True))
        refiner = self._refiners.get(state, lambda: CreaseRefiner(scene.vertices, scene.faces))
        return Selection(refiner(clicks, decode), REFINED_THRESHOLD)
