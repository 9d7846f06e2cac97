"""2D priors by name. Import is lazy so `segany info` stays fast and optional packages stay optional."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from ..errors import SegAnyError
from ..options import parse_options
from .base import CAPABILITIES, Prior, PromptResult
from .config import PriorContext, PriorSpec, checkpoints_from_env

_WHERE = {
    "geometric": "segany.priors.geometric:GeometricPrior",
    "oracle": "segany.priors.oracle:OraclePrior",
    "oracle_text": "segany.priors.oracle_text:OracleTextPrior",
    "sam": "segany.priors.sam:SamPrior",
    "clip": "segany.priors.clip:ClipPrior",
    "clip_crops": "segany.priors.clip_crops:ClipCropsPrior",
    "clip_sources": "segany.priors.clip_sources:ClipSourcesPrior",
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


def prior_config(name: str, options: Mapping[str, Any]) -> Any:
    """The prior's options as its typed Config; bad_request naming the field that is wrong."""
    return parse_options(prior_class(name).Config, options, owner=f"prior {name!r}")


def get_prior(name: str, ctx: PriorContext | None = None, /, **options: Any) -> Prior:
    """The one way to build a prior: its options parsed into its Config, the machine's settings from `ctx`.

    Positional-only, so an option may be called anything; `get_prior(spec.name, ctx, **spec.options)`
    builds a prior from its `describe()`.
    """
    return prior_class(name)(prior_config(name, options), ctx or PriorContext())


__all__ = [
    "CAPABILITIES",
    "Prior",
    "PriorContext",
    "PriorSpec",
    "PromptResult",
    "checkpoints_from_env",
    "get_prior",
    "prior_class",
    "prior_config",
    "prior_names",
    "register_prior",
]
