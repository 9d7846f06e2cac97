"""Ground-truth language sources, for evaluation only: each paints the name of the part under a pixel.

Real language models need weights this machine cannot download, so SAS's mechanism (registration,
capability, fusion, the 3D step) is measured with stand-ins whose mistakes are known. The prior stands
for `sources` oracles. Each embeds a word as a fixed random unit vector (a hash of the word seeds it, so
every source and every run shares one text space), paints each visible part's name embedding on its pixels,
and errs in two ways:

- confusion: the sorted names are dealt to the sources in turn (name i to source i modulo `sources`; with
  `weakness` "word", by a hash of the name instead, so a name is weak for the same source in every scene, as
  a real model's weak categories are — what a calibration set measured on other scenes needs), and
  each source is weak on its own share: in each view it mistakes such a part, with probability
  `confusion`, for the next name of its share (cyclically; for the next name overall when its share holds
  one name) — a model weak on a family of categories confuses them with each other, on one image and not
  the next, while another model tells them apart;
- noise: per view and part, Gaussian noise of relative size `noise` on the embedding;
- resolution: with `cell` > 1 the map is a coarse grid (as a dense model's patch tokens are), each cell
  naming the part at its centre, so boundaries blur by up to a cell.

Never use it on real user data.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from ..errors import SegAnyError
from ..options import option
from ..render import Views
from .base import Prior
from .config import PriorContext

MAX_NAMES = 4096  # label values that carry a name; a PSB mesh has a few dozen segments


def _word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")


def word_code(word: str, dim: int) -> np.ndarray:
    """The fixed unit vector of a word in the oracle's text space (the same in every process)."""
    code = np.random.default_rng(_word_hash(word)).standard_normal(dim).astype(np.float32)
    return code / np.linalg.norm(code)


class OracleTextPrior(Prior):
    """`sources` oracle language sources with complementary confusions (see the module docstring)."""

    name: ClassVar[str] = "oracle_text"
    capabilities: ClassVar[frozenset[str]] = frozenset({"text", "embed"})

    @dataclass(frozen=True)
    class Config:
        labels: np.ndarray = option(kinds="iu", ndim=1, doc="one integer per scene element (of a mesh: triangle)")  # noqa: RUF009
        names: tuple[str, ...] = option(
            (), most=MAX_NAMES, doc="the name of label value i at position i; values past the list are 'part <i>'"
        )
        sources: int = option(2, 1, 8, doc="oracle sources; source s is weak on every sources-th name from s")
        confusion: float = option(0.8, 0.0, 1.0, doc="per view, how often a source mistakes a weak name for the next")
        noise: float = option(0.3, 0.0, 10.0, doc="per view and part, embedding noise relative to unit length")
        seed: int = option(0, 0, 2**63 - 1, doc="seeds the confusions and the noise")
        embed_dim: int = option(64, 8, 512, doc="D of the text space")
        cell: int = option(1, 1, 64, doc="pixels per side of one embedding cell (a dense model's patch grid)")
        weakness: str = option(
            "order", choices=("order", "word"), doc="deal weak names by their sorted order in the scene or by name"
        )
        source: int | None = option(None, 0, 7, doc="set on the sources text_sources returns: which one this is")

    def __init__(self, config: Config, ctx: PriorContext | None = None) -> None:
        self.config = config
        if config.source is not None and config.source >= config.sources:
            raise SegAnyError("bad_request", f"prior 'oracle_text': source {config.source} of {config.sources}")
        values = np.unique(config.labels)
        self.labels = np.asarray(config.labels, dtype=np.int64)
        names = [config.names[v] if 0 <= v < len(config.names) else f"part {v}" for v in values.tolist()]
        order = sorted(set(names))
        # per label value: its name's code, and the code of the name a weak source takes it for
        self.part_of = np.searchsorted(values, self.labels)  # per element, its label value's position
        self.truth = np.stack([word_code(n, config.embed_dim) for n in names]) if names else np.zeros((0, 1))
        share = {n: (i if config.weakness == "order" else _word_hash(n)) % config.sources for i, n in enumerate(order)}
        partner = [_partner(order, n, share) for n in names]
        self.mistaken = np.stack([word_code(n, config.embed_dim) for n in partner]) if names else self.truth
        self.weak_by = np.array([share[n] for n in names], dtype=np.int64)

    def text_sources(self) -> dict[str, Prior]:
        """One prior per oracle, `oracle_a`, `oracle_b`, …, each with its own weaknesses."""
        if self.config.source is not None:
            return {self.source_name(self.config.source): self}
        return {
            self.source_name(s): OracleTextPrior(replace(self.config, source=s)) for s in range(self.config.sources)
        }

    @staticmethod
    def source_name(s: int) -> str:
        return f"oracle_{chr(ord('a') + s)}"

    def embed_text(self, words: list[str]) -> np.ndarray:
        if not words:
            return np.zeros((0, self.config.embed_dim), dtype=np.float32)
        return np.stack([word_code(w, self.config.embed_dim) for w in words])

    def embed(self, views: Views) -> np.ndarray:
        """Per pixel (per cell), the (possibly mistaken, noisy) name embedding of the part it shows (at the
        cell's centre); zero on background."""
        cfg = self.config
        source = cfg.source or 0
        first = cfg.cell // 2
        grid = views.ids[:, first :: cfg.cell, first :: cfg.cell]
        out = np.zeros((*grid.shape, cfg.embed_dim), dtype=np.float32)
        for i in range(len(views)):
            ids = grid[i]
            if ids.size and int(ids.max()) >= len(self.labels):
                raise SegAnyError(
                    "invalid_array",
                    f"view {i} shows element {int(ids.max())} but only {len(self.labels)} labels were given",
                )
            fg = ids >= 0
            part = self.part_of[ids[fg]]
            present = np.unique(part)
            rng = np.random.default_rng([cfg.seed, source, _view_seed(views.cameras.viewmats[i])])
            codes = self.truth[present].copy()
            wrong = (self.weak_by[present] == source) & (rng.random(len(present)) < cfg.confusion)
            codes[wrong] = self.mistaken[present][wrong]
            codes += rng.standard_normal(codes.shape).astype(np.float32) * (cfg.noise / np.sqrt(cfg.embed_dim))
            codes /= np.linalg.norm(codes, axis=1, keepdims=True)
            out[i][fg] = codes[np.searchsorted(present, part)]
        return out


def _view_seed(viewmat: np.ndarray) -> int:
    """A view's own seed, from its camera: `embed` gets the views a few at a time, so a position in the batch
    would repeat every batch (session 12: views 0, 4, 8, … had drawn the same confusions and noise)."""
    return _word_hash(np.ascontiguousarray(viewmat, dtype=np.float32).tobytes().hex())


def _partner(order: list[str], name: str, share: dict[str, int]) -> str:
    """The name a weak source takes `name` for: the next one of the same share, else the next overall."""
    same = [n for n in order if share[n] == share[name]]
    if len(same) > 1:
        return same[(same.index(name) + 1) % len(same)]
    return order[(order.index(name) + 1) % len(order)]
