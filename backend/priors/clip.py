"""open_clip as a prior: text and masked-region embeddings in one space, for open-vocabulary labels.

Weights come only from a checkpoint file (`segany models fetch clip_vit_b_16`); nothing is downloaded.
Region embeddings follow the usual recipe for CLIP on masks: crop to the mask's box, grey out what is
outside the mask (so the crop's context does not leak into the label), then the model's own preprocess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import open_clip
import torch
from PIL import Image

from ..errors import SegAnyError
from ..options import option
from ..render import Views
from .base import Prior
from .config import PriorContext, PriorSpec, file_key, same_model

GREY = 0.5  # what replaces pixels outside the mask
MARGIN = 0.1  # the crop box grows by this fraction of its size on each side


class ClipPrior(Prior):
    """open_clip model from a checkpoint file: text, masked crops and a dense patch-token map."""

    name: ClassVar[str] = "clip"
    capabilities: ClassVar[frozenset[str]] = frozenset({"text", "embed"})

    @dataclass(frozen=True)
    class Config:
        checkpoint: str | None = option(
            None, doc="weights file; None: the context's (add-on preferences, SEGANY_CLIP_CHECKPOINT)"
        )
        model_name: str = option("ViT-B-16", doc="the open_clip architecture the checkpoint holds")
        model_key: str | None = option(
            None, doc="the weights a state was prepared with: a file holding others is refused"
        )

    def __init__(self, config: Config = Config(), ctx: PriorContext | None = None) -> None:
        ctx = ctx or PriorContext()
        path = ctx.checkpoint(self.name, config.checkpoint)
        if not path.is_file():
            raise SegAnyError(
                "not_found", f"CLIP checkpoint {path} does not exist (see `segany models fetch clip_vit_b_16`)"
            )
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
        if not words:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self.model.encode_text(self.tokenizer(list(words)).to(self.device))
        return torch.nn.functional.normalize(out.float(), dim=-1).cpu().numpy()

    @property
    def dim(self) -> int:
        return int(self.model.text_projection.shape[1])

    @torch.no_grad()
    def embed_crops(self, views: Views, index: int, masks: np.ndarray) -> np.ndarray:
        masks = np.asarray(masks, dtype=bool).reshape(-1, *views.rgb.shape[1:3])
        if not len(masks):
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = torch.stack([self.preprocess(masked_crop(views.rgb[index], m)) for m in masks]).to(self.device)
        out = self.model.encode_image(batch)
        out = torch.nn.functional.normalize(out.float(), dim=-1).cpu().numpy()
        out[~masks.any(axis=(1, 2))] = 0.0  # an empty mask shows nothing: no embedding
        return out

    @torch.no_grad()
    def embed(self, views: Views) -> np.ndarray:
        """Dense map (B, g, g', D): patch tokens through the image projection, over a square-padded view.

        Coarse (14×14 cells for ViT-B-16 at 224) and less reliable than crops; methods that need
        labels per region should prefer embed_crops.
        """
        visual = self.model.visual
        size = visual.image_size[0] if isinstance(visual.image_size, tuple) else visual.image_size
        patch = visual.patch_size[0] if isinstance(visual.patch_size, tuple) else visual.patch_size
        grid = size // patch
        h, w = views.rgb.shape[1:3]
        gh, gw = max(1, round(grid * h / max(h, w))), max(1, round(grid * w / max(h, w)))
        visual.output_tokens = True
        try:
            batch = torch.stack([self.preprocess(_pad_square(views.rgb[i])) for i in range(len(views))])
            _, tokens = visual(batch.to(self.device))
        finally:
            visual.output_tokens = False
        feats = tokens @ visual.proj if visual.proj is not None else tokens
        feats = feats.reshape(len(views), grid, grid, -1)[:, :gh, :gw]
        return torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy()


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
