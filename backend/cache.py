"""On-disk cache of prepared method state: safetensors + a JSON record per (scene, method, options).

Layout (versioned): ROOT/v1/<scene_id>/<method>/<key>/{state.safetensors, record.json}.
A directory becomes visible only by an atomic rename of a finished temp directory, so a reader never
sees a half-written artifact, and two processes writing the same entry both succeed (the first wins).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from . import __version__
from .errors import SegAnyError
from .methods.base import State

LAYOUT = "v1"
STALE_TMP_SECONDS = 3600


def default_cache_dir() -> Path:
    env = os.environ.get("SEGANY_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "segany"


def options_key(method: str, prior: str, options: dict[str, Any], prior_options: dict[str, Any]) -> str:
    """A stable hash of everything that changes a prepare's result (arrays hashed by content)."""
    h = hashlib.blake2b(digest_size=12)

    def feed(obj: Any) -> None:
        if isinstance(obj, dict):
            for k in sorted(obj):
                h.update(f"<{k}>".encode())
                feed(obj[k])
        elif isinstance(obj, (list, tuple)):
            h.update(b"[")
            for v in obj:
                feed(v)
            h.update(b"]")
        elif isinstance(obj, np.ndarray):
            h.update(f"nd{obj.dtype}{obj.shape}".encode())
            h.update(memoryview(np.ascontiguousarray(obj)).cast("B"))
        else:
            h.update(json.dumps(obj, sort_keys=True, default=str).encode())

    feed({"method": method, "prior": prior, "options": options, "prior_options": prior_options})
    return h.hexdigest()


@dataclass
class Entry:
    scene_id: str
    method: str
    key: str
    path: Path
    record: dict[str, Any]


class Cache:
    """Process-safe cache; every write goes through a temp dir + rename."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.base = self.root / LAYOUT

    def _dir(self, scene_id: str, method: str, key: str) -> Path:
        return self.base / scene_id / method / key

    def save(
        self, scene_id: str, method: str, key: str, state: State, record: dict[str, Any], replace: bool = False
    ) -> Path:
        """Write an entry once (the first writer wins); `replace` swaps out an existing one (a stale state)."""
        final = self._dir(scene_id, method, key)
        if final.exists() and not replace:
            return final
        tmp = final.parent / f".tmp-{os.getpid()}-{uuid.uuid4().hex}"
        try:
            tmp.mkdir(parents=True)
            tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.tensors.items()}
            save_file(tensors, str(tmp / "state.safetensors"))
            full = {
                **record,
                "layout": LAYOUT,
                "scene_id": scene_id,
                "method": method,
                "key": key,
                "created": time.time(),
                "versions": {"segany": __version__, "torch": torch.__version__},
                "meta": state.meta,
            }
            _write_synced(tmp / "record.json", json.dumps(full, indent=1).encode())
            _fsync_dir(tmp)
            if replace and final.exists():
                old = final.parent / f".tmp-old-{os.getpid()}-{uuid.uuid4().hex}"  # swept if a crash leaves it
                os.rename(final, old)
                shutil.rmtree(old, ignore_errors=True)
            os.rename(tmp, final)
        except FileExistsError:
            shutil.rmtree(tmp, ignore_errors=True)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if final.exists():
                return final
            raise SegAnyError("io_error", f"could not write the cache entry under {final.parent}: {exc}") from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def load(self, scene_id: str, method: str, key: str) -> State | None:
        path = self._dir(scene_id, method, key)
        return self._read(path)

    def _read(self, path: Path) -> State | None:
        try:
            record = json.loads((path / "record.json").read_text())
            tensors = load_file(str(path / "state.safetensors"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise SegAnyError(
                "corrupt_file", f"cache entry {path} is unreadable ({exc}); run `segany cache clear`"
            ) from exc
        return State(tensors=tensors, meta=record.get("meta", {}))

    def latest(self, scene_id: str, method: str, prior: str | None = None) -> tuple[Entry, State] | None:
        """The newest finished entry for this scene and method (and prior, when given)."""
        entries = [
            e
            for e in self.entries(scene_id)
            if e.method == method and (prior is None or e.record.get("prior") == prior)
        ]
        for entry in sorted(entries, key=lambda e: e.record.get("created", 0), reverse=True):
            state = self._read(entry.path)
            if state is not None:
                return entry, state
        return None

    def entries(self, scene_id: str | None = None) -> list[Entry]:
        out: list[Entry] = []
        scene_dirs = [self.base / scene_id] if scene_id else (sorted(self.base.iterdir()) if self.base.exists() else [])
        for sdir in scene_dirs:
            if not sdir.is_dir():
                continue
            for mdir in sorted(sdir.iterdir()):
                for kdir in sorted(mdir.iterdir()) if mdir.is_dir() else []:
                    if kdir.name.startswith(".tmp-"):
                        continue
                    try:
                        record = json.loads((kdir / "record.json").read_text())
                    except (OSError, ValueError):
                        continue
                    out.append(Entry(sdir.name, mdir.name, kdir.name, kdir, record))
        return out

    def clear(self, scene_id: str | None = None) -> int:
        """Remove finished entries (all, or one scene's) and stale temp dirs; returns entries removed."""
        entries = self.entries(scene_id)
        for e in entries:
            shutil.rmtree(e.path, ignore_errors=True)
        self.sweep_temp()
        return len(entries)

    def sweep_temp(self, max_age: float = STALE_TMP_SECONDS) -> int:
        """Delete temp dirs left by a crashed writer (older than max_age seconds)."""
        if not self.base.exists():
            return 0
        removed = 0
        now = time.time()
        for tmp in self.base.glob("*/*/.tmp-*"):
            if now - tmp.stat().st_mtime >= max_age:
                shutil.rmtree(tmp, ignore_errors=True)
                removed += 1
        return removed

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.base.rglob("*") if p.is_file()) if self.base.exists() else 0


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
