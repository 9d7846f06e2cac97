"""Typed, bounded inputs: a method's options are one frozen dataclass, checked by one parser.

Options arrive as JSON from the wire, the CLI and the add-on. Each field declares its default, its range
or choices and what it is for, so every method refuses the same mistakes (unknown keys, wrong types,
booleans passed as numbers, NaN, out-of-range sizes) with a message naming the field and what it takes.
Defaults are the CPU sizes; presets ("cuda", "tiny") override some of them and may depend on the scene.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, get_type_hints

import numpy as np

from .errors import SegAnyError
from .scene import Scene

PRESETS = ("cpu", "cuda", "tiny")
PRESET_KEY = "preset"  # {"preset": "tiny", ...}: start from that preset instead of the device's
MAX_TEXT = 4096  # longest text option (a path); longer is a mistake, not a name
_SHOWN = 60  # characters of a refused value quoted back: a bulk input is never echoed whole


def option(default: Any, lo: float | None = None, hi: float | None = None, *, choices: tuple = (), doc: str) -> Any:
    """A field of an options (or query) dataclass: its default, inclusive range or choices, and what it does."""
    return dataclasses.field(default=default, metadata={"range": (lo, hi), "choices": choices, "doc": doc})


@dataclass(frozen=True)
class Options:
    """The options of a method with none; a method's own subclass adds fields made with `option`."""

    method: ClassVar[str] = "method"

    @classmethod
    def presets(cls, scene: Scene | None) -> dict[str, dict[str, Any]]:
        """Per preset, the fields it changes from the defaults (the CPU sizes); `scene` may size them."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        """The JSON form the cache key, the cache record and a state's meta keep."""
        return dataclasses.asdict(self)


O = TypeVar("O", bound=Options)


def preset_for(device: str) -> str:
    """The preset a device starts from when the caller names none."""
    return "cuda" if str(device).startswith("cuda") else "cpu"


def shown(value: Any) -> str:
    """A refused value as a message quotes it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}… ({len(text)} characters)"


def listed(names: list[str], most: int = 8) -> str:
    """Names as a message lists them, at most `most` of them and how many more."""
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return f"{[shown(n) for n in names[:most]]}{more}"


def checked(what: str, field: dataclasses.Field, kind: Any, value: Any) -> Any:
    """`value` as the field's type, or a bad_request naming `what` and what the field takes."""
    lo, hi = field.metadata["range"]
    choices = field.metadata["choices"]
    if choices:
        scalar = isinstance(value, (str, int, float, np.generic))  # an array (a query may carry one) is no choice
        for c in choices:  # by type too: 1 is not True, 0 is not False
            if scalar and value == c and isinstance(value, (bool, np.bool_)) == isinstance(c, bool):
                return c
        raise SegAnyError("bad_request", f"{what} must be one of {list(choices)}, got {shown(value)}")
    if kind is bool:
        if not isinstance(value, (bool, np.bool_)):
            raise SegAnyError("bad_request", f"{what} must be true or false, got {shown(value)}")
        return bool(value)
    if kind is str:
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            raise SegAnyError("bad_request", f"{what} must be a text of at most {MAX_TEXT} characters")
        return value
    if kind is int:
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
        out, noun = (int(value) if ok else None), "an integer"
    elif kind is float:
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
        out, noun = (float(value) if ok else None), "a number"
        ok = ok and math.isfinite(out)
    else:
        raise TypeError(f"{what}: options hold bool, int, float or str, not {kind!r}")
    span = f" in [{lo}, {hi}]" if lo is not None else ""
    if not ok or (lo is not None and not lo <= out <= hi):
        raise SegAnyError("bad_request", f"{what} must be {noun}{span}, got {shown(value)}")
    return out


def typed_fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """The dataclass's fields with their resolved types (annotations are strings under __future__)."""
    hints = get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def parse_options(
    cls: type[O], given: Mapping[str, Any] | None = None, *, preset: str = "cpu", scene: Scene | None = None
) -> O:
    """`given` (the caller's JSON object) over the preset over the defaults, every field checked.

    `given` may name a preset with the key "preset"; it wins over the `preset` argument (the device's).
    """
    if given is not None and not isinstance(given, Mapping):
        raise SegAnyError("bad_request", f"{cls.method} options must be a JSON object, got {type(given).__name__}")
    values = dict(given or {})
    name = values.pop(PRESET_KEY, preset)
    if not isinstance(name, str) or name not in PRESETS:
        raise SegAnyError(
            "bad_request", f"{cls.method} option 'preset' must be one of {list(PRESETS)}, got {shown(name)}"
        )
    fields = typed_fields(cls)
    known = [f.name for f, _ in fields]
    unknown = sorted(str(k) for k in set(values) - set(known))
    if unknown:
        raise SegAnyError(
            "bad_request", f"unknown {cls.method} options {listed(unknown)}; known: {[*known, PRESET_KEY]}"
        )
    values = {**{f.name: f.default for f, _ in fields}, **cls.presets(scene).get(name, {}), **values}
    return cls(**{f.name: checked(f"{cls.method} option {f.name!r}", f, kind, values[f.name]) for f, kind in fields})
