"""Methods by name, imported lazily."""

from __future__ import annotations

import importlib

from ..errors import SegAnyError
from .base import Method, Selection, State

_WHERE = {
    "iseg": "segany.methods.iseg:ISeg",
    "saga": "segany.methods.saga:SAGA",
    "sa3d": "segany.methods.sa3d:SA3D",
    "walk": "segany.methods.walk:Walk",
}


def register_method(name: str, where: str) -> None:
    """Plug in a method by "module:Class" (how SAGA, SA3D and SAS arrive without touching the server)."""
    _WHERE[name] = where


def method_names() -> list[str]:
    return sorted(_WHERE)


def get_method(name: str) -> Method:
    if name not in _WHERE:
        raise SegAnyError("not_found", f"unknown method {name!r}; available: {method_names()}")
    module, cls = _WHERE[name].split(":")
    return getattr(importlib.import_module(module), cls)()


__all__ = ["Method", "Selection", "State", "get_method", "method_names", "register_method"]
