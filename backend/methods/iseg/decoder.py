"""iSeg's click decoder: interactive attention over the clicked vertices, then an MLP to a probability.

Every vertex's feature makes a query; each clicked vertex's feature makes a key and a value, through
separate projections for positive and negative clicks, so one network handles any number and mix of
clicks. The attended vector is concatenated to the vertex feature and an MLP maps it to a logit. With
`product` (our light decoder) their elementwise product is concatenated too, so the first layer can
compare a vertex with the clicks linearly instead of learning a bilinear form from a few hundred
samples; iSeg's original head (`full`) has no product term.

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


@dataclass(frozen=True)
class DecoderConfig:
    """Feature size, MLP widths, and whether the head also sees feature ⊙ attended."""

    dim: int
    widths: tuple[int, ...] = PRESETS["full"]
    product: bool = False


class ClickAttention(nn.Module):
    """Single-head scaled dot-product attention from all vertices to the clicked ones."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.q = nn.Linear(dim, dim)
        self.k_pos, self.k_neg = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.v_pos, self.v_neg = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.scale = 1.0 / math.sqrt(dim)

    def keys_values(self, click_feats: torch.Tensor, positive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pos = positive.unsqueeze(-1)
        k = torch.where(pos, self.k_pos(click_feats), self.k_neg(click_feats))
        v = torch.where(pos, self.v_pos(click_feats), self.v_neg(click_feats))
        return k, v

    def forward(
        self, feats: torch.Tensor, click_feats: torch.Tensor, positive: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """feats (B, N, D); click_feats (B, C, D); positive, valid (B, C) bool → attended (B, N, D)."""
        k, v = self.keys_values(click_feats, positive)
        logits = (self.q(feats) @ k.transpose(1, 2)) * self.scale
        logits = logits.masked_fill(~valid.unsqueeze(1), float("-inf"))
        return torch.softmax(logits, dim=-1) @ v


class Decoder(nn.Module):
    """Attention + MLP head (Linear → ReLU → LayerNorm blocks, as in iSeg) → one logit per vertex."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.attention = ClickAttention(cfg.dim)
        layers: list[nn.Module] = []
        width = (3 if cfg.product else 2) * cfg.dim
        for w in cfg.widths:
            layers += [nn.Linear(width, w), nn.ReLU(), nn.LayerNorm(w)]
            width = w
        layers.append(nn.Linear(width, 1))
        self.head = nn.Sequential(*layers)

    def forward(
        self, feats: torch.Tensor, click_feats: torch.Tensor, positive: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        attended = self.attention(feats, click_feats, positive, valid)
        parts = [feats, attended, feats * attended] if self.cfg.product else [feats, attended]
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
            self.product_weight = first.weight[:, 2 * dim :].T.contiguous() if decoder.cfg.product else None
        self.attention = decoder.attention
        self.rest = decoder.head[1:]

    @torch.no_grad()
    def __call__(self, vertices: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
        """vertices (C,) long, positive (C,) bool → probability per vertex (V,)."""
        k, v = self.attention.keys_values(self.features[vertices], positive)
        weights = torch.softmax(self.queries @ k.T, dim=-1)
        hidden = torch.addmm(self.base, weights, v @ self.attended_weight)
        if self.product_weight is not None:
            hidden = torch.addmm(hidden, (weights @ v) * self.features, self.product_weight)
        return torch.sigmoid(self.rest(hidden).squeeze(-1))
