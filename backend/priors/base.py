"""The one interface every 2D prior provides; methods ask for capabilities by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import SegAnyError
from ..options import plain
from ..render import Views
from .config import PriorSpec

CAPABILITIES = ("prompt", "auto", "embed", "text")


@dataclass(frozen=True)
class NoOptions:
    """The Config of a prior that takes no options."""


@dataclass
class PromptResult:
    """SAM-style multimask answer: three candidates, small → large, with quality scores."""

    masks: np.ndarray  # (3, H, W) bool
    scores: np.ndarray  # (3,) float32
    logits: np.ndarray | None = None  # (3, h, w) float32, feed back as `prev` for refinement


class Prior:
    """Base class; subclasses list what they can do in `capabilities` and their options in a `Config` dataclass.

    A subclass is built as `cls(config, ctx)` (`segany.priors.get_prior` parses the options) and keeps
    `self.config`; `describe()` returns what builds it again, so a state can record its prior.
    """

    name: ClassVar[str] = ""
    capabilities: ClassVar[frozenset[str]] = frozenset()
    # its masks are cut from the rendered shape alone: they know no more about parts than the mesh's creases do
    shape_only: ClassVar[bool] = False
    Config: ClassVar[type] = NoOptions
    config: Any

    def describe(self) -> PriorSpec:
        """Name and options that `get_prior` turns into an equivalent prior (given a like context)."""
        return PriorSpec(self.name, plain(self.config))

    def require(self, capability: str) -> None:
        if capability not in self.capabilities:
            from . import prior_class, prior_names

            able = [n for n in prior_names() if capability in prior_class(n).capabilities]
            raise SegAnyError(
                "unsupported",
                f"prior {self.name!r} has no {capability!r} capability (it has {sorted(self.capabilities)}); "
                f"priors with it: {able}",
            )

    def prompt(
        self, views: Views, index: int, points: np.ndarray, labels: np.ndarray, prev: np.ndarray | None = None
    ) -> PromptResult:
        """Masks for point prompts in view `index`: points (P, 2) pixel x, y; labels (P,) 1 = positive, 0 = negative."""
        self.require("prompt")
        raise AssertionError("unreachable: a prior with 'prompt' overrides prompt()")

    def auto_masks(self, views: Views, index: int) -> list[np.ndarray]:
        """Segment-everything for view `index`: a list of granularity levels, fine → coarse, each (M, H, W) bool."""
        self.require("auto")
        raise AssertionError("unreachable: a prior with 'auto' overrides auto_masks()")

    def embed(self, views: Views) -> np.ndarray:
        """Per-pixel embedding maps (B, h, w, D) float32, unit length along D; h, w may be coarser than H, W."""
        self.require("embed")
        raise AssertionError("unreachable: a prior with 'embed' overrides embed()")

    def embed_text(self, words: list[str]) -> np.ndarray:
        """Text embeddings (T, D), unit length, in the space of this prior's `embed` maps and `embed_crops`.

        `words` are the user's words as typed; a source applies its own prompt template (CLIP's "a photo of
        a {}"), since the template belongs to the model, not to the method that asks."""
        self.require("text")
        raise AssertionError("unreachable: a prior with 'text' overrides embed_text()")

    def text_sources(self) -> dict[str, Prior]:
        """The language sources this prior stands for, by name (SAS fuses them by what each is good at).

        A language source is a prior with 'text' and 'embed': `embed(views)` paints per-pixel embeddings
        (zero vector: no opinion) in the space of its `embed_text`. A plain source is its own only source;
        a prior that stands for several (the evaluation oracle's two, an ensemble of CLIP sources) overrides
        this, so a method still takes one prior while fusing many.
        """
        self.require("text")
        return {self.name: self}

    def embed_crops(self, views: Views, index: int, masks: np.ndarray) -> np.ndarray:
        """Embeddings (M, D) of the masked image regions (M, H, W) of view `index`."""
        self.require("text")
        raise AssertionError("unreachable: a prior with 'text' overrides embed_crops()")


def prompt_pixels(points: np.ndarray, labels: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point prompts as pixel columns, rows (clipped into the view) and labels, checked for matching lengths."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    labels = np.asarray(labels).reshape(-1)
    if len(points) != len(labels):
        raise SegAnyError("bad_request", f"{len(points)} points but {len(labels)} labels")
    xs = np.clip(points[:, 0].astype(np.int64), 0, w - 1)
    ys = np.clip(points[:, 1].astype(np.int64), 0, h - 1)
    return xs, ys, labels


def prev_mask(prev: np.ndarray | None, h: int, w: int) -> np.ndarray:
    """A previous answer (mask, or logits > 0, covering the whole view at any resolution) as (H, W) bool."""
    if prev is None:
        return np.zeros((h, w), dtype=bool)
    prev = np.asarray(prev)
    prev = prev.reshape(prev.shape[-2:]) if prev.ndim > 2 and np.prod(prev.shape[:-2]) == 1 else prev
    if prev.ndim != 2:
        raise SegAnyError("invalid_array", f"prev must be one mask or logit map, got shape {prev.shape}")
    sel = prev > 0 if prev.dtype != bool else prev
    ys = (np.arange(h) * sel.shape[0] // h).clip(0, sel.shape[0] - 1)
    xs = (np.arange(w) * sel.shape[1] // w).clip(0, sel.shape[1] - 1)
    return sel[np.ix_(ys, xs)]
