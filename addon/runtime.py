"""The add-on's live state, without bpy: the backend, the bridge, and what each object's scene is doing
(sent / preparing / prepared). Operators and panels read and drive this; tests drive it directly."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .backend_process import Backend, BackendConfig
from .bridge import Bridge
from .client import BackendUnavailable, Job, RemoteError, Selection
from .scene_read import ObjectScene


@dataclass
class ObjectState:
    """One object's scene as the backend knows it."""

    scene_id: str = ""
    kind: str = ""
    n_elements: int = 0
    status: str = "not sent"  # not sent | sending | sent | preparing | prepared | failed | cancelled
    method: str = ""
    prior: str = ""
    fraction: float = 0.0
    message: str = ""
    from_cache: bool = False
    job: Job | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def geometry_problem(self, n_now: int) -> str:
        """Why the sent scene no longer stands for the object ('' while it does): the object's element count
        changed since it was read (an edit after Prepare), so scores and clicks would land on other elements."""
        if not self.scene_id or n_now == self.n_elements:
            return ""
        noun, unit = _KIND_WORDS.get(self.kind, ("object", "elements"))
        return f"The {noun} changed since Prepare ({self.n_elements:,} → {n_now:,} {unit}): press Prepare again"


_KIND_WORDS = {"mesh": ("mesh", "vertices"), "splats": ("splats", "Gaussians"), "points": ("point cloud", "points")}


def error_text(exc: BaseException) -> str:
    """One line a person can act on, for the status line and reports."""
    if isinstance(exc, RemoteError):
        return f"{exc.message} [{exc.code}]"
    return str(exc)


class Runtime:
    """Created on register, closed on unregister; one per Blender session."""

    def __init__(self, config: BackendConfig) -> None:
        self.backend = Backend(config)
        self.bridge = Bridge()
        self.objects: dict[int, ObjectState] = {}
        self.methods: list[dict[str, Any]] = []
        self.priors: list[dict[str, Any]] = []
        self.max_clicks: int | None = None  # the backend's limit per query, once its info reply says it
        self.changed: Callable[[], None] = lambda: None  # the UI's redraw hook, called on the main thread

    def state(self, key: int) -> ObjectState:
        return self.objects.setdefault(key, ObjectState())

    def close(self) -> None:
        for st in self.objects.values():
            if st.job is not None and not st.job.done:
                try:
                    st.job.cancel()
                except (BackendUnavailable, RemoteError):
                    st.job = None
        self.bridge.close()
        self.backend.stop()

    # backend -----------------------------------------------------------------------------------
    def connect(self, on_done: Callable[[], None] | None = None) -> None:
        """Start or reuse the backend in the background and fetch its method / prior lists."""

        def work() -> dict[str, Any]:
            return self.backend.ensure().info()

        def done(info: dict[str, Any]) -> None:
            self._catalogue(info)
            if on_done is not None:
                on_done()
            self.changed()

        self.bridge.run(work, done, self._failed_backend)

    def restart(self) -> None:
        def work() -> dict[str, Any]:
            return self.backend.restart().info()

        for st in self.objects.values():
            st.status, st.job, st.fraction = ("not sent", None, 0.0)
        self.bridge.run(work, lambda info: (self._catalogue(info), self.changed()), self._failed_backend)

    def load_catalogue(self) -> None:
        """Fetch the method and prior lists now, blocking: a script may run before the panel's `connect` has."""
        self._catalogue(self.backend.ensure().info())

    def _catalogue(self, info: dict[str, Any]) -> None:
        methods = info.get("method_details") or info.get("methods", [])  # details: the scene kinds each fits
        self.methods = [{"name": m} if isinstance(m, str) else m for m in methods]
        self.priors = [{"name": p} if isinstance(p, str) else p for p in info.get("priors", [])]
        self.max_clicks = info.get("max_clicks")

    def _failed_backend(self, exc: BaseException) -> None:
        if self.backend.status not in ("error", "dead"):
            self.backend.status, self.backend.message = "error", error_text(exc)
        self.changed()

    # scenes and jobs ---------------------------------------------------------------------------
    def send_sync(self, key: int, scene: ObjectScene) -> str:
        """Send (idempotent: the backend hashes content) and remember the scene id; worker or batch thread."""
        t0 = time.perf_counter()
        info = self.backend.ensure().add_scene(scene.kind, scene.arrays)
        st = self.state(key)
        st.scene_id, st.kind, st.n_elements = info["scene_id"], scene.kind, int(info["n_elements"])
        st.timings["send_s"] = time.perf_counter() - t0
        if st.status in ("not sent", "sending", "failed", "cancelled"):
            st.status = "sent"
        return st.scene_id

    def prepare(
        self,
        key: int,
        scene: ObjectScene,
        method: str,
        prior: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        """Send the scene and start the method's prepare job; progress lands in the object's state."""
        st = self.state(key)
        st.status, st.method, st.prior, st.fraction, st.message = "sending", method, prior or "", 0.0, "Sending"

        def progress(fraction: float, message: str) -> None:  # client reader thread: no bpy here
            self.bridge.post(self._progress, key, fraction, message)

        def work() -> Job:
            if not self.methods:  # Prepare pressed before the backend was started: the panel needs its lists too
                self.bridge.post(self._catalogue, self.backend.ensure().info())
            sid = self.send_sync(key, scene)
            client = self.backend.ensure()
            popts = self.backend.config.prior_options(prior)
            return client.submit(method, sid, prior=prior, options=options, prior_options=popts, on_progress=progress)

        def started(job: Job) -> None:
            st.job, st.status = job, "preparing"
            if st.fraction == 0.0:  # no progress has arrived yet
                st.message = "Queued"
            threading.Thread(target=self._await, args=(key, job), name="segany-job-wait", daemon=True).start()
            self.changed()

        self.bridge.run(work, started, lambda e: self._job_error(key, e))
        self.changed()

    def _await(self, key: int, job: Job) -> None:
        """Wait for a job's end on its own thread (the worker stays free for queries), then post it."""
        try:
            result = job.result(None)
        except (RemoteError, BackendUnavailable) as exc:
            self.bridge.post(self._job_error, key, exc)
            return
        self.bridge.post(self._finished, key, result)

    def _progress(self, key: int, fraction: float, message: str) -> None:
        st = self.state(key)
        if st.status in ("sending", "preparing"):  # a fast job reports before `started` has run
            st.fraction, st.message = fraction, message
            self.changed()

    def _finished(self, key: int, result: dict[str, Any]) -> None:
        st = self.state(key)
        st.status, st.fraction, st.job = "prepared", 1.0, None
        st.message = str(result.get("message") or "prepared")
        st.from_cache = "cache" in st.message
        self.changed()

    def _job_error(self, key: int, exc: BaseException) -> None:
        st = self.state(key)
        st.job = None
        cancelled = isinstance(exc, RemoteError) and exc.code == "cancelled"
        st.status = "cancelled" if cancelled else "failed"
        st.message = "Cancelled" if cancelled else error_text(exc)
        if isinstance(exc, BackendUnavailable):
            self.backend.alive()
        self.changed()

    def cancel(self, key: int) -> None:
        job = self.state(key).job
        if job is not None:
            self.bridge.run(job.cancel, None, lambda e: self._job_error(key, e))

    def query(
        self,
        key: int,
        query: dict[str, Any],
        on_result: Callable[[Selection, dict[str, float]], None],
        on_error: Callable[[BaseException], None],
    ) -> None:
        """Ask for scores in the background; only the newest pending query of an object is sent."""
        st = self.state(key)
        t_event = time.perf_counter()

        def work() -> tuple[Selection, dict[str, float]]:
            t0 = time.perf_counter()
            sel = self.backend.ensure().query(st.method, st.scene_id, query, prior=st.prior or None)
            t1 = time.perf_counter()
            return sel, {"queued_s": t0 - t_event, "round_trip_s": t1 - t0, "t_reply": t1}

        def done(value: tuple[Selection, dict[str, float]]) -> None:
            sel, timing = value
            timing["to_main_s"] = time.perf_counter() - timing.pop("t_reply")
            on_result(sel, timing)

        self.bridge.run(work, done, on_error, key=f"query:{key}")


_CURRENT: list[Runtime] = []


def install(rt: Runtime) -> Runtime:
    """Make rt the session's runtime (register)."""
    uninstall()
    _CURRENT.append(rt)
    return rt


def uninstall() -> None:
    """Close the session's runtime: cancel jobs, stop the worker and the backend (unregister, quit)."""
    while _CURRENT:
        _CURRENT.pop().close()


def current_or_none() -> Runtime | None:
    return _CURRENT[-1] if _CURRENT else None


def current() -> Runtime:
    rt = current_or_none()
    if rt is None:
        raise RuntimeError("SegAny is not enabled: enable the SegAny extension in Preferences > Add-ons")
    return rt
