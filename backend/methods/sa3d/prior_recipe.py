"""How to get the 2D prior back for a query when only the stored state is left.

SA3D prompts its prior at query time, but `Method.query` receives the scene and the state, not the
prior. The method keeps the prior it was prepared with while that state is alive; a state loaded from
the cache (a restarted backend, a re-opened .blend) needs the same prior rebuilt, so prepare records
its settings here. Oracle labels travel as a state tensor; a SAM prior is made by the engine from the
checkpoint it is configured with (`Method.restore`), checked against the model that prepared the state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from ...errors import SegAnyError
from ...priors import Prior, get_prior

LABELS = "prior.labels"


def record(prior: Prior) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """JSON-able settings and tensors from which `rebuild` makes an equivalent prior."""
    name = prior.name
    if name == "geometric":
        weights = asdict(prior.weights)
        weights["scales"] = list(weights["scales"])
        return {
            "name": name,
            "levels": list(prior.levels),
            "embed_dim": prior.embed_dim,
            "min_area": prior.min_area,
            "weights": weights,
        }, {}
    if name == "oracle":
        labels = prior.classes[prior.labels].astype(np.int64)
        return {"name": name, "noise": asdict(prior.noise), "seed": prior.seed}, {LABELS: torch.as_tensor(labels)}
    if name == "sam":
        return {"name": name, "model_key": prior.model_key, "device": str(prior.device)}, {}
    return {"name": name}, {}


def rebuild(
    meta: dict[str, Any], tensors: dict[str, torch.Tensor], make_prior: Callable[[], Prior] | None = None
) -> Prior:
    """The prior `record` described; not_prepared with what to do when it cannot be made again.

    `make_prior` is the engine's way to make the prior it prepares with; a SAM prior needs it.
    """
    name = meta.get("name")
    if name == "geometric":
        from ...priors.geometric import BoundaryWeights

        weights = dict(meta["weights"])
        weights["scales"] = tuple(weights["scales"])
        return get_prior(
            name,
            levels=tuple(meta["levels"]),
            embed_dim=int(meta["embed_dim"]),
            min_area=float(meta["min_area"]),
            weights=BoundaryWeights(**weights),
        )
    if name == "oracle" and LABELS in tensors:
        return get_prior(name, labels=tensors[LABELS].numpy(), noise=meta["noise"], seed=int(meta["seed"]))
    if name == "sam":
        if make_prior is None:
            raise SegAnyError("not_prepared", "this sa3d state was prepared with SAM; prepare it again")
        prior = make_prior()
        if getattr(prior, "model_key", None) != meta.get("model_key"):
            raise SegAnyError(
                "not_prepared",
                f"this sa3d state was prepared with SAM model {meta.get('model_key')!r}, but the configured "
                f"checkpoint holds {getattr(prior, 'model_key', None)!r}; prepare again",
            )
        return prior
    raise SegAnyError("not_prepared", f"the {name!r} prior of this sa3d state cannot be rebuilt; prepare again")
