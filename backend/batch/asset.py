"""One asset, start to end, as a function of its inputs: load, prepare (or reuse the shared cache), run the task,
write the outputs. The same function runs in a pool worker, a Ray task or the caller's process.

Outputs go to a temp folder beside the asset's final folder; `done.json` is written last and the folder is
then renamed into place, so an asset's folder exists only when it is whole (a kill at any moment leaves a
temp folder the next run removes). The PLY and PNG hold no timestamps, so a rerun writes the same bytes;
timings live in result.json and the summary only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SegAnyError
from ..threads import torch_threads
from .spec import DEFAULT_METHOD, Asset

DONE = "done.json"  # written last: its presence and hashes are what "finished" means
RESULT_FILES = ("result.ply", "preview.png")  # the deterministic outputs the done marker hashes
TEMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class Where:
    """Where a worker writes and caches, and how many threads it may use."""

    out: Path
    cache_dir: Path | None
    device: str = "auto"
    threads: int = 1


def digest(path: Path) -> str:
    """blake2b of a file, read in blocks (assets may be hundreds of MB)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, lambda: hashlib.blake2b(digest_size=16)).hexdigest()


def finished(asset: Asset, out: Path) -> dict[str, Any] | None:
    """The asset's done record when its folder is whole and still matches: the same input bytes, the same spec
    and every output as it was written. None means run it (again)."""
    folder = out / asset.name
    try:
        done = json.loads((folder / DONE).read_text())
        same = done["spec_key"] == asset.spec.key() and done["input_blake2b"] == digest(asset.path)
        return done if same and all(digest(folder / f) == h for f, h in done["outputs"].items()) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


_ENGINES: dict[tuple[str, str], Any] = {}


def _engine(where: Where) -> Any:
    """One engine per worker process and cache: a Ray worker runs many tasks, each reusing it."""
    from ..engine import Engine

    key = (str(where.cache_dir), where.device)
    if key not in _ENGINES:
        _ENGINES[key] = Engine(cache_dir=where.cache_dir, device=where.device)
    return _ENGINES[key]


def run_asset(asset: Asset, where: Where) -> dict[str, Any]:
    """Run one asset; returns its summary record. Errors become a `failed` record with their code, never raise
    (a bug is `internal`, naming where); only KeyboardInterrupt and a killed process end it otherwise."""
    with torch_threads(where.threads):  # given back after: this may be the caller's own process
        return _run_asset(asset, where)


def _run_asset(asset: Asset, where: Where) -> dict[str, Any]:
    started, cpu = time.perf_counter(), time.process_time()
    record: dict[str, Any] = {"path": str(asset.path), "name": asset.name, "status": "failed", "error": None,
                              "pid": os.getpid(), "seconds": {}}  # fmt: skip
    tmp = where.out / f"{TEMP_PREFIX}{asset.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir(parents=True)
        record["input_blake2b"] = digest(asset.path)
        _run(_engine(where), asset, tmp, record)
        _publish(tmp, where.out / asset.name)
        record["status"] = "ok"
    except SegAnyError as exc:
        record["error"] = exc.to_dict()
    except OSError as exc:  # the input vanished or the output disk refused, outside the engine's own checks
        record["error"] = {"code": "io_error", "message": f"{exc.strerror or exc}: {exc.filename or asset.path}"}
    except Exception as exc:
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        at = f"{Path(frame.filename).name}:{frame.lineno}"
        record["error"] = {"code": "internal", "message": f"{type(exc).__name__}: {exc} (at {at})"}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    record["seconds"]["total"] = time.perf_counter() - started
    record["seconds"]["cpu"] = time.process_time() - cpu  # this worker's CPU: what a loaded machine does not inflate
    return record


def _run(engine: Any, asset: Asset, tmp: Path, record: dict[str, Any]) -> None:
    """Load, then answer and write (`_answer`); the scene and its prepared state leave the engine's memory after,
    failed or not: a worker runs thousands of assets."""
    t = time.perf_counter()
    sid = engine.load_scene(asset.path, allow_references=asset.spec.work.allow_references)
    record["seconds"]["load"] = time.perf_counter() - t
    try:
        _answer(engine, sid, asset, tmp, record)
    finally:
        engine.drop_scene(sid)


def _answer(engine: Any, sid: str, asset: Asset, tmp: Path, record: dict[str, Any]) -> None:
    """Prepare (or load from the shared cache), answer the task, write its files into `tmp`, done.json last."""
    from .outputs import answer  # rendering and writers: imported in the worker, not by the driver

    work, seconds, scene = asset.spec.work, record["seconds"], engine.get_scene(sid)
    method = work.method or DEFAULT_METHOD.get(work.task) or _first_method(engine, scene.kind)
    m = engine.method(method)
    if scene.kind not in m.scene_kinds:
        raise SegAnyError("unsupported", f"method {method!r} works on {list(m.scene_kinds)} scenes, not {scene.kind}")
    t = time.perf_counter()
    prepared = "not needed"
    if m.needs_prepare:
        job = engine.prepare(method, sid, work.prior, asset.spec.options, asset.spec.prior_options)
        prepared = job["message"]
    seconds["prepare"] = time.perf_counter() - t
    t = time.perf_counter()
    results = answer(engine, method, sid, scene, work)
    seconds["query"] = time.perf_counter() - t
    t = time.perf_counter()
    results.write(scene, tmp)
    seconds["write"] = time.perf_counter() - t
    outputs = {f: digest(tmp / f) for f in RESULT_FILES}
    record.update(method=method, outputs=outputs)
    info = {"path": str(asset.path), "scene": {"kind": scene.kind, "n_elements": scene.n_elements, "id": sid},
            "method": method, "prior": work.prior, "prepare": prepared, "spec": asset.spec.to_dict(),
            "results": results.summary, "seconds": seconds, "input_blake2b": record["input_blake2b"],
            "per_element": results.per_element()}  # fmt: skip
    (tmp / "result.json").write_text(json.dumps(info, indent=1, default=_plain))
    done = {"spec_key": asset.spec.key(), "input_blake2b": record["input_blake2b"], "outputs": outputs}
    _write_synced(tmp / DONE, json.dumps(done, indent=1).encode())


def _first_method(engine: Any, kind: str) -> str:
    """The registry's first method for this scene kind (what the add-on and `segany segment` pick)."""
    for m in engine.methods():
        if kind in m["scene_kinds"]:
            return m["name"]
    raise SegAnyError("unsupported", f"no method works on {kind} scenes")


def _plain(value: Any) -> Any:
    return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else str(value)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _publish(tmp: Path, final: Path) -> None:
    """Rename the whole folder into place; an older folder (a redo) is moved aside first and then removed, so
    a kill in between leaves no folder, which the next run redoes."""
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        old = final.parent / f"{TEMP_PREFIX}old-{final.name}-{uuid.uuid4().hex[:8]}"
        os.rename(final, old)
        shutil.rmtree(old, ignore_errors=True)
    os.rename(tmp, final)
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
