"""The two optimisations of iSeg's prepare, both supervised through rendering.

Each step draws covered pixels and evaluates the networks only on the vertices of those pixels'
triangles (rendering a pixel needs nothing else), so a step costs the same on a 5K- and a 50K-vertex
mesh; the loss is exactly the one on rendered images, restricted to the drawn pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F

from ...jobs import JobContext
from .data import PixelCorners, Samples
from .decoder import Decoder, DecoderConfig
from .encoder import Encoder, EncoderConfig

M = TypeVar("M", bound=torch.nn.Module)


@dataclass(frozen=True)
class Schedule:
    steps: int
    lr: float
    batch: int  # pixels per step (encoder) / samples per step (decoder)
    pixels: int = 0  # pixels per sample (decoder)


def seeded(generator: torch.Generator, build: Callable[[], M]) -> M:
    """Build a module with its initial weights drawn from `generator`: nn.Linear draws from torch's global
    RNG, so a prepare's networks depended on what ran before it in the process, not on its seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
        return build()


def _cosine(optim: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    return torch.optim.lr_scheduler.LambdaLR(optim, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * s / steps)))


def train_encoder(
    positions: torch.Tensor,
    corners: PixelCorners,
    targets: torch.Tensor,
    cfg: EncoderConfig,
    sched: Schedule,
    ctx: JobContext,
    generator: torch.Generator,
) -> tuple[Encoder, torch.Tensor, list[float]]:
    """Fit the field to the prior's embeddings (MSE inside the silhouette, iSeg's loss).

    positions (V, 3) normalised, on the training device; corners and targets (N, D, the embedding at
    each corner row) stay on the CPU and each step's draw moves over. Returns the encoder, the per-vertex
    features (V, D) and the loss curve.
    """
    dev = positions.device
    encoder = seeded(generator, lambda: Encoder(cfg, generator)).to(dev)
    optim = torch.optim.Adam(encoder.parameters(), sched.lr)
    lr_sched = _cosine(optim, sched.steps)
    n = len(corners.pixel)
    losses = []
    for step in range(sched.steps):
        ctx.progress(step / sched.steps, f"encoder step {step + 1}/{sched.steps}")
        rows = torch.randint(n, (min(sched.batch, n),), generator=generator)
        used, inverse = torch.unique(corners.vertices[rows], return_inverse=True)
        feats = encoder(positions[used.to(dev)])
        weights = corners.weights[rows].to(dev).unsqueeze(-1)
        # index_select, not feats[inverse]: the indexing's backward (index_put_ accumulate) adds with CPU
        # atomics, so its sums, and with them the prepare, varied with the machine's load
        picked = feats.index_select(0, inverse.reshape(-1).to(dev)).reshape(*inverse.shape, -1)
        rendered = (picked * weights).sum(dim=1)
        loss = (rendered - targets[rows].to(dev)).pow(2).sum(dim=-1).mean()
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        lr_sched.step()
        losses.append(loss.item())
    encoder.eval()
    with torch.no_grad():
        features = torch.cat([encoder(chunk) for chunk in positions.split(65536)])
    return encoder, features, losses


def dice_loss(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft dice per sample over its drawn pixels, averaged; balances small masks against BCE's bias."""
    inter = (prob * target).sum(dim=-1)
    return (1 - (2 * inter + 1) / (prob.sum(dim=-1) + target.sum(dim=-1) + 1)).mean()


def train_decoder(
    features: torch.Tensor,
    samples: Samples,
    corners: PixelCorners,
    cfg: DecoderConfig,
    sched: Schedule,
    dice_weight: float,
    ctx: JobContext,
    generator: torch.Generator,
) -> tuple[Decoder, list[float]]:
    """Fit the click decoder so its probabilities, rendered into each sample's view, match the mask."""
    dev = features.device
    decoder = seeded(generator, lambda: Decoder(cfg)).to(dev)
    optim = torch.optim.Adam(decoder.parameters(), sched.lr)
    lr_sched = _cosine(optim, sched.steps)
    view = torch.as_tensor(samples.view)
    clicks = torch.as_tensor(samples.clicks)
    positive = torch.as_tensor(samples.positive)
    valid = torch.as_tensor(samples.valid)
    masks = torch.as_tensor(samples.masks).reshape(len(samples), -1)
    start = corners.offsets[view]
    count = corners.offsets[view + 1] - start
    losses = []
    for step in range(sched.steps):
        ctx.progress(step / sched.steps, f"decoder step {step + 1}/{sched.steps}")
        s = torch.randint(len(samples), (sched.batch,), generator=generator)
        u = torch.rand(len(s), sched.pixels, generator=generator)
        rows = start[s, None] + (u * count[s, None]).long()
        target = masks[s[:, None], corners.pixel[rows]].float().to(dev)
        verts = corners.vertices[rows].reshape(len(s), -1).to(dev)
        logits = decoder(features[verts], features[clicks[s].to(dev)], positive[s].to(dev), valid[s].to(dev))
        prob = torch.sigmoid(logits).reshape(len(s), sched.pixels, 3)
        rendered = (prob * corners.weights[rows].to(dev)).sum(dim=-1).clamp(1e-6, 1 - 1e-6)
        loss = F.binary_cross_entropy(rendered, target) + dice_weight * dice_loss(rendered, target)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        lr_sched.step()
        losses.append(loss.item())
    return decoder.eval(), losses
