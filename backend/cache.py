"""On-disk cache of prepared method state: safetensors + a JSON record per (scene, method, options).

Layout (versioned): ROOT/v1/<scene_id>/<method>/<key>/{state.safetensors, record.json}.
A directory becomes visible only by an atomic rename of a finished, fsynced temp directory, so a reader
never sees a half-written artifact, and two processes writing the same entry both succeed (the first wins).
The record holds the state file's size, checksum and tensor layout: an entry that fails them, or was made
for another scene, is moved aside to ROOT/v1/.quarantine/ (never deleted) and reported, so it is prepared
again instead of blocking its scene.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from segany.addon.backend_process import pid_alive

from . import __version__
from .errors import SegAnyError
from .methods.base import State

LAYOUT = "v1"
STALE_TMP_SECONDS = 3600
STATE_FILE = "state.safetensors"
QUARANTINE = ".quarantine"
WHERE_TO_GO = (
    "free disk space there, or choose another cache directory"
    " ($SEGANY_CACHE, --cache-dir, or the add-on's Cache Directory preference)"
)
_TEMP_NAME = re.compile(r"\.tmp-(?:new|old)-(\d+)-[0-9a-f]{32}-(.+)")
log = logging.getLogger("segany.cache")


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


class DamagedEntry(SegAnyError):
    """An entry that failed its checks; the cache has already logged it and moved it aside."""

    def __init__(self, path: Path, reason: str, moved_to: Path | None, outcome: str) -> None:
        super().__init__("corrupt_file", f"the cache entry {path} was damaged ({reason}) and {outcome}")
        self.path, self.reason, self.moved_to = path, reason, moved_to


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
        """Write an entry once (the first writer wins); `replace` swaps out an existing one (stale or damaged).

        A disk that refuses the write (full, read-only) raises io_error naming the path and the way out.
        """
        final = self._dir(scene_id, method, key)
        if final.exists() and not replace:
            return final
        tmp = final.parent / _temp_name("new")
        try:
            tmp.mkdir(parents=True)
            tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.tensors.items()}
            save_file(tensors, str(tmp / STATE_FILE))
            full = {
                **record,
                "layout": LAYOUT,
                "scene_id": scene_id,
                "method": method,
                "key": key,
                "created": time.time(),
                "versions": {"segany": __version__, "torch": torch.__version__},
                "meta": state.meta,
                "state": {
                    "bytes": (tmp / STATE_FILE).stat().st_size,
                    "blake2b": _digest(tmp / STATE_FILE, sync=True),
                    "tensors": _layout(tensors),
                },
            }
            _write_synced(tmp / "record.json", json.dumps(full, indent=1).encode())
            _fsync_dir(tmp)
            if replace and final.exists():
                old = final.parent / _temp_name("old")  # swept if a crash leaves it
                os.rename(final, old)
                shutil.rmtree(old, ignore_errors=True)
            os.rename(tmp, final)
            _fsync_dir(final.parent)
        except (OSError, SafetensorError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            # safetensors wraps a failed write in its own error; any other of its errors is a bug, not the disk
            if isinstance(exc, SafetensorError) and "I/O error" not in str(exc):
                raise
            if isinstance(exc, OSError) and exc.errno in (errno.EEXIST, errno.ENOTEMPTY) and final.exists():
                return final  # another writer's rename came first
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise SegAnyError(
                "io_error",
                f"could not save the prepared state in the cache at {final.parent} ({reason}); {WHERE_TO_GO}",
            ) from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def load(self, scene_id: str, method: str, key: str) -> State | None:
        """The entry's state, or None when there is none; DamagedEntry (already moved aside) if it fails its checks."""
        return self._read(self._dir(scene_id, method, key))

    def _read(self, path: Path) -> State | None:
        if not path.is_dir():
            return None
        try:
            return _verified_state(path)
        except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
            if isinstance(exc, FileNotFoundError) and not path.exists():
                return None  # another reader moved it aside meanwhile
            raise self._set_aside(path, str(exc)) from exc

    def _set_aside(self, path: Path, reason: str) -> DamagedEntry:
        """Move a damaged entry out of the way (kept for a person to look at) and log it once."""
        scene, method, key = path.parent.parent.name, path.parent.name, path.name
        dest = (
            self.base / QUARANTINE / f"{scene}-{method}-{key}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        )
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.rename(path, dest)
        except OSError as exc:
            if not path.exists():
                return DamagedEntry(path, reason, None, "was moved aside by another reader")
            outcome = f"could not be moved aside ({exc.strerror or exc})"
            log.warning("cache entry %s is damaged (%s) and %s", path, reason, outcome)
            return DamagedEntry(path, reason, None, outcome)
        log.warning("cache entry %s is damaged (%s); moved it aside to %s", path, reason, dest)
        return DamagedEntry(path, reason, dest, f"was moved aside to {dest}")

    def latest(self, scene_id: str, method: str, prior: str | None = None) -> tuple[Entry, State] | None:
        """The newest good entry for this scene and method (and prior, when given); damaged ones are moved aside
        on the way, and the first one's DamagedEntry is raised when no good entry is left."""
        entries = [
            e
            for e in self.entries(scene_id)
            if e.method == method and (prior is None or e.record.get("prior") == prior)
        ]
        damaged: DamagedEntry | None = None
        for entry in sorted(entries, key=lambda e: e.record.get("created", 0), reverse=True):
            try:
                state = self._read(entry.path)
            except DamagedEntry as exc:
                damaged = damaged or exc
                continue
            if state is not None:
                return entry, state
        if damaged is not None:
            raise damaged
        return None

    def entries(self, scene_id: str | None = None) -> list[Entry]:
        out: list[Entry] = []
        scene_dirs = [self.base / scene_id] if scene_id else (sorted(self.base.iterdir()) if self.base.exists() else [])
        for sdir in scene_dirs:
            if not sdir.is_dir() or sdir.name == QUARANTINE:
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
        """Remove finished entries (all, or one scene's), the ones set aside as damaged and stale temp dirs;
        returns the finished entries removed."""
        entries = self.entries(scene_id)
        for e in entries:
            shutil.rmtree(e.path, ignore_errors=True)
        for aside in self.base.glob(f"{QUARANTINE}/{scene_id or ''}*"):
            shutil.rmtree(aside, ignore_errors=True)
        self.sweep_temp()
        return len(entries)

    def sweep_temp(self, max_age: float = STALE_TMP_SECONDS) -> int:
        """Delete temp dirs left by a crashed writer; the engine does it on start.

        A temp dir names its writer's pid and host: on this host it is stale once that process is gone (a write
        of any length is safe while it runs); a dir from another host sharing the cache, or of an unknown name,
        is stale after max_age seconds (this host cannot see that process).
        """
        if not self.base.exists():
            return 0
        removed = 0
        now, host = time.time(), socket.gethostname()
        for tmp in self.base.glob("*/*/.tmp-*"):
            named = _TEMP_NAME.fullmatch(tmp.name)
            try:
                stale = (
                    not pid_alive(int(named[1])) if named and named[2] == host else now - tmp.stat().st_mtime >= max_age
                )
            except FileNotFoundError:
                continue  # its writer renamed or removed it meanwhile
            if stale:
                shutil.rmtree(tmp, ignore_errors=True)
                removed += 1
        return removed

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.base.rglob("*") if p.is_file()) if self.base.exists() else 0


def _temp_name(kind: str) -> str:
    """A temp dir's name: its writer's pid and host say whether a crash left it (see sweep_temp)."""
    return f".tmp-{kind}-{os.getpid()}-{uuid.uuid4().hex}-{socket.gethostname()}"


def _layout(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, Any]]:
    return {
        k: {"dtype": str(v.dtype).removeprefix("torch."), "shape": list(v.shape)} for k, v in sorted(tensors.items())
    }


def _digest(path: Path, sync: bool = False) -> str:
    """blake2b of a file, read in blocks (a state may be hundreds of MB); `sync` also fsyncs it."""
    with open(path, "r+b" if sync else "rb") as fh:
        digest = hashlib.file_digest(fh, lambda: hashlib.blake2b(digest_size=16)).hexdigest()
        if sync:
            os.fsync(fh.fileno())
    return digest


def _verified_state(path: Path) -> State:
    """The entry's state once it matches its record; ValueError saying what differs otherwise."""
    record = json.loads((path / "record.json").read_text())
    if not isinstance(record, dict):
        raise ValueError("its record is not a JSON object")
    made_for = [record.get("scene_id"), record.get("method"), record.get("key")]
    if made_for != [path.parent.parent.name, path.parent.name, path.name]:
        raise ValueError(f"its record was made for scene {made_for[0]}, method {made_for[1]}, key {made_for[2]}")
    sums = record.get("state")  # absent in entries written before records carried checksums
    file = path / STATE_FILE
    if sums is not None:
        size = file.stat().st_size
        if size != sums["bytes"]:
            raise ValueError(f"its state file has {size} bytes, its record says {sums['bytes']}")
        if _digest(file) != sums["blake2b"]:
            raise ValueError("its state file's checksum differs from its record's")
    tensors = load_file(str(file))
    if sums is not None and _layout(tensors) != sums["tensors"]:
        raise ValueError("its tensors' names, dtypes or shapes differ from its record's")
    return State(tensors=tensors, meta=record.get("meta", {}))


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
