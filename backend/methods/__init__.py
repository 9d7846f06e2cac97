"""Methods by name, imported lazily."""

from __future__ import annotations

import importlib

from ..errors import SegAnyError
from .base import Method, Parts, Selection, State

# In order of preference: the first that fits a scene kind is what the add-on and `segany segment` use on it
# unless told otherwise, so a method still being finished (saga) goes after the ones it does not yet beat.
_WHERE = {
    "iseg": "segany.methods.iseg:ISeg",
    "sa3d": "segany.methods.sa3d:SA3D",
    "walk": "segany.methods.walk:Walk",
    "saga": "segany.methods.saga:SAGA",
    "sas": "segany.methods.sas:SAS",
}


def register_method(name: str, where: str) -> None:
    """Plug in a method by "module:Class" (how SAGA, SA3D and SAS arrive without touching the server)."""
    _WHERE[name] = where


def method_names() -> list[str]:
    """Registered methods in order of preference (the registry's order, not the alphabet's)."""
    return list(_WHERE)


def get_method(name: str) -> Method:
    if name not in _WHERE:
        raise SegAnyError("not_found", f"unknown method {name!r}; available: {method_names()}")
    module, cls = _WHERE[name].split(":")
    return getattr(importlib.import_module(module), cls)()


__all__ = ["Method", "Parts", "Selection", "State", "get_method", "method_names", "register_method"]
