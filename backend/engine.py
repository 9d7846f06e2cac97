"""The one object the CLI, the server and the tests drive: scenes, jobs, queries, cache.

Prepare jobs run on one worker thread (compute-bound; more would only fight over the cores);
queries run on the caller's thread, so a long job never blocks a short query.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .cache import Cache, DamagedEntry, options_key
from .errors import SegAnyError
from .jobs import JobContext
from .methods import Method, Parts, Selection, State, get_method, method_names
from .methods.base import check_everything
from .methods.queries import MAX_CLICKS, ClickQuery, query_keys
from .options import Options, parse_options, preset_for
from .priors import Prior, PriorContext, PriorSpec, get_prior, prior_class, prior_config, prior_names
from .priors.config import STATE_KEY
from .scene import Scene, scene_from_arrays, scene_id

JobCallback = Callable[["Job"], None]
log = logging.getLogger("segany.engine")
KEPT_JOBS = 256  # finished jobs `jobs()` still lists: far more than a panel or a batch looks back on


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if re.fullmatch(r"cpu|cuda(:\d{1,3})?", device) is None:
        raise SegAnyError("bad_request", f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SegAnyError(
            "unsupported", f"device {device!r} was asked for but torch sees no CUDA GPU; use 'cpu' or 'auto'"
        )
    if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        raise SegAnyError("unsupported", f"device {device!r}: torch sees {torch.cuda.device_count()} CUDA GPU(s)")
    return device


@dataclass
class Job:
    """A prepare run: watch `status`/`fraction`, call `cancel()`, `wait()` or `result()`."""

    id: str
    method: str
    scene_id: str
    prior: str
    status: str = "queued"  # queued | running | done | failed | cancelled
    fraction: float = 0.0
    message: str = ""
    error: SegAnyError | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    ctx: JobContext = field(default_factory=JobContext)
    _done: threading.Event = field(default_factory=threading.Event)
    _listeners: list[JobCallback] = field(default_factory=list)

    def cancel(self) -> None:
        self.ctx.cancel_event.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        if not self._done.wait(timeout):
            raise SegAnyError("busy", f"job {self.id} is still {self.status} ({self.fraction:.0%})")
        if self.error is not None:
            raise self.error
        return self.to_dict()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.id,
            "method": self.method,
            "scene_id": self.scene_id,
            "prior": self.prior,
            "status": self.status,
            "fraction": self.fraction,
            "message": self.message,
            "error": self.error.to_dict() if self.error else None,
            "seconds": (self.finished or time.time()) - self.started,
        }

    def _notify(self) -> None:
        for fn in list(self._listeners):
            fn(self)


class Engine:
    """Scenes in memory, prepared state in memory and on disk, one compute worker."""

    def __init__(
        self,
        cache_dir: Path | None = None,
        device: str = "auto",
        limits: dict[str, int] | None = None,
        checkpoints: dict[str, str] | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.cache = Cache(cache_dir)
        try:
            self.cache.sweep_temp()  # what a crashed writer left behind
        except OSError as exc:  # an unreadable cache must not stop the backend: a save will say what is wrong
            log.warning("could not sweep the cache's temp dirs under %s: %s", self.cache.base, exc)
        self.limits = limits or {}
        # what every prior is built with: this machine's device, cache root and checkpoint files
        self.prior_context = PriorContext(self.device, self.cache.root, dict(checkpoints or {}))
        self._scenes: dict[str, Scene] = {}
        self._states: dict[tuple[str, str, str], State] = {}
        self._jobs: dict[str, Job] = {}
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segany-job")
        self._methods: dict[str, Method] = {}

    # scenes -----------------------------------------------------------------------------------
    def add_scene(self, scene: Scene) -> str:
        sid = scene_id(scene)
        with self._lock:
            self._scenes.setdefault(sid, scene)
        return sid

    def add_arrays(self, kind: str, arrays: dict[str, np.ndarray]) -> str:
        return self.add_scene(scene_from_arrays(kind, arrays, self.limits))

    def load_scene(self, path: str | Path, allow_references: bool = False) -> str:
        from .formats import load_scene

        return self.add_scene(load_scene(Path(path), limits=self.limits, allow_references=allow_references))

    def get_scene(self, sid: str) -> Scene:
        with self._lock:
            if sid not in self._scenes:
                raise SegAnyError("not_found", f"no scene {sid!r} in this backend; send or load it first")
            return self._scenes[sid]

    def drop_scene(self, sid: str) -> None:
        with self._lock:
            self.get_scene(sid)
            del self._scenes[sid]
            for key in [k for k in self._states if k[1] == sid]:
                del self._states[key]

    def scenes(self) -> list[dict[str, Any]]:
        with self._lock:
            items = list(self._scenes.items())
        return [
            {
                "scene_id": sid,
                "kind": s.kind,
                "n_elements": s.n_elements,
                "warnings": list(s.warnings),
                "prepared": sorted({f"{m}:{p}" for (m, i, p) in self._states if i == sid}),
            }
            for sid, s in items
        ]

    # catalogue --------------------------------------------------------------------------------
    def method(self, name: str) -> Method:
        with self._lock:
            if name not in self._methods:
                self._methods[name] = get_method(name)
            return self._methods[name]

    def methods(self) -> list[dict[str, Any]]:
        out = []
        for name in method_names():
            m = self.method(name)
            out.append(
                {
                    "name": name,
                    "scene_kinds": list(m.scene_kinds),
                    "default_prior": m.default_prior,
                    "needs_prepare": m.needs_prepare,  # the add-on lets a click start without Prepare when False
                    "query_keys": query_keys(m.Query),  # the add-on shows the scale slider for a `scale`
                    "takes_clicks": issubclass(m.Query, ClickQuery),  # sas answers words: not in the click list
                    "segments_everything": m.segments_everything,  # the add-on offers "Segment everything"
                }
            )
        return out

    def priors(self) -> list[dict[str, Any]]:
        return [{"name": n, "capabilities": sorted(prior_class(n).capabilities)} for n in prior_names()]

    def info(self) -> dict[str, Any]:
        return {
            "segany": __version__,
            "torch": torch.__version__,
            "device": self.device,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "cache_dir": str(self.cache.root),
            "checkpoints": {
                k: {"path": v, "exists": Path(v).is_file()} for k, v in self.prior_context.checkpoints.items()
            },
            "methods": method_names(),
            "priors": prior_names(),
            "max_clicks": MAX_CLICKS,  # a click tool stops at it instead of sending a query that is refused
        }

    # jobs -------------------------------------------------------------------------------------
    def _build_prior(self, spec: PriorSpec) -> Prior:
        return get_prior(spec.name, self.prior_context, **spec.options)

    def _restore(self, m: Method, state: State) -> None:
        """The one way a state from the cache becomes usable: a method that prompts its prior at query time
        gets the prior the state records, built with this engine's context (not_prepared if it cannot be)."""
        if m.queries_prior:
            state.prior = self._build_prior(PriorSpec.from_state(state.meta, state.tensors))

    def status(self, method: str, sid: str, prior: str | None = None) -> str:
        """'prepared' (in memory), 'cached' (on disk), 'running' or 'none'."""
        m = self.method(method)
        pname = prior or m.default_prior
        with self._lock:
            if (method, sid, pname) in self._states:
                return "prepared"
            if any(j.method == method and j.scene_id == sid and not j.done for j in self._jobs.values()):
                return "running"
        try:
            found = self.cache.latest(sid, method, pname)
        except DamagedEntry:
            return "none"  # moved aside and logged by the cache
        return "cached" if found is not None and m.is_current(found[1]) else "none"

    def submit(
        self,
        method: str,
        sid: str,
        prior: str | None = None,
        options: dict[str, Any] | None = None,
        prior_options: dict[str, Any] | None = None,
        on_progress: JobCallback | None = None,
    ) -> Job:
        """Start a prepare job; it returns at once. Cached work is reused, not recomputed."""
        m = self.method(method)
        scene = self.get_scene(sid)
        if scene.kind not in m.scene_kinds:
            raise SegAnyError(
                "unsupported", f"method {method!r} works on {list(m.scene_kinds)} scenes, not {scene.kind!r}"
            )
        # bad options are refused here, before a job exists, naming the field
        opts = parse_options(m.Options, options, preset=preset_for(self.device), scene=scene)
        pname = prior or m.default_prior
        popts = dict(prior_options or {})
        prior_config(pname, popts)  # unknown priors and bad prior options are refused before a job exists
        key = options_key(method, pname, opts.to_dict(), popts)
        job = Job(id=f"j{next(self._ids)}", method=method, scene_id=sid, prior=pname)
        job.ctx = JobContext(device=self.device, on_progress=lambda f, msg: self._on_progress(job, f, msg))
        if on_progress is not None:
            job._listeners.append(on_progress)
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old_jobs()
        self._worker.submit(self._run, job, m, scene, opts, popts, key)
        return job

    def _on_progress(self, job: Job, fraction: float, message: str) -> None:
        job.fraction, job.message = fraction, message
        job._notify()

    def _run(self, job: Job, m: Method, scene: Scene, opts: Options, popts: dict, key: str) -> None:
        try:
            job.ctx.check()
            job.status = "running"
            job._notify()
            damaged: DamagedEntry | None = None
            try:
                state = self.cache.load(job.scene_id, job.method, key)
            except DamagedEntry as exc:  # already moved aside: prepare it again
                state, damaged = None, exc
            stale = state is not None and not m.is_current(state)  # written by another version of the method
            unusable: SegAnyError | None = None
            if state is not None and not stale:
                try:
                    self._restore(m, state)
                except SegAnyError as exc:
                    if exc.code != "not_prepared":
                        raise
                    state, unusable = None, exc  # e.g. made with another SAM model than the checkpoint holds
            if state is None or stale:
                prior = self._build_prior(PriorSpec(job.prior, popts))
                try:
                    state = m.prepare(scene, prior, opts, job.ctx)
                finally:
                    job.ctx.close()  # a held-back progress report must not overwrite the job's final state
                job.ctx.check()
                meta, tensors = prior.describe().to_state()  # so a restarted backend builds the same prior
                state.meta[STATE_KEY] = meta
                state.tensors.update(tensors)
                again = damaged or unusable
                job.message = "prepared" if again is None else f"prepared again: {again.message}"
                record = {"prior": job.prior, "options": opts.to_dict()}
                try:
                    self.cache.save(job.scene_id, job.method, key, state, record, replace=stale or again is not None)
                except SegAnyError as exc:
                    if exc.code != "io_error":
                        raise
                    log.warning("prepared state kept in memory only: %s", exc.message)
                    job.message += f"; not saved, so kept in memory until the backend stops: {exc.message}"
            else:
                job.message = "loaded from cache"
            with self._lock:
                self._states[(job.method, job.scene_id, job.prior)] = state
            job.fraction, job.status = 1.0, "done"
        except SegAnyError as exc:
            job.error, job.status = exc, "cancelled" if exc.code == "cancelled" else "failed"
        except Exception as exc:
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            where = f"{Path(frame.filename).name}:{frame.lineno}"
            job.error = SegAnyError("internal", f"{type(exc).__name__}: {exc} (at {where})")
            job.status = "failed"
        finally:
            job.finished = time.time()
            job._done.set()
            job._notify()
            job._listeners.clear()  # a listener may hold a closed connection; the job ends here

    def _forget_old_jobs(self) -> None:
        """Keep the newest KEPT_JOBS finished jobs: a backend that runs for days must not grow per prepare."""
        finished = [k for k, j in self._jobs.items() if j.done]  # insertion order: oldest first
        for k in finished[: max(0, len(finished) - KEPT_JOBS)]:
            del self._jobs[k]

    def job(self, job_id: str) -> Job:
        with self._lock:
            if job_id not in self._jobs:
                raise SegAnyError(
                    "not_found", f"no job {job_id!r} (only the newest {KEPT_JOBS} finished jobs are kept)"
                )
            return self._jobs[job_id]

    def jobs(self) -> list[dict[str, Any]]:
        with self._lock:
            return [j.to_dict() for j in self._jobs.values()]

    def prepare(
        self,
        method: str,
        sid: str,
        prior: str | None = None,
        options: dict[str, Any] | None = None,
        prior_options: dict[str, Any] | None = None,
        on_progress: JobCallback | None = None,
    ) -> dict[str, Any]:
        """Blocking prepare; raises the job's error."""
        return self.submit(method, sid, prior, options, prior_options, on_progress).result()

    # queries ----------------------------------------------------------------------------------
    def state(self, method: str, sid: str, prior: str | None = None) -> State:
        m = self.method(method)
        pname = prior or m.default_prior
        with self._lock:
            state = self._states.get((method, sid, pname))
        if state is None and not m.needs_prepare:
            state = State(tensors={}, meta={})  # nothing prepared: the method answers with its default options
        if state is None:
            try:
                found = self.cache.latest(sid, method, pname)
            except DamagedEntry as exc:
                raise SegAnyError("not_prepared", f"{exc.message}; run prepare again") from exc
            if found is None:
                raise SegAnyError(
                    "not_prepared", f"run prepare for method {method!r} with prior {pname!r} on this scene first"
                )
            state = found[1]
            if not m.is_current(state):
                raise SegAnyError(
                    "not_prepared",
                    f"the cached {method!r} state was written by another SegAny version ({state.meta.get('format')!r});"
                    " run prepare again",
                )
            self._restore(m, state)
        with self._lock:
            self._states[(method, sid, pname)] = state
        return state

    def query(self, method: str, sid: str, query: dict[str, Any], prior: str | None = None) -> Selection:
        scene = self.get_scene(sid)
        return self.method(method).query(scene, self.state(method, sid, prior), query)

    def everything(self, method: str, sid: str, query: dict[str, Any], prior: str | None = None) -> Parts:
        """Split the whole scene into parts (a part label per element, a colour per part)."""
        m = self.method(method)
        check_everything(m)
        scene = self.get_scene(sid)
        return m.everything(scene, self.state(method, sid, prior), query)

    def close(self) -> None:
        with self._lock:
            for j in self._jobs.values():
                j.cancel()
        self._worker.shutdown(wait=True, cancel_futures=True)
