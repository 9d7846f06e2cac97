"""SAGA's trained affinity features seen at one physical scale: the scale gate and the gated features.

The gate is a small MLP (scale → a soft weight per feature channel). Its input is log(scale / reference),
with the reference (the median mask scale of the prepare) saved in the state: a scale is a length in scene
units and means the same in every session, unlike a quantile whose transform is lost.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ...errors import SegAnyError
from ..base import State

GATE_HIDDEN = 32  # the gate MLP's hidden width (SAGA's gate is this small: it maps one number)


class ScaleGate(torch.nn.Module):
    """scale (scene units) → gate (D,) in (0, 1): Linear(1, 32) → ReLU → Linear(32, D) → sigmoid."""

    def __init__(self, dim: int, reference: float) -> None:
        super().__init__()
        self.reference = float(reference)
        self.hidden = torch.nn.Linear(1, GATE_HIDDEN)
        self.out = torch.nn.Linear(GATE_HIDDEN, dim)

    def forward(self, scales: torch.Tensor) -> torch.Tensor:
        """Gates (S, D) for scales (S,), every scale > 0."""
        u = torch.log(scales.to(torch.float32).reshape(-1, 1) / self.reference)
        return torch.sigmoid(self.out(torch.relu(self.hidden(u))))

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {f"gate.{k}": v.detach().clone() for k, v in self.state_dict().items()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], reference: float) -> ScaleGate:
        dim = int(tensors["gate.out.weight"].shape[0])
        gate = cls(dim, reference)
        own = {k.removeprefix("gate."): v.to(torch.float32) for k, v in tensors.items() if k.startswith("gate.")}
        gate.load_state_dict(own)
        return gate


def gate_for(state: State, scale: float) -> np.ndarray:
    """The gate (D,) float32 a SAGA state gives at `scale` (scene units, > 0)."""
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise SegAnyError("bad_request", f"a scale is a number > 0 in scene units, got {scale!r}")
    gate = ScaleGate.from_tensors(state.tensors, float(state.meta["scale_reference"]))
    with torch.no_grad():
        return gate(torch.tensor([float(scale)]))[0].numpy()


def gated_features(state: State, scale: float) -> np.ndarray:
    """Every element's feature times the gate at `scale`: (N, D) float32. An element no view showed carries
    its nearest shown element's feature (`state.tensors["seen"]` says which were shown)."""
    return state.tensors["features"].to(torch.float32).numpy() * gate_for(state, scale)[None, :]
