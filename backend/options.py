"""Typed, bounded inputs: a method's options, a query's extras and a prior's Config are frozen dataclasses
checked by one parser.

Options arrive as JSON from the wire, the CLI and the add-on (a prior's may also carry arrays, such as the
oracle's labels). Each field declares its default, its range or choices and what it is for, so every
method and prior refuses the same mistakes (unknown keys, wrong types, booleans passed as numbers, NaN,
out-of-range sizes, overlong lists, arrays of the wrong kind) with a message naming the field's full path
(`weights.colour`, `levels[1]`) and what it takes. Defaults are the CPU sizes; a method's presets
("cuda", "tiny") override some of them and may depend on the scene.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
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
_NUMBER = (int, float, np.integer, np.floating)
_BOOL = (bool, np.bool_)


def option(
    default: Any = dataclasses.MISSING,
    lo: float | None = None,
    hi: float | None = None,
    *,
    choices: tuple = (),
    most: int | None = None,
    kinds: str = "",
    ndim: int | None = None,
    doc: str,
) -> Any:
    """A field of an options, query or prior Config dataclass: its default (none: the caller must give it),
    inclusive range (`hi` None: no upper bound) or choices (of each item, for a list), what it does, for a
    list its `most` items, for an array its numpy dtype `kinds` (e.g. "iu") and `ndim`.

    It returns a dataclasses.Field, so a field whose type ruff cannot tell is immutable takes `# noqa: RUF009`.
    """
    meta = {"range": (lo, hi), "choices": choices, "most": most, "kinds": kinds, "ndim": ndim, "doc": doc}
    return dataclasses.field(default=default, metadata=meta)


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
        return plain(self)


O = TypeVar("O")


def plain(config: Any) -> dict[str, Any]:
    """A parsed dataclass as the options that parse back to it: nested settings as mappings, tuples as
    lists, arrays kept (a prior's spec stores them apart)."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            value = plain(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def preset_for(device: str) -> str:
    """The preset a device starts from when the caller names none."""
    return "cuda" if str(device).startswith("cuda") else "cpu"


def shown(value: Any) -> str:
    """A refused value as a message quotes it: its repr, cut short."""
    if isinstance(value, np.ndarray):
        return f"an array of {value.dtype} with shape {value.shape}"
    text = repr(value)
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}… ({len(text)} characters)"


def listed(names: list[str], most: int = 8) -> str:
    """Names as a message lists them, at most `most` of them and how many more."""
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return f"{[shown(n) for n in names[:most]]}{more}"


def typed_fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """The dataclass's fields with their resolved types (annotations are strings under __future__)."""
    hints = get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def parse_options(
    cls: type[O],
    given: Mapping[str, Any] | None = None,
    *,
    preset: str = "cpu",
    scene: Scene | None = None,
    owner: str | None = None,
) -> O:
    """`given` (the caller's JSON object) over the preset over the defaults, every field checked.

    For a method's `Options`, `given` may name a preset with the key "preset"; it wins over the `preset`
    argument (the device's). Any other frozen dataclass of `option` fields (a prior's Config) has no
    presets. `owner` is how messages name the whole (default: the method's name).
    """
    owner = owner or cls.method  # type: ignore[attr-defined]
    if given is not None and not isinstance(given, Mapping):
        raise SegAnyError("bad_request", f"{owner} options must be a JSON object, got {type(given).__name__}")
    values = dict(given or {})
    if isinstance(cls, type) and issubclass(cls, Options):
        name = values.pop(PRESET_KEY, preset)
        if not isinstance(name, str) or name not in PRESETS:
            raise SegAnyError(
                "bad_request", f"{owner} option 'preset' must be one of {list(PRESETS)}, got {shown(name)}"
            )
        values = {**cls.presets(scene).get(name, {}), **values}
    return _parsed(cls, values, f"{owner} option", "")


def checked(owner: str, path: str, field: dataclasses.Field, kind: Any, value: Any) -> Any:
    """`value` as the field's type `kind`, or a bad_request saying "{owner} '{path}' must be …".

    `value` is dataclasses.MISSING when the caller left out a field that has no default.
    """
    if "doc" not in field.metadata:
        raise TypeError(f"{owner} {path!r}: declare the field with segany.options.option")
    if value is dataclasses.MISSING:
        raise SegAnyError("bad_request", f"{owner} {path!r} must be given: {field.metadata['doc']}")
    return _value(owner, path, field.metadata, kind, value)


def _parsed(cls: type[O], values: Mapping[Any, Any], owner: str, prefix: str) -> O:
    """`values` over the defaults of dataclass `cls`; messages name a field "{owner} '{prefix}{name}'"."""
    fields = typed_fields(cls)
    known = [f.name for f, _ in fields]
    unknown = sorted(str(k) for k in set(values) - set(known))
    if unknown:
        extra = [PRESET_KEY] if not prefix and issubclass(cls, Options) else []
        raise SegAnyError(
            "bad_request",
            f"unknown {owner}s {listed([prefix + k for k in unknown])}; known: {[*known, *extra]}",
        )
    return cls(
        **{f.name: checked(owner, prefix + f.name, f, kind, values.get(f.name, f.default)) for f, kind in fields}
    )


def _value(owner: str, path: str, meta: Mapping[str, Any], kind: Any, value: Any) -> Any:
    """One value (or, recursively, its items and settings) as type `kind` under the field's rules."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return _union(owner, path, meta, args, value)
    if dataclasses.is_dataclass(kind):
        if isinstance(value, kind):
            value = {f.name: getattr(value, f.name) for f in dataclasses.fields(kind)}
        if isinstance(value, Mapping):
            return _parsed(kind, value, owner, f"{path}.")
    elif origin is tuple:
        if isinstance(value, (list, tuple)) and len(value) <= _most(path, meta):
            return tuple(_value(owner, f"{path}[{i}]", meta, args[0], v) for i, v in enumerate(value))
    elif kind is np.ndarray:
        out = _array(value, meta)
        if out is not None:
            return out
    else:
        out = _scalar(meta, kind, value)
        if out is not None:
            return out
    raise SegAnyError("bad_request", f"{owner} {path!r} must be {_wanted(path, meta, kind)}, got {shown(value)}")


def _union(owner: str, path: str, meta: Mapping[str, Any], arms: tuple, value: Any) -> Any:
    """The first arm `value` fits; settings given for a dataclass arm report their own mistakes."""
    if value is None and type(None) in arms:
        return None
    for arm in arms:
        if dataclasses.is_dataclass(arm) and isinstance(value, (Mapping, arm)):
            return _value(owner, path, meta, arm, value)
    for arm in arms:
        if arm is not type(None):
            try:
                return _value(owner, path, meta, arm, value)
            except SegAnyError:
                continue
    wanted = " or ".join(_wanted(path, meta, a) for a in arms)
    raise SegAnyError("bad_request", f"{owner} {path!r} must be {wanted}, got {shown(value)}")


def _scalar(meta: Mapping[str, Any], kind: Any, value: Any) -> Any:
    """`value` as bool, int, float or text within the field's range or choices; None when it is not."""
    if meta["choices"]:
        scalar = isinstance(value, (str, *_NUMBER, np.bool_))  # an array (a query may carry one) is no choice
        for c in meta["choices"]:  # by type too: 1 is not True, 0 is not False
            if scalar and value == c and isinstance(value, _BOOL) == isinstance(c, bool):
                return c
        return None
    if kind is bool:
        return bool(value) if isinstance(value, _BOOL) else None
    if kind is str:
        text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None  # a Path from a Python caller
        return text if isinstance(text, str) and len(text) <= MAX_TEXT else None
    if kind is int:
        out = int(value) if isinstance(value, (int, np.integer)) and not isinstance(value, _BOOL) else None
    elif kind is float:
        out = float(value) if isinstance(value, _NUMBER) and not isinstance(value, _BOOL) else None
        out = out if out is not None and math.isfinite(out) else None
    else:
        raise TypeError(f"options hold bool, int, float, str, tuples, arrays and dataclasses, not {kind!r}")
    lo, hi = meta["range"]
    return out if out is None or ((lo is None or lo <= out) and (hi is None or out <= hi)) else None


def _array(value: Any, meta: Mapping[str, Any]) -> np.ndarray | None:
    """`value` (an array, a tensor or nested lists) as a numpy array of the field's dtype kinds and rank."""
    if not isinstance(value, (np.ndarray, list, tuple)) and not hasattr(value, "__array__"):
        return None
    try:
        out = np.asarray(value)
    except (ValueError, TypeError):  # ragged lists
        return None
    if meta["kinds"] and out.dtype.kind not in meta["kinds"]:
        return None
    return out if meta["ndim"] is None or out.ndim == meta["ndim"] else None


def _most(path: str, meta: Mapping[str, Any]) -> int:
    if meta["most"] is None:
        raise TypeError(f"option {path!r}: a list field declares its `most` items")
    return meta["most"]


_KINDS = {"b": "booleans", "i": "integers", "u": "unsigned integers", "f": "numbers"}


def _wanted(path: str, meta: Mapping[str, Any], kind: Any) -> str:
    """What a field of type `kind` takes, as a message says it."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    lo, hi = meta["range"]
    span = f" in [{lo}, {hi}]" if None not in (lo, hi) else f" of at least {lo}" if lo is not None else ""
    if kind is type(None):
        return "null"
    if dataclasses.is_dataclass(kind):
        return f"settings {[f.name for f in dataclasses.fields(kind)]}"
    if origin is tuple:
        return f"a list of at most {_most(path, meta)} items, each {_wanted(path, meta, args[0])}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_wanted(path, meta, a) for a in args)
    if kind is np.ndarray:
        rank = f"{meta['ndim']}-d " if meta["ndim"] is not None else ""
        of = " or ".join(_KINDS.get(k, k) for k in meta["kinds"]) or "numbers"
        return f"a {rank}array of {of}"
    if meta["choices"]:
        return f"one of {list(meta['choices'])}"
    return {
        bool: "true or false",
        int: f"an integer{span}",
        float: f"a number{span}",
        str: f"a text of at most {MAX_TEXT} characters",
    }.get(kind, repr(kind))
