"""iSeg as a SegAny method: prepare trains the feature field and the click decoder; a query is one pass."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, ClassVar

import numpy as np
import torch

from segany.kernels.fps import farthest_point_sampling

from ...errors import SegAnyError
from ...jobs import JobContext
from ...priors import Prior, prior_class
from ...priors.config import STATE_KEY
from ...scene import MeshScene, Scene
from ..base import Method, PerState, Selection, State
from ..queries import parse_query
from .data import make_samples, pixel_corners, visible_vertices
from .decoder import PRESETS, ClickScorer, Decoder, DecoderConfig
from .encoder import EncoderConfig, normalise
from .options import ISegOptions, ISegQuery
from .refine import REFINED_THRESHOLD, CreaseRefiner, wants_refinement
from .rendering import at_cells, views_around
from .train import Schedule, train_decoder, train_encoder

FORMAT = "iseg/1"


Scorer = Callable[..., torch.Tensor]  # (clicked vertices, positive, rows=None) → probability per vertex (of rows)


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
    return lambda vertices, positive, rows=None: torch.stack([s(vertices, positive, rows) for s in scorers]).mean(dim=0)


def _tensors(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}


class ISeg(Method):
    """Interactive attention on meshes (Lang et al., SIGGRAPH Asia 2024), trained per mesh from a 2D prior."""

    name: ClassVar[str] = "iseg"
    scene_kinds: ClassVar[tuple[str, ...]] = ("mesh",)
    default_prior: ClassVar[str] = "geometric"
    state_format: ClassVar[str | None] = FORMAT
    Options: ClassVar[type[ISegOptions]] = ISegOptions
    Query: ClassVar[type[ISegQuery]] = ISegQuery

    def __init__(self) -> None:
        self._scorers: PerState[Scorer] = PerState()  # the decoders rebuilt once per live state
        self._refiners: PerState[CreaseRefiner] = PerState()  # and its crease graph + memoised answers

    def prepare(self, scene: Scene, prior: Prior, options: ISegOptions, ctx: JobContext) -> State:
        if not isinstance(scene, MeshScene):
            raise SegAnyError("unsupported", f"iseg segments meshes, not {scene.kind!r} scenes")
        prior.require("prompt")
        prior.require("embed")
        device = torch.device(ctx.device if str(ctx.device).startswith("cuda") and torch.cuda.is_available() else "cpu")
        timings: dict[str, float] = {}
        t0 = time.perf_counter()

        vertices = torch.as_tensor(scene.vertices)
        faces = torch.as_tensor(scene.faces)
        positions, centre, scale = normalise(vertices)
        renders = views_around(scene, options.views, options.resolution, options.seed, ctx.sub(0.0, 0.03).progress)
        views = renders.views
        tri_ids, bary = torch.as_tensor(views.ids), torch.as_tensor(renders.bary)
        timings["render"] = time.perf_counter() - t0

        ctx.progress(0.03, "prior embeddings")
        emb = torch.as_tensor(prior.embed(views))
        emb_corners = pixel_corners(*at_cells(tri_ids, bary, emb.shape[1], emb.shape[2]), faces)
        targets = emb.reshape(len(views), -1, emb.shape[-1])[emb_corners.view, emb_corners.pixel].float()
        timings["embed"] = time.perf_counter() - t0 - sum(timings.values())

        enc_cfg = EncoderConfig(
            out_dim=int(emb.shape[-1]), width=options.encoder_width, depth=options.encoder_depth,
            fourier=options.fourier, sigma=options.sigma,
        )  # fmt: skip
        dec_cfg = DecoderConfig(
            dim=enc_cfg.out_dim, widths=PRESETS[options.decoder], compare=options.decoder == "light"
        )
        visible = visible_vertices(views.ids, renders.bary, scene.faces, len(vertices))
        n_clicks = min(options.click_vertices, len(vertices))
        click_vertices = farthest_point_sampling(vertices, n_clicks, start=0).cpu().numpy().astype(np.int64)
        corners = pixel_corners(tri_ids, bary, faces)
        enc_sched = Schedule(options.encoder_steps, options.encoder_lr, options.encoder_pixels)
        dec_sched = Schedule(options.decoder_steps, options.decoder_lr, options.decoder_batch, options.decoder_pixels)
        tensors: dict[str, torch.Tensor] = {}
        enc_last, dec_last, counts = [], [], []
        members = options.members
        for i in range(members):
            span = ctx.sub(0.05 + 0.95 * i / members, 0.05 + 0.95 * (i + 1) / members)
            gen = torch.Generator().manual_seed(options.seed + i)
            rng = np.random.default_rng(options.seed + i)
            t1 = time.perf_counter()
            encoder, features, enc_losses = train_encoder(
                positions.to(device), emb_corners, targets.to(device), enc_cfg, enc_sched, span.sub(0.0, 0.4), gen
            )
            t2 = time.perf_counter()
            samples = make_samples(
                prior, views, visible, positions.numpy(), click_vertices, options, rng, span.sub(0.4, 0.6)
            )
            if len(samples) == 0:
                raise SegAnyError(
                    "unsupported", "no training clicks: no sampled vertex is visible with a usable mask in any view"
                )
            t3 = time.perf_counter()
            decoder, dec_losses = train_decoder(
                features, samples, corners, dec_cfg, dec_sched, options.dice_weight, span.sub(0.6, 1.0), gen
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
            "decoder": {**asdict(dec_cfg), "widths": list(dec_cfg.widths), "preset": options.decoder},
            "threshold": options.threshold,
            "options": options.to_dict(),
            "members": members,
            "samples": counts[0] if members == 1 else counts,
            "losses": {
                "encoder_last": float(np.mean(enc_last)),
                "decoder_last": float(np.mean(dec_last)),
            },
            "timings": timings,
        }
        state = State(tensors=tensors, meta=meta)
        ctx.progress(1.0, "crease graph")
        t4 = time.perf_counter()
        refine = wants_refinement(meta["losses"]["decoder_last"], prior.shape_only)  # what "auto" will do: warm it
        self._refiners.get(state, lambda: self._warm_refiner(scene, options.threshold, refine, background=False))
        timings["crease_graph"] = time.perf_counter() - t4
        return state

    @staticmethod
    def _warm_refiner(scene: MeshScene, threshold: float, refine: bool, background: bool) -> CreaseRefiner:
        """The mesh's crease refiner with the factorisations its path needs built: in prepare, or (a state
        from the cache) on a thread while the first click is answered, so no later click pays them."""
        refiner = CreaseRefiner(scene.vertices, scene.faces, threshold)
        if background:
            threading.Thread(target=refiner.warm, args=(refine,), name="iseg-warm", daemon=True).start()
        else:
            refiner.warm(refine)
        return refiner

    def query(self, scene: Scene, state: State, query: dict[str, Any]) -> Selection:
        n = int(state.meta.get("n_vertices", -1))
        if n != scene.n_elements:
            raise SegAnyError(
                "not_prepared", f"the iseg state was prepared for {n} vertices but the scene has {scene.n_elements}"
            )
        parsed = parse_query(self.Query, query, scene)
        vertices, refine = parsed.elements, parsed.refine
        threshold = float(state.meta.get("threshold", 0.5))
        if len(vertices) == 0:
            return Selection(np.zeros(n, dtype=np.float32), threshold)
        scorer = self._scorers.get(state, lambda: build_scorer(state))
        if refine == "auto":
            prior = state.meta.get(STATE_KEY, {}).get("name")  # the engine records the prior a state was made with
            shape_only = prior is not None and prior_class(prior).shape_only
            refine = wants_refinement(state.meta.get("losses", {}).get("decoder_last"), shape_only)

        def decode(clicks: list[tuple[int, int]], rows: np.ndarray | None = None) -> np.ndarray:
            v = torch.as_tensor([c[0] for c in clicks], dtype=torch.long)
            subset = None if rows is None else torch.as_tensor(rows, dtype=torch.long)
            return scorer(v, torch.as_tensor([c[1] > 0 for c in clicks]), subset).numpy()

        clicks = parsed.clicks()
        refiner = self._refiners.get(state, lambda: self._warm_refiner(scene, threshold, refine, background=True))
        return Selection(refiner(clicks, decode, creases=refine), REFINED_THRESHOLD)
