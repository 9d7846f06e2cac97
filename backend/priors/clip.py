"""open_clip as a prior: text, masked-region and dense per-pixel embeddings in one space, for open-vocabulary labels.

Weights come only from a checkpoint file (`segany models fetch clip_vit_b_16`); nothing is downloaded.
Region embeddings follow the usual recipe for CLIP on masks: crop to the mask's box, grey out what is
outside the mask (so the crop's context does not leak into the label), then the model's own preprocess.
The dense map (`embed`) is the language source without masks (clip_dense.py); `clip_crops` is the one with.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image

from .. import models
from ..errors import SegAnyError
from ..options import option
from ..render import Views
from .base import Prior
from .clip_dense import check_plain_vit, dense_tokens, grid_of
from .config import PriorContext, PriorSpec, file_key, same_model

FETCH = "clip_vit_b_16"  # the catalogue's CLIP model (`segany models`), found without any setting once fetched
GREY = 0.5  # what replaces pixels outside the mask
MARGIN = 0.1  # the crop box grows by this fraction of its size on each side


class ClipPrior(Prior):
    """open_clip model from a checkpoint file: text, masked crops and a dense map in the text space."""

    name: ClassVar[str] = "clip"
    capabilities: ClassVar[frozenset[str]] = frozenset({"text", "embed"})

    @dataclass(frozen=True)
    class Config:
        checkpoint: str | None = option(
            None, doc="weights file; None: the context's (preferences, SEGANY_CLIP_CHECKPOINT), else the fetched one"
        )
        model_name: str = option("ViT-B-16", doc="the open_clip architecture the checkpoint holds")
        model_key: str | None = option(
            None, doc="the weights a state was prepared with: a file holding others is refused"
        )
        template: str = option("a photo of a {}.", doc="the sentence each word is put in ({} is the word)")
        image_size: int | None = option(
            448, 32, 1344, doc="input side of the dense map (None: the model's own; 448 gives ViT-B-16 a 28² grid)"
        )

    def __init__(self, config: Config = Config(), ctx: PriorContext | None = None) -> None:
        ctx = ctx or PriorContext()
        path = checkpoint_path(config, ctx)
        if not path.is_file():
            raise SegAnyError(
                "not_found", f"CLIP checkpoint {path} does not exist (see `segany models fetch clip_vit_b_16`)"
            )
        if "{}" not in config.template:
            raise SegAnyError("bad_request", f"prior 'clip': template {config.template!r} has no {{}} for the word")
        if config.model_name not in open_clip.list_models():
            raise SegAnyError("bad_request", f"prior 'clip': unknown open_clip model_name {config.model_name!r}")
        self.model_key = same_model(self.name, config.model_key, f"{config.model_name}-{file_key(path)}", path)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                config.model_name, pretrained=str(path), device=ctx.device, weights_only=True
            )
        except Exception as err:  # open_clip raises several types for a file that does not fit the model
            raise SegAnyError("corrupt_file", f"cannot load {path.name} as {config.model_name}: {err}") from None
        self.config = config
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(config.model_name)
        self.device = ctx.device

    def describe(self) -> PriorSpec:
        """The options with the weights' identity, so a state never meets other weights after a restart."""
        return PriorSpec(self.name, {**super().describe().options, "model_key": self.model_key})

    @torch.no_grad()
    def embed_text(self, words: list[str]) -> np.ndarray:
        """The words inside the prompt template (CLIP matches a sentence better than a bare word)."""
        if not words:
            return np.zeros((0, self.dim), dtype=np.float32)
        prompts = [self.config.template.replace("{}", w.strip()) for w in words]
        out = self.model.encode_text(self.tokenizer(prompts).to(self.device))
        return torch.nn.functional.normalize(out.float(), dim=-1).cpu().numpy()

    @property
    def dim(self) -> int:
        return int(self.model.text_projection.shape[1])

    @property
    def cells(self) -> int:
        """Cells of the image encoder's last feature grid for one crop: a ViT's patches (196 for ViT-B-16), a
        ResNet tower's stride-32 cells."""
        visual = self.model.visual
        patch = getattr(visual, "patch_size", 32)
        return (_side(visual.image_size) // (patch[0] if isinstance(patch, tuple) else patch)) ** 2

    def _images(self) -> contextlib.AbstractContextManager:
        """bfloat16 autocast for the image encoder on a CPU with bfloat16 units (AVX512-BF16, AMX): its
        matrix products take half the CPU time, the embeddings stay within 1e-4 cosine of float32's (measured,
        ViT-B-16); elsewhere float32 as it is."""
        bf16 = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        if str(self.device) == "cpu" and bf16:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.no_grad()
    def embed_crops(self, views: Views, index: int, masks: np.ndarray) -> np.ndarray:
        masks = np.asarray(masks, dtype=bool).reshape(-1, *views.rgb.shape[1:3])
        if not len(masks):
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = torch.stack([self.preprocess(masked_crop(views.rgb[index], m)) for m in masks]).to(self.device)
        with self._images():
            out = self.model.encode_image(batch)
        out = torch.nn.functional.normalize(out.float(), dim=-1).cpu().numpy()
        out[~masks.any(axis=(1, 2))] = 0.0  # an empty mask shows nothing: no embedding
        return out

    @torch.no_grad()
    def embed(self, views: Views) -> np.ndarray:
        """Dense map (B, g, g', D) in the text space (ClearCLIP's last block, `clip_dense`), over square-padded views.

        g is `image_size` / patch (28 for ViT-B-16 at 448); rows and columns the padding alone covers are cut off.
        """
        visual = self.model.visual
        check_plain_vit(visual)
        size = self.config.image_size or _side(visual.image_size)
        grid = grid_of(visual, size)
        h, w = views.rgb.shape[1:3]
        gh, gw = max(1, round(grid * h / max(h, w))), max(1, round(grid * w / max(h, w)))
        cfg = visual.preprocess_cfg
        mean = torch.tensor(cfg["mean"], dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(cfg["std"], dtype=torch.float32).view(1, 3, 1, 1)
        out = []
        for i in range(len(views)):
            side = max(h, w)
            img = torch.full((1, 3, side, side), GREY)
            img[0, :, :h, :w] = torch.as_tensor(views.rgb[i]).permute(2, 0, 1)
            img = F.interpolate(img, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            with self._images():
                feats = dense_tokens(visual, ((img - mean) / std).to(self.device))[:, :gh, :gw]
            out.append(F.normalize(feats.float(), dim=-1).cpu().numpy())
        return np.concatenate(out)


def checkpoint_path(config: ClipPrior.Config, ctx: PriorContext) -> Path:
    """The option's file, else the context's (preferences, SEGANY_CLIP_CHECKPOINT), else the one `segany models
    fetch` put in the model directory, so fetching is all a user has to do; bad_request saying so when none is."""
    given = config.checkpoint or ctx.checkpoints.get("clip")
    if given:
        return Path(given).expanduser()
    fetched = models.CATALOGUE[FETCH]
    if config.model_name == fetched.arch and models.where(FETCH).is_file():
        return models.where(FETCH)
    raise SegAnyError(
        "bad_request",
        f"labels need CLIP weights: run `segany models fetch {FETCH}` (into {models.model_dir()}), or point "
        "SEGANY_CLIP_CHECKPOINT, the add-on preferences' CLIP Checkpoint or the option 'checkpoint' at a file",
    )


def _side(size: int | tuple[int, int]) -> int:
    return size[0] if isinstance(size, tuple) else size


def masked_crop(rgb: np.ndarray, mask: np.ndarray) -> Image.Image:
    """The mask's bounding box (plus a margin) with everything outside the mask grey, padded square."""
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return Image.new("RGB", (8, 8), (128, 128, 128))
    h, w = mask.shape
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    my, mx = int((y1 - y0) * MARGIN), int((x1 - x0) * MARGIN)
    y0, y1, x0, x1 = max(y0 - my, 0), min(y1 + my, h), max(x0 - mx, 0), min(x1 + mx, w)
    crop = np.where(mask[y0:y1, x0:x1, None], rgb[y0:y1, x0:x1], GREY)
    return _pad_square(crop)


def _pad_square(rgb: np.ndarray) -> Image.Image:
    """Grey-pad to a square at the top-left (CLIP's centre crop would otherwise cut the image)."""
    h, w = rgb.shape[:2]
    side = max(h, w)
    out = np.full((side, side, 3), GREY, dtype=np.float32)
    out[:h, :w] = rgb
    return Image.fromarray((np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8))
