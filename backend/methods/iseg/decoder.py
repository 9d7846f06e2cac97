"""iSeg's click decoder: interactive attention over the clicked vertices, then an MLP to a probability.

Every vertex's feature makes a query; each clicked vertex's feature makes a key and a value, through
separate projections for positive and negative clicks, so one network handles any number and mix of
clicks. The attended vector is concatenated to the vertex feature and an MLP maps it to a logit. With
`compare` (our light decoder) the head also sees their elementwise product and, per vertex, its best
attention logit to a positive and to a negative click (with a flag for each sign being present): with
a single click the softmax over one key is 1 whatever the vertex, so iSeg's head must learn the
comparison from data, which a per-mesh training of a few hundred samples does not teach reliably.
iSeg's original head (`full`) has neither.

`ClickScorer` answers a click set with one attention pass: everything that does not depend on the
clicks (queries, the feature half of the first MLP layer) is computed once per state, and the attended
half of the first layer is folded into the C value vectors (softmax weights are a convex combination).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

PRESETS: dict[str, tuple[int, ...]] = {
    "full": (512,) + (256,) * 14,  # iSeg's decoder MLP: 512 then fourteen layers of 256
    "light": (128, 128, 128),
}


INIT_TEMPERATURE = 10.0


@dataclass(frozen=True)
class DecoderConfig:
    """Feature size, MLP widths, and whether the head also sees the comparison terms (see module doc)."""

    dim: int
    widths: tuple[int, ...] = PRESETS["full"]
    compare: bool = False


class ClickAttention(nn.Module):
    """Single-head scaled dot-product attention from all vertices to the clicked ones.

    iSeg scales the logits by 1/sqrt(D) and starts from random projections. Our features are close to
    unit vectors, so with `identity_init` (the light decoder) the projections start as the identity and
    the scale is learned from INIT_TEMPERATURE: attention begins as cosine similarity to the clicks, sharp
    enough for the softmax to tell a vertex's nearest click from the others.
    """

    def __init__(self, dim: int, identity_init: bool = False) -> None:
        super().__init__()
        self.q = nn.Linear(dim, dim)
        self.k_pos, self.k_neg = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.v_pos, self.v_neg = nn.Linear(dim, dim), nn.Linear(dim, dim)
        if identity_init:
            for lin in (self.q, self.k_pos, self.k_neg, self.v_pos, self.v_neg):
                nn.init.eye_(lin.weight)
                nn.init.zeros_(lin.bias)
            start = INIT_TEMPERATURE
        else:
            start = 1.0 / math.sqrt(dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(start)), requires_grad=identity_init)

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.exp()

    def keys_values(self, click_feats: torch.Tensor, positive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pos = positive.unsqueeze(-1)
        k = torch.where(pos, self.k_pos(click_feats), self.k_neg(click_feats))
        v = torch.where(pos, self.v_pos(click_feats), self.v_neg(click_feats))
        return k, v

    def forward(
        self, feats: torch.Tensor, click_feats: torch.Tensor, positive: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """feats (B, N, D); click_feats (B, C, D); positive, valid (B, C) bool.

        Returns the attended values (B, N, D) and the attention logits (B, N, C), -inf on invalid clicks.
        """
        k, v = self.keys_values(click_feats, positive)
        logits = (self.q(feats) @ k.transpose(1, 2)) * self.scale
        logits = logits.masked_fill(~valid.unsqueeze(1), float("-inf"))
        return torch.softmax(logits, dim=-1) @ v, logits


def best_logits(logits: torch.Tensor, positive: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per vertex: best logit to a positive click, to a negative one, and whether each sign exists.

    logits (..., N, C); positive, valid (..., 1, C) bool → (..., N, 4).
    """
    best, flags = [], []
    for sign in (positive & valid, ~positive & valid):
        present = sign.any(dim=-1, keepdim=True)
        top = logits.masked_fill(~sign, float("-inf")).amax(dim=-1, keepdim=True)
        best.append(torch.where(present, top, torch.zeros_like(top)))
        flags.append(present.to(logits.dtype).expand_as(top))
    return torch.cat(best + flags, dim=-1)


class Decoder(nn.Module):
    """Attention + MLP head (Linear → ReLU → LayerNorm blocks, as in iSeg) → one logit per vertex."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.attention = ClickAttention(cfg.dim, identity_init=cfg.compare)
        layers: list[nn.Module] = []
        width = 3 * cfg.dim + 4 if cfg.compare else 2 * cfg.dim
        for w in cfg.widths:
            layers += [nn.Linear(width, w), nn.ReLU(), nn.LayerNorm(w)]
            width = w
        layers.append(nn.Linear(width, 1))
        self.head = nn.Sequential(*layers)

    def forward(
        self, feats: torch.Tensor, click_feats: torch.Tensor, positive: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        attended, logits = self.attention(feats, click_feats, positive, valid)
        parts = [feats, attended]
        if self.cfg.compare:
            parts += [feats * attended, best_logits(logits, positive.unsqueeze(-2), valid.unsqueeze(-2))]
        return self.head(torch.cat(parts, dim=-1)).squeeze(-1)


class ClickScorer:
    """A trained decoder bound to one mesh's features, for fast inference (no autograd)."""

    def __init__(self, decoder: Decoder, features: torch.Tensor) -> None:
        decoder = decoder.eval()
        dim = decoder.cfg.dim
        first: nn.Linear = decoder.head[0]
        with torch.no_grad():
            self.features = features.contiguous()
            self.queries = decoder.attention.q(features) * decoder.attention.scale
            self.base = features @ first.weight[:, :dim].T + first.bias
            self.attended_weight = first.weight[:, dim : 2 * dim].T.contiguous()
            self.product_weight = first.weight[:, 2 * dim : 3 * dim].T.contiguous()
            self.logit_weight = first.weight[:, 3 * dim :].T.contiguous()
        self.compare = decoder.cfg.compare
        self.attention = decoder.attention
        self.rest = decoder.head[1:]

    @torch.no_grad()
    def __call__(
        self, vertices: torch.Tensor, positive: torch.Tensor, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """vertices (C,) long, positive (C,) bool → probability per vertex (V,), or per vertex of `rows`
        only: a later click's answer matters only near it, and the head's cost grows with the vertices."""
        features, queries, base = (
            (self.features, self.queries, self.base)
            if rows is None
            else (self.features[rows], self.queries[rows], self.base[rows])
        )
        k, v = self.attention.keys_values(self.features[vertices], positive)
        logits = queries @ k.T
        weights = torch.softmax(logits, dim=-1)
        hidden = torch.addmm(base, weights, v @ self.attended_weight)
        if self.compare:
            hidden = torch.addmm(hidden, (weights @ v) * features, self.product_weight)
            valid = torch.ones_like(positive)
            summary = best_logits(logits, positive.unsqueeze(0), valid.unsqueeze(0))
            hidden = torch.addmm(hidden, summary, self.logit_weight)
        return torch.sigmoid(self.rest(hidden).squeeze(-1))
