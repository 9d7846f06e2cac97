"""CLIP on mask crops as a language source: every mask of a view is cropped, embedded, and painted on its pixels.

A crop that shows one part alone is what CLIP labels best (OpenMask3D, OVSeg), so the masks come from a
segmenter — the weight-free `geometric` prior or SAM's automatic masks — and each pixel gets the mean of
the embeddings of the masks that cover it, over the chosen granularity levels (parts and part groups by
default; whole objects would paint one object word everywhere). A pixel no mask covers gets the zero
vector: no opinion, which lifting must skip rather than average in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..options import option
from ..render import Views
from .base import Prior
from .clip import ClipPrior
from .config import PriorContext, PriorSpec

MASK_SOURCES = ("geometric", "sam")


class ClipCropsPrior(Prior):
    """Per-pixel CLIP embeddings of the masks covering each pixel; text in the same space (`embed_text`)."""

    name: ClassVar[str] = "clip_crops"
    capabilities: ClassVar[frozenset[str]] = frozenset({"text", "embed"})

    @dataclass(frozen=True)
    class Config:
        clip: ClipPrior.Config = option(ClipPrior.Config(), doc="the CLIP model (its checkpoint is the 'clip' one)")  # noqa: RUF009
        masks: str = option("geometric", choices=MASK_SOURCES, doc="the prior whose automatic masks are cropped")
        levels: tuple[int, ...] = option(
            (0, 1), 0, 7, most=8, doc="granularity levels of the automatic masks (0 finest) painted on the pixels"
        )
        # a mask of fewer pixels than the encoder has cells is blown up until most cells see no pixel of their own:
        # CLIP sees blur. On the textured donut (20 views of 160 px) that was 60 % of the crops.
        min_pixels: int | None = option(
            None,
            1,
            doc="masks smaller than this are not cropped; coarser levels still cover them. None: the image "
            "encoder's cell count (196 for ViT-B-16)",
        )
        cell: int = option(4, 1, 64, doc="pixels per side of one cell of the embedding map (memory: H·W/cell²·D)")
        batch: int = option(32, 1, 1024, doc="crops through the image encoder at once (memory)")

    def __init__(self, config: Config = Config(), ctx: PriorContext | None = None) -> None:
        from . import get_prior

        ctx = ctx or PriorContext()
        self.config = config
        self.clip = ClipPrior(config.clip, ctx)
        self.segmenter = get_prior(config.masks, ctx)
        self.min_pixels = config.min_pixels or self.clip.cells

    def describe(self) -> PriorSpec:
        """The options with the CLIP weights' identity, so a state never meets other weights after a restart."""
        options = dict(super().describe().options)
        options["clip"] = self.clip.describe().options
        return PriorSpec(self.name, options)

    @property
    def dim(self) -> int:
        return self.clip.dim

    def embed_text(self, words: list[str]) -> np.ndarray:
        return self.clip.embed_text(words)

    def embed_crops(self, views: Views, index: int, masks: np.ndarray) -> np.ndarray:
        return self.clip.embed_crops(views, index, masks)

    def view_masks(self, views: Views, index: int) -> np.ndarray:
        """The chosen levels' automatic masks of view `index` at least `min_pixels` large, each once, (M, H, W) bool.

        Levels repeat the masks that outlive a cut, and the encoder costs about 0.3 s of CPU per crop (ViT-B-16).
        """
        found = self.segmenter.auto_masks(views, index)
        chosen = [found[k] for k in self.config.levels if k < len(found)]
        masks = np.concatenate(chosen) if chosen else np.zeros((0, *views.rgb.shape[1:3]), dtype=bool)
        masks = masks[masks.sum(axis=(1, 2)) >= self.min_pixels]
        if not len(masks):
            return masks
        _, first = np.unique(np.packbits(masks.reshape(len(masks), -1), axis=1), axis=0, return_index=True)
        return masks[np.sort(first)]

    def embed(self, views: Views) -> np.ndarray:
        """(B, ⌈H/cell⌉, ⌈W/cell⌉, D): per cell the covering masks' crop embeddings, weighted by cover, unit length."""
        h, w = views.rgb.shape[1:3]
        c = self.config.cell
        gh, gw = -(-h // c), -(-w // c)
        out = np.zeros((len(views), gh, gw, self.dim), dtype=np.float32)
        for i in range(len(views)):
            masks = self.view_masks(views, i)
            if not len(masks):
                continue
            emb = np.concatenate(
                [
                    self.embed_crops(views, i, masks[j : j + self.config.batch])
                    for j in range(0, len(masks), self.config.batch)
                ]
            )
            out[i] = paint(masks, emb, c)
        return out


def paint(masks: np.ndarray, emb: np.ndarray, cell: int) -> np.ndarray:
    """(⌈H/cell⌉, ⌈W/cell⌉, D): each cell the sum of the masks' embeddings times the fraction of the cell they
    cover, normalised to unit length; cells no mask covers stay zero."""
    m, h, w = masks.shape
    gh, gw = -(-h // cell), -(-w // cell)
    padded = np.zeros((m, gh * cell, gw * cell), dtype=np.float32)
    padded[:, :h, :w] = masks
    cover = padded.reshape(m, gh, cell, gw, cell).mean(axis=(2, 4))
    out = np.einsum("mij,md->ijd", cover, emb.astype(np.float32))
    norm = np.linalg.norm(out, axis=-1, keepdims=True)
    return np.where(norm > 1e-8, out / np.maximum(norm, 1e-8), 0.0).astype(np.float32)
