"""Ground-truth prior, for evaluation only: it reads the answer from the labels it is given.

It exists so a method's 3D lifting can be measured apart from the 2D model: with `noise=None` the
masks are perfect; with noise they fail the way real 2D models do (ragged boundaries, the wrong
granularity, missed and invented masks). Never use it to segment real user data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy import ndimage

from ..errors import SegAnyError
from ..options import option
from ..render import Views
from .base import Prior, PromptResult, prev_mask, prompt_pixels
from .config import PriorContext


@dataclass(frozen=True)
class OracleNoise:
    """How wrong the oracle is; every probability is per part (or per mask) and per view."""

    jitter: int = option(0, 0, 64, doc="each mask is eroded or dilated by up to this many pixels")
    merge: float = option(0.0, 0.0, 1.0, doc="probability that a part is merged with a neighbouring part")
    split: float = option(0.0, 0.0, 1.0, doc="probability that a part is cut in two along its main axis")
    missing: float = option(0.0, 0.0, 1.0, doc="probability that an automatic mask is dropped")
    spurious: float = option(
        0.0, 0.0, 64.0, doc="expected number of invented automatic masks per view and level (a Poisson mean)"
    )
    embed: float = option(0.0, 0.0, 100.0, doc="per-pixel Gaussian noise on the embedding, relative to its unit length")


DEFAULT_NOISE = OracleNoise(jitter=2, merge=0.1, split=0.1, missing=0.1, spurious=0.5, embed=0.3)


def _noise(noise: OracleNoise | str | None) -> OracleNoise:
    """The parsed `noise` option as settings (the parser admits only these three forms)."""
    if noise == "default":
        return DEFAULT_NOISE
    return noise or OracleNoise()


class OraclePrior(Prior):
    """Masks and embeddings from ground-truth ids (evaluation only), with controllable noise.

    `labels` holds one integer per scene element (per triangle for meshes: rendered `ids` index it).
    Prompts answer [the part, the part merged with its largest neighbour, the whole object].
    """

    name: ClassVar[str] = "oracle"
    capabilities: ClassVar[frozenset[str]] = frozenset({"prompt", "auto", "embed"})

    @dataclass(frozen=True)
    class Config:
        labels: np.ndarray = option(kinds="iu", ndim=1, doc="one integer per scene element (of a mesh: triangle)")  # noqa: RUF009
        noise: OracleNoise | str | None = option(  # noqa: RUF009
            None, choices=("default",), doc="None: perfect masks; 'default': DEFAULT_NOISE; or settings"
        )
        seed: int = option(0, 0, 2**63 - 1, doc="seeds every random choice of the noise and the embedding codes")
        embed_dim: int = option(32, 4, 256, doc="D of the embedding map")

    def __init__(self, config: Config, ctx: PriorContext | None = None) -> None:
        self.config = config
        self.classes, self.labels = np.unique(config.labels, return_inverse=True)
        self.noise = _noise(config.noise)
        self.seed = config.seed
        rng = np.random.default_rng([config.seed, 1])
        codes = rng.standard_normal((2 * len(self.classes) + 1, config.embed_dim)).astype(np.float32)
        self.codes = codes / np.linalg.norm(codes, axis=1, keepdims=True)

    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *key])

    def parts(self, views: Views, index: int) -> np.ndarray:
        """The view's part map after merge / split noise: (H, W) int, -1 on background."""
        ids = views.ids[index]
        if ids.size and int(ids.max()) >= len(self.labels):
            raise SegAnyError(
                "invalid_array",
                f"view {index} shows element {int(ids.max())} but only {len(self.labels)} labels were given",
            )
        part = np.where(ids >= 0, self.labels[np.maximum(ids, 0)], -1)
        rng = self._rng(index, 2)
        present = np.unique(part[part >= 0])
        nxt = len(self.classes)
        for p in present:
            if rng.random() < self.noise.split:
                ys, xs = np.nonzero(part == p)
                coords = np.stack((xs, ys), axis=1).astype(np.float64)
                coords -= coords.mean(axis=0)
                axis = np.linalg.svd(coords, full_matrices=False)[2][0] if len(coords) > 1 else np.ones(2)
                side = coords @ axis > 0
                part[ys[side], xs[side]] = nxt
                nxt += 1
        for p in present:
            if rng.random() < self.noise.merge:
                nb = _largest_neighbour(part, part == p)
                if nb >= 0:
                    part[part == nb] = p
        return part

    def _whole(self, views: Views, index: int) -> np.ndarray:
        """Connected foreground components: the whole objects of the view."""
        comp, _ = ndimage.label(views.ids[index] >= 0, structure=np.ones((3, 3)))
        return comp - 1

    def _jitter(self, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        r = int(rng.integers(0, self.noise.jitter + 1)) if self.noise.jitter > 0 else 0
        if r == 0 or not mask.any():
            return mask
        op = ndimage.binary_dilation if rng.random() < 0.5 else ndimage.binary_erosion
        out = op(mask, iterations=r)
        return out if out.any() else mask

    def auto_masks(self, views: Views, index: int) -> list[np.ndarray]:
        """Three levels: parts, parts merged with their largest neighbour, whole objects."""
        part = self.parts(views, index)
        merged = part.copy()
        for p in np.unique(part[part >= 0]):
            if (merged == p).any() and (part == p).sum() == (merged == p).sum():
                nb = _largest_neighbour(merged, merged == p)
                if nb >= 0:
                    merged[merged == nb] = p
        rng = self._rng(index, 3)
        fg = views.ids[index] >= 0
        out = []
        for level in (part, merged, self._whole(views, index)):
            masks = [level == v for v in np.unique(level[level >= 0]) if rng.random() >= self.noise.missing]
            for _ in range(rng.poisson(self.noise.spurious) if fg.any() else 0):
                masks.append(_blob(fg, rng))
            masks = [self._jitter(m, rng) for m in masks]
            out.append(np.stack(masks) if masks else np.zeros((0, *fg.shape), dtype=bool))
        return out

    def prompt(
        self, views: Views, index: int, points: np.ndarray, labels: np.ndarray, prev: np.ndarray | None = None
    ) -> PromptResult:
        part = self.parts(views, index)
        whole = self._whole(views, index)
        h, w = part.shape
        xs, ys, labels = prompt_pixels(points, labels, h, w)
        base = prev_mask(prev, h, w)
        pos = [
            (y, x) for y, x, lab in zip(ys, xs, labels, strict=True) if lab > 0 and part[y, x] >= 0 and not base[y, x]
        ]
        neg = {int(part[y, x]) for y, x, lab in zip(ys, xs, labels, strict=True) if lab <= 0 and part[y, x] >= 0}
        removed = np.isin(part, list(neg)) if neg else np.zeros((h, w), dtype=bool)
        cands = [base.copy(), base.copy(), base.copy()]
        for y, x in pos:
            own = part == part[y, x]
            nb = _largest_neighbour(part, own)
            cands[0] |= own
            cands[1] |= own | (part == nb) if nb >= 0 else own
            cands[2] |= whole == whole[y, x]
        rng = self._rng(index, 4, *xs.tolist(), *ys.tolist())
        masks = np.stack([self._jitter(c & ~removed, rng) & ~removed for c in cands])
        scores = np.array([0.9, 0.8, 0.7], dtype=np.float32)
        return PromptResult(masks=masks, scores=scores, logits=np.where(masks, 1.0, -1.0).astype(np.float32))

    def embed(self, views: Views) -> np.ndarray:
        """One random unit code per part (split halves and background get their own), plus per-pixel noise."""
        out = np.empty((*views.ids.shape, self.codes.shape[1]), dtype=np.float32)
        for i in range(len(views)):
            part = self.parts(views, i)
            code = self.codes[np.where(part >= 0, part, len(self.codes) - 1)]
            if self.noise.embed > 0:
                rng = self._rng(i, 5)
                code = code + rng.standard_normal(code.shape).astype(np.float32) * (
                    self.noise.embed / np.sqrt(code.shape[-1])
                )
            out[i] = code / np.linalg.norm(code, axis=-1, keepdims=True)
        return out


def _largest_neighbour(part: np.ndarray, mask: np.ndarray) -> int:
    """The part sharing the longest border with `mask` (-1 if it touches none)."""
    ring = ndimage.binary_dilation(mask) & ~mask & (part >= 0)
    if not ring.any():
        return -1
    vals, counts = np.unique(part[ring], return_counts=True)
    return int(vals[np.argmax(counts)])


def _blob(fg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An invented mask: a random disc on the foreground."""
    ys, xs = np.nonzero(fg)
    j = rng.integers(len(ys))
    r = max(2.0, np.sqrt(len(ys)) * rng.uniform(0.05, 0.2))
    yy, xx = np.ogrid[: fg.shape[0], : fg.shape[1]]
    return ((yy - ys[j]) ** 2 + (xx - xs[j]) ** 2 <= r * r) & fg
