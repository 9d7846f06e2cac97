"""iSeg's mesh feature field: random Fourier features of the vertex position → MLP → per-vertex feature.

The field is trained so that, rendered into a view (barycentric interpolation over the raster), it
matches the 2D prior's embedding map inside the silhouette; every vertex then carries a 3D-consistent
version of the 2D model's features, which the click decoder attends over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture of the field (iSeg: width 256, depth 4, 256 Fourier features, sigma 5)."""

    out_dim: int
    width: int = 256
    depth: int = 4
    fourier: int = 256
    sigma: float = 5.0


class FourierFeatures(nn.Module):
    """x ↦ [x, sin 2πxB, cos 2πxB] with a fixed Gaussian matrix B (saved with the weights, never redrawn)."""

    def __init__(self, in_dim: int, n: int, sigma: float, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.register_buffer("matrix", torch.randn(in_dim, n, generator=generator) * sigma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (2.0 * math.pi) * (x @ self.matrix)
        return torch.cat([x, torch.sin(z), torch.cos(z)], dim=-1)


class Encoder(nn.Module):
    """Position (normalised to the unit sphere) → feature in (-1, 1)^out_dim."""

    def __init__(self, cfg: EncoderConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.fourier = FourierFeatures(3, cfg.fourier, cfg.sigma, generator)
        layers: list[nn.Module] = [nn.Linear(3 + 2 * cfg.fourier, cfg.width), nn.ReLU(), nn.LayerNorm(cfg.width)]
        for _ in range(cfg.depth):
            layers += [nn.Linear(cfg.width, cfg.width), nn.ReLU(), nn.LayerNorm(cfg.width)]
        layers += [nn.Linear(cfg.width, cfg.out_dim), nn.Tanh()]
        self.mlp = nn.Sequential(*layers)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.fourier(positions))


def normalise(vertices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centre on the vertex mean and scale into the unit sphere, as iSeg does before the Fourier map.

    Returns (normalised vertices, centre (3,), scale (1,)) so the same map can be applied later.
    """
    centre = vertices.mean(dim=0)
    scale = (vertices - centre).norm(dim=1).max().clamp_min(1e-12).reshape(1)
    return (vertices - centre) / scale, centre, scale
