"""2D priors by name. Import is lazy so `segany info` stays fast and optional packages stay optional."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from ..errors import SegAnyError
from .base import CAPABILITIES, Prior, PromptResult

_WHERE = {
    "geometric": "segany.priors.geometric:GeometricPrior",
    "oracle": "segany.priors.oracle:OraclePrior",
    "sam": "segany.priors.sam:SamPrior",
    "clip": "segany.priors.clip:ClipPrior",
}


def register_prior(name: str, where: str) -> None:
    """Plug in a 2D prior by "module:Class"."""
    _WHERE[name] = where


def prior_names() -> list[str]:
    return sorted(_WHERE)


def prior_class(name: str) -> type[Prior]:
    if name not in _WHERE:
        raise SegAnyError("not_found", f"unknown prior {name!r}; available: {prior_names()}")
    module, cls = _WHERE[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_prior(name: str, **options: Any) -> Prior:
    """Instantiate a prior; options are provider-specific (checkpoint path, device, noise, labels)."""
    cls = prior_class(name)
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as err:
        hint = ""
        if "checkpoint" in str(err):
            hint = "; point at a checkpoint file (add-on preferences, SEGANY_SAM_CHECKPOINT / SEGANY_CLIP_CHECKPOINT)"
        raise SegAnyError("bad_request", f"prior {name!r}: {err}{hint}") from None
    return cls(**options)


__all__ = [
    "CAPABILITIES",
    "Prior",
    "PromptResult",
    "get_prior",
    "prior_class",
    "prior_names",
    "register_prior",
]
