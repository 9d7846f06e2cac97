"""How a prior is configured, described and rebuilt.

A prior's options are a small frozen dataclass (`Prior.Config`) of `segany.options.option` fields, parsed
by `segany.options.parse_options` like a method's; what differs between machines (device,
where caches and checkpoints live) is a `PriorContext` the engine passes. `Prior.describe()` gives a
`PriorSpec`, the options again (plus the identity of any weights), so a state prepared with a prior records
it and a restarted backend builds the same prior from that record and its own context.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import SegAnyError

CHECKPOINT_ENV = {"sam": "SEGANY_SAM_CHECKPOINT", "clip": "SEGANY_CLIP_CHECKPOINT"}
STATE_KEY = "prior"  # state.meta[STATE_KEY] holds a spec's JSON part; its arrays are tensors "prior.<option>"


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
