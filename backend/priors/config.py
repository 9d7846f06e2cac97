"""How a prior is configured, described and rebuilt.

A prior's options are a small typed dataclass (`Prior.Config`); what differs between machines (device,
where caches and checkpoints live) is a `PriorContext` the engine passes. `Prior.describe()` gives a
`PriorSpec`, the options again (plus the identity of any weights), so a state prepared with a prior records
it and a restarted backend builds the same prior from that record and its own context.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from ..errors import SegAnyError

CHECKPOINT_ENV = {"sam": "SEGANY_SAM_CHECKPOINT", "clip": "SEGANY_CLIP_CHECKPOINT"}
STATE_KEY = "prior"  # state.meta[STATE_KEY] holds a spec's JSON part; its arrays are tensors "prior.<option>"

C = TypeVar("C")


def checkpoints_from_env() -> dict[str, str]:
    """Checkpoint files the user pointed at with SEGANY_SAM_CHECKPOINT / SEGANY_CLIP_CHECKPOINT."""
    return {name: os.environ[var] for name, var in CHECKPOINT_ENV.items() if os.environ.get(var)}


@dataclass(frozen=True)
class PriorContext:
    """What the machine decides and no option should: the device, the cache root, the checkpoint files."""

    device: str = "cpu"
    cache_dir: Path | None = None  # None: $SEGANY_CACHE or ~/.cache/segany
    checkpoints: Mapping[str, str] = field(default_factory=dict)

    def checkpoint(self, prior: str, given: str | None) -> Path:
        """The checkpoint option if one was given, else the configured one; bad_request saying where to set it."""
        path = given or self.checkpoints.get(prior)
        if not path:
            env = CHECKPOINT_ENV.get(prior)
            where = f"the add-on preferences or {env}" if env else "the add-on preferences"
            raise SegAnyError(
                "bad_request", f"prior {prior!r} needs a checkpoint: set it in {where}, or pass the option 'checkpoint'"
            )
        return Path(path).expanduser()


def file_key(path: Path) -> str:
    """Identifies a weights file cheaply: its size and its first and last 4 MiB (hashing GBs takes seconds)."""
    h = hashlib.blake2b(digest_size=10)
    size = path.stat().st_size
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(4 << 20))
        f.seek(max(size - (4 << 20), 0))
        h.update(f.read())
    return h.hexdigest()


def same_model(prior: str, expected: str | None, found: str, path: Path) -> str:
    """`found`, the key of the weights at `path`; not_prepared when a state asked for other weights."""
    if expected is not None and expected != found:
        raise SegAnyError(
            "not_prepared",
            f"this state was prepared with {prior.upper()} model {expected!r}, but the checkpoint {path} holds"
            f" {found!r}; prepare again",
        )
    return found


@dataclass(frozen=True)
class PriorSpec:
    """A prior's name and options: JSON values plus numpy arrays for data such as oracle labels."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """The JSON part for state.meta[STATE_KEY] and the arrays as state tensors."""
        arrays = {k: v for k, v in self.options.items() if isinstance(v, np.ndarray)}
        rest = {k: v for k, v in self.options.items() if k not in arrays}
        tensors = {
            f"{STATE_KEY}.{k}": torch.as_tensor(np.ascontiguousarray(v.astype(np.int64) if v.dtype.kind == "u" else v))
            for k, v in arrays.items()
        }
        return {"name": self.name, "options": rest}, tensors

    @classmethod
    def from_state(cls, meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> PriorSpec:
        """The spec `to_state` wrote; not_prepared when the state holds none (made by another SegAny)."""
        record = meta.get(STATE_KEY)
        if not isinstance(record, dict) or not isinstance(record.get("name"), str):
            raise SegAnyError(
                "not_prepared", "this state does not record the prior it was prepared with; prepare again"
            )
        prefix = f"{STATE_KEY}."
        arrays = {k[len(prefix) :]: v.numpy() for k, v in tensors.items() if k.startswith(prefix)}
        return cls(record["name"], {**record.get("options", {}), **arrays})


def parse_config(config: type[C], options: Mapping[str, Any], prior: str, where: str = "") -> C:
    """A prior's options as its typed Config: unknown, missing or mistyped fields are bad_request naming the field."""
    fields = {f.name: f for f in dataclasses.fields(config)}  # type: ignore[arg-type]
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise SegAnyError(
            "bad_request", f"prior {prior!r} has no option {where + unknown[0]!r}; its options: {sorted(fields)}"
        )
    hints = typing.get_type_hints(config)
    values = {}
    for name, f in fields.items():
        if name in options:
            values[name] = _coerce(options[name], hints[name], prior, f"{where}{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise SegAnyError("bad_request", f"prior {prior!r} needs the option {where + name!r}")
    return config(**values)


def _coerce(value: Any, hint: Any, prior: str, name: str) -> Any:
    """`value` as type `hint` (the few kinds prior options use), or bad_request naming the field."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            if dataclasses.is_dataclass(arg) and isinstance(value, Mapping):
                return _coerce(value, arg, prior, name)  # settings given: their own errors are the useful ones
            try:
                return _coerce(value, arg, prior, name)
            except SegAnyError:
                continue
        return _refuse(value, " or ".join(_describe(a) for a in args), prior, name)
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if isinstance(value, Mapping):
            return parse_config(hint, value, prior, f"{name}.")
    elif origin is tuple and isinstance(value, (list, tuple)):
        return tuple(_coerce(v, args[0], prior, f"{name}[{i}]") for i, v in enumerate(value))
    elif (origin or hint) is dict and isinstance(value, Mapping):
        return dict(value)
    elif hint is np.ndarray and isinstance(value, (np.ndarray, list, tuple, torch.Tensor)):
        return np.asarray(value)
    elif hint is bool and isinstance(value, (bool, np.bool_)):
        return bool(value)
    elif hint is int and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    elif hint is float and isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        if np.isfinite(value):
            return float(value)
    elif hint is str and isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    return _refuse(value, _describe(hint), prior, name)


def _describe(hint: Any) -> str:
    if hint is type(None):
        return "null"
    if dataclasses.is_dataclass(hint):
        return "a mapping of settings"
    origin = typing.get_origin(hint)
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(hint)[0])}"
    return {int: "an integer", float: "a finite number", str: "a string", bool: "true or false", dict: "a mapping"}.get(
        origin or hint, "an array" if hint is np.ndarray else str(hint)
    )


def _refuse(value: Any, wanted: str, prior: str, name: str) -> typing.NoReturn:
    shown = repr(value) if not isinstance(value, (np.ndarray, list, tuple)) else f"a {type(value).__name__}"
    raise SegAnyError("bad_request", f"prior {prior!r}: option {name!r} must be {wanted}, got {shown[:60]}")


def config_options(config: Any) -> dict[str, Any]:
    """A Config as plain options (nested settings as mappings, tuples as lists, arrays kept): what describe() gives."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            value = config_options(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out
