"""Segment Anything as a prior: point prompts, automatic masks and image embeddings of rendered views.

The image encoder dominates the cost (seconds per view on a CPU; docs/journal.md), so its output is
cached twice: in memory (LRU) and on disk as safetensors, keyed by the model file and the exact pixels
of the view. The same view is never encoded twice, across prompts, automatic masks, embeddings and
restarts.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from segment_anything import SamAutomaticMaskGenerator, SamPredictor, sam_model_registry
from segment_anything.modeling import Sam

from ..cache import default_cache_dir
from ..errors import SegAnyError
from ..options import option, plain
from ..render import Views
from .base import Prior, PromptResult
from .config import PriorContext, PriorSpec, file_key, same_model

ENCODER_DIMS = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}  # patch-embedding width of each model type
ENCODER_DEPTHS = {"vit_b": 12, "vit_l": 24, "vit_h": 32}
LOW_RES = 256  # side of SAM's mask logits, which cover the padded 1024² input


def detect_model_type(state: dict[str, torch.Tensor]) -> str:
    """vit_b / vit_l / vit_h from a SAM state dict (encoder width and depth must agree)."""
    key = "image_encoder.patch_embed.proj.weight"
    if key not in state:
        raise SegAnyError("corrupt_file", "not a Segment Anything checkpoint: it has no image encoder weights")
    width = int(state[key].shape[0])
    depth = len({k.split(".")[2] for k in state if k.startswith("image_encoder.blocks.")})
    kind = ENCODER_DIMS.get(width)
    if kind is None or ENCODER_DEPTHS[kind] != depth:
        raise SegAnyError("corrupt_file", f"unknown SAM encoder: width {width}, {depth} blocks")
    return kind


class _CachedPredictor(SamPredictor):
    """A SamPredictor whose set_image takes the encoder output from the prior's caches."""

    def __init__(self, model: Sam, prior: SamPrior) -> None:
        super().__init__(model)
        self.prior = prior

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        self.reset_image()
        self.original_size = image.shape[:2]
        self.input_size = self.transform.get_preprocess_shape(*image.shape[:2], self.transform.target_length)
        self.features = self.prior.image_features(image).to(self.device)
        self.is_image_set = True


@dataclass(frozen=True)
class AutoMaskOptions:
    """The SamAutomaticMaskGenerator arguments a caller may set; None keeps the generator's own default.

    Bounds keep the cost in check: prompts grow with points_per_side squared, crops with 4^crop_n_layers.
    """

    points_per_side: int | None = option(None, 1, 128, doc="grid of point prompts per side (None: 16, for CPUs)")
    points_per_batch: int | None = option(None, 1, 1024, doc="point prompts decoded at once (memory)")
    pred_iou_thresh: float | None = option(None, 0.0, 1.0, doc="masks the model rates below this are dropped")
    stability_score_thresh: float | None = option(None, 0.0, 1.0, doc="masks less stable than this are dropped")
    stability_score_offset: float | None = option(None, 0.0, doc="logit offset of the stability score")
    box_nms_thresh: float | None = option(None, 0.0, 1.0, doc="box IoU over which duplicate masks are dropped")
    crop_n_layers: int | None = option(None, 0, 3, doc="layers of image crops segmented again")
    crop_nms_thresh: float | None = option(None, 0.0, 1.0, doc="box IoU over which masks of crops are dropped")
    crop_overlap_ratio: float | None = option(None, 0.0, 1.0, doc="overlap of neighbouring crops")
    crop_n_points_downscale_factor: int | None = option(None, 1, 16, doc="fewer points per side in each layer")


class SamPrior(Prior):
    """Segment Anything from a checkpoint file the user has (model type detected from the file).

    Encoder outputs are kept on disk under the context's cache_dir (default: $SEGANY_CACHE or
    ~/.cache/segany), in sam/<model key>/; `auto_options` go to SamAutomaticMaskGenerator.
    """

    name: ClassVar[str] = "sam"
    capabilities: ClassVar[frozenset[str]] = frozenset({"prompt", "auto", "embed"})

    @dataclass(frozen=True)
    class Config:
        checkpoint: str | None = option(
            None, doc="weights file; None: the context's (add-on preferences, SEGANY_SAM_CHECKPOINT)"
        )
        model_type: str | None = option(
            None, choices=tuple(ENCODER_DEPTHS), doc="checked against the file's model when given"
        )
        model_key: str | None = option(
            None, doc="the model a state was prepared with: a file holding another is refused"
        )
        memory_views: int = option(16, 1, 1024, doc="encoder outputs kept in memory (about 4 MiB each)")
        auto_options: AutoMaskOptions | None = option(  # noqa: RUF009
            None, doc="SamAutomaticMaskGenerator arguments (None: its defaults with points_per_side=16)"
        )

    def __init__(self, config: Config, ctx: PriorContext | None = None) -> None:
        ctx = ctx or PriorContext()
        path = ctx.checkpoint(self.name, config.checkpoint)
        if not path.is_file():
            raise SegAnyError(
                "not_found", f"SAM checkpoint {path} does not exist (see `segany models fetch sam_vit_b`)"
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises several types for a file that is not a weights-only checkpoint
            raise SegAnyError("corrupt_file", f"cannot read SAM checkpoint {path}: {err}") from None
        found = detect_model_type(state)
        if config.model_type is not None and config.model_type != found:
            raise SegAnyError("bad_request", f"{path.name} holds a {found} model, not {config.model_type}")
        self.model_key = same_model(self.name, config.model_key, f"{found}-{file_key(path)}", path)
        self.config = config
        self.model_type = found
        self.model: Sam = sam_model_registry[found](checkpoint=None)
        self.model.load_state_dict(state)
        self.model.to(ctx.device).eval()
        self.device = ctx.device
        root = Path(ctx.cache_dir).expanduser() if ctx.cache_dir else default_cache_dir()
        self.cache_dir = root / "sam" / self.model_key
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.predictor = _CachedPredictor(self.model, self)
        given = plain(config.auto_options) if config.auto_options else {}
        self.auto_options = {"points_per_side": 16, **{k: v for k, v in given.items() if v is not None}}

    def describe(self) -> PriorSpec:
        """The options with the model's identity, so a state never meets another model after a restart."""
        return PriorSpec(self.name, {**super().describe().options, "model_key": self.model_key})

    def image_features(self, image: np.ndarray) -> torch.Tensor:
        """Encoder output (1, 256, 64, 64) for an RGB uint8 image: memory, then disk, then the encoder."""
        key = _image_key(image)
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        path = self.cache_dir / f"{key}.safetensors"
        feats = None
        if path.is_file():
            try:
                feats = load_file(path)["features"]
            except (OSError, SafetensorError, KeyError):
                feats = None  # a damaged cache entry is recomputed and rewritten, never trusted
        if feats is None:
            feats = self.encode(image)
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
            save_file({"features": feats.contiguous()}, tmp)
            os.replace(tmp, path)
        self._memory[key] = feats
        while len(self._memory) > self.config.memory_views:
            self._memory.popitem(last=False)
        return feats

    @torch.no_grad()
    def encode(self, image: np.ndarray) -> torch.Tensor:
        """The image encoder's output for an RGB uint8 image, bypassing every cache (benchmarks time this)."""
        transform = self.predictor.transform
        x = torch.as_tensor(transform.apply_image(image), device=self.device).permute(2, 0, 1)[None]
        return self.model.image_encoder(self.model.preprocess(x.float())).float().cpu()

    def _set_view(self, views: Views, index: int) -> None:
        self.predictor.set_image(as_uint8(views.rgb[index]))

    def prompt(
        self, views: Views, index: int, points: np.ndarray, labels: np.ndarray, prev: np.ndarray | None = None
    ) -> PromptResult:
        """SAM's three multimask candidates, reordered small → large; `prev` is a previous logit map."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        labels = np.asarray(labels).reshape(-1)
        if len(points) != len(labels) or not len(points):
            raise SegAnyError("bad_request", f"need matching points and labels, got {len(points)} and {len(labels)}")
        self._set_view(views, index)
        scale = self.predictor.transform.target_length / max(views.rgb.shape[1:3])
        # SAM adds half a pixel in the resized frame; ours are continuous coords with centres at +0.5
        coords = points - 0.5 / scale
        mask_input = None if prev is None else self._low_res(np.asarray(prev, dtype=np.float32), views)
        masks, scores, logits = self.predictor.predict(
            point_coords=coords,
            point_labels=(labels > 0).astype(np.int64),
            mask_input=mask_input,
            multimask_output=True,
        )
        order = np.argsort(masks.reshape(3, -1).sum(axis=1), kind="stable")
        return PromptResult(
            masks=masks[order].astype(bool), scores=scores[order].astype(np.float32), logits=logits[order]
        )

    def _low_res(self, prev: np.ndarray, views: Views) -> np.ndarray:
        """A previous answer as SAM's (1, 256, 256) mask input: its own logits as they are, a mask resampled."""
        prev = prev.reshape(prev.shape[-2:])
        if prev.shape == (LOW_RES, LOW_RES):
            return prev[None]
        h, w = views.rgb.shape[1:3]
        if prev.shape != (h, w):
            raise SegAnyError("invalid_array", f"prev must be 256×256 SAM logits or a {h}×{w} mask, got {prev.shape}")
        logits = np.where(prev > 0, 8.0, -8.0).astype(np.float32)
        scale = LOW_RES / max(h, w)
        ys = np.minimum((np.arange(LOW_RES) + 0.5) / scale, h - 1e-3).astype(np.int64)
        xs = np.minimum((np.arange(LOW_RES) + 0.5) / scale, w - 1e-3).astype(np.int64)
        out = logits[np.ix_(ys, xs)]
        inside = (np.arange(LOW_RES) + 0.5) / scale
        out[inside >= h, :] = -8.0
        out[:, inside >= w] = -8.0
        return out[None]

    def auto_masks(self, views: Views, index: int) -> list[np.ndarray]:
        """SamAutomaticMaskGenerator's masks, split into three levels by area (small parts → large objects)."""
        gen = SamAutomaticMaskGenerator(self.model, **self.auto_options)
        gen.predictor = self.predictor
        found = gen.generate(as_uint8(views.rgb[index]))
        shape = views.rgb.shape[1:3]
        if not found:
            return [np.zeros((0, *shape), dtype=bool) for _ in range(3)]
        masks = np.stack([m["segmentation"] for m in found]).astype(bool)
        area = np.log(masks.reshape(len(masks), -1).sum(axis=1).clip(min=1))
        edges = np.linspace(area.min(), area.max(), 4)[1:3]
        level = np.searchsorted(edges, area, side="right")
        return [masks[level == k] for k in range(3)]

    def embed(self, views: Views) -> np.ndarray:
        """Encoder features (B, h, w, 256), unit length, cropped to the part of the 64² grid the image covers."""
        h, w = views.rgb.shape[1:3]
        grid = self.model.image_encoder.img_size // 16
        scale = grid / max(h, w)
        gh, gw = max(1, round(h * scale)), max(1, round(w * scale))
        out = []
        for i in range(len(views)):
            f = self.image_features(as_uint8(views.rgb[i]))[0, :, :gh, :gw].permute(1, 2, 0)
            out.append(torch.nn.functional.normalize(f, dim=-1).numpy())
        return np.stack(out).astype(np.float32)


def as_uint8(rgb: np.ndarray) -> np.ndarray:
    """A rendered float view as the uint8 image SAM takes."""
    return np.ascontiguousarray((np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))


def _image_key(image: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(str(image.shape).encode())
    h.update(image.tobytes())
    return h.hexdigest()
