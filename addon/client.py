"""Client for the SegAny backend: what the Blender add-on, the CLI and the tests talk through.

Standard library and numpy only, so it runs inside Blender. One reader thread per client receives
every frame and hands replies to the waiting call (matched by request id) and job events to their
`Job` (matched by job id), so any thread may call the client at any time. When the backend dies,
every waiting call fails at once with `BackendUnavailable` — never after a timeout.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import wire

log = logging.getLogger("segany.client")

FINAL_EVENTS = ("done", "failed", "cancelled")
ProgressCallback = Callable[[float, str], None]


def default_state_file() -> Path:
    """Where a backend started without --state-file writes its port and token (only the user can read it)."""
    env = os.environ.get("SEGANY_STATE_FILE")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif os.environ.get("XDG_RUNTIME_DIR"):
        base = Path(os.environ["XDG_RUNTIME_DIR"])
    else:
        base = Path.home() / ".cache"
    return base / "segany" / "server.json"


def state_dir_problem(directory: Path) -> str | None:
    """Why a state file in `directory` cannot be trusted, or None when only this user can change it.

    A user who can write the directory can swap in a state file of their own, and with it a port and a
    token of theirs: the add-on would then send its scenes to their process. Group write is accepted only
    for the user's private group (named as the user, no other members), which Debian and Ubuntu give
    every user along with umask 002. (Windows keeps ACLs, not modes: there the per-user default places
    are trusted as they are.)
    """
    if os.name != "posix":
        return None
    import grp  # POSIX-only modules: imported here so the add-on still loads on Windows
    import pwd

    try:
        st = directory.stat()
    except OSError as e:
        return f"the state file's directory {directory} cannot be read ({e.strerror or e})"
    if st.st_uid != os.getuid():
        return (
            f"the state file's directory {directory} belongs to another user (uid {st.st_uid}), who could swap "
            "the state file; use a directory of your own (--state-file or SEGANY_STATE_FILE)"
        )
    try:
        group = grp.getgrgid(st.st_gid)
        private = group.gr_name == pwd.getpwuid(st.st_uid).pw_name and not set(group.gr_mem) - {group.gr_name}
    except KeyError:  # a group or user without a name: not provably private
        private = False
    if st.st_mode & 0o002 or (st.st_mode & 0o020 and not private):
        return (
            f"the state file's directory {directory} is writable by other users (mode {st.st_mode & 0o7777:o}), "
            f"who could swap the state file; run `chmod go-w {directory}` or use a private directory "
            "(--state-file or SEGANY_STATE_FILE)"
        )
    return None


class RemoteError(Exception):
    """The backend refused or failed a request; `code` is stable, `message` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message


class BackendUnavailable(ConnectionError):
    """No backend to talk to: not started, crashed, stopped, or the connection broke."""


class RequestTimeout(TimeoutError):
    """The backend is alive but did not answer within the timeout."""


@dataclass
class Selection:
    """A query's answer: one score per element and the threshold the method proposes."""

    scores: np.ndarray
    threshold: float
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def mask(self) -> np.ndarray:
        return self.scores >= self.threshold


@dataclass
class Parts:
    """Segment everything's answer: a part per element (-1: unseen) and a colour per part."""

    labels: np.ndarray  # (N,) int32
    colours: np.ndarray  # (K, 3) float32 in [0, 1]
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. "levels" (L, N), "scales" (L,)


class _Pending:
    __slots__ = ("arrays", "error", "event", "header", "on_reply")

    def __init__(self, on_reply: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.event = threading.Event()
        self.header: dict[str, Any] | None = None
        self.arrays: dict[str, np.ndarray] = {}
        self.error: Exception | None = None
        self.on_reply = on_reply


class Job:
    """A backend job seen from the client: progress in `events` (a queue) and/or a callback.

    `events` receives the backend's event headers (progress, then done / failed / cancelled), or a
    local {"event": "lost"} when the backend goes away first.

    The callback runs on the client's reader thread: keep it short and never touch Blender data
    from it (poll `events` from a timer instead).
    """

    def __init__(self, client: Client, job_id: str, on_progress: ProgressCallback | None = None) -> None:
        self.client = client
        self.id = job_id
        self.status = "queued"
        self.fraction = 0.0
        self.message = ""
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.on_progress = on_progress
        self._final: dict[str, Any] | None = None
        self._error: Exception | None = None
        self._done = threading.Event()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        """Ask the backend to stop the job; the final event ('cancelled') follows."""
        if not self.done:
            self.client.request("job.cancel", job=self.id)

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """The job's summary once done; raises RemoteError (failed / cancelled) or BackendUnavailable."""
        if not self._done.wait(timeout):
            raise RequestTimeout(f"job {self.id} is still {self.status} ({self.fraction:.0%}) after {timeout} s")
        if self._error is not None:
            raise self._error
        assert self._final is not None
        if self._final["event"] != "done":
            err = self._final.get("error") or {"code": self._final["event"], "message": f"job {self.id} ended"}
            raise RemoteError(err["code"], err["message"])
        return self._final.get("result", {})

    def _on_event(self, header: dict[str, Any]) -> None:
        kind = header.get("event")
        self.status = header.get("status", kind if kind in FINAL_EVENTS else self.status)
        if "fraction" in header:
            self.fraction = float(header["fraction"])
        self.message = header.get("message", self.message)
        self.events.put(header)
        if self.on_progress is not None:
            try:
                self.on_progress(self.fraction, self.message)
            except Exception:
                log.exception("progress callback of job %s raised; the job goes on", self.id)
        if kind in FINAL_EVENTS:
            self._final = header
            self._done.set()

    def _fail(self, error: Exception) -> None:
        self._error = error
        self.status = "lost"
        self.events.put({"event": "lost", "job": self.id, "message": str(error)})  # local: the backend is gone
        self._done.set()


class Client:
    """A connection to one backend. Thread-safe; use as a context manager or call close()."""

    def __init__(
        self,
        host: str,
        port: int,
        token: str,
        timeout: float | None = 30.0,
        limits: wire.Limits | None = None,
    ) -> None:
        self.host, self.port, self.timeout = host, int(port), timeout
        self.recv_limits = limits or wire.Limits()
        self.send_limits = wire.Limits()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._jobs: dict[str, Job] = {}
        self._gone: BackendUnavailable | None = None
        self._closing = False
        self.sock = self._connect(timeout)
        self.server = self._hello(token)
        self._reader = threading.Thread(target=self._read_loop, name="segany-client-reader", daemon=True)
        self._reader.start()

    @classmethod
    def from_state_file(cls, path: str | Path | None = None, timeout: float | None = 30.0) -> Client:
        """Connect to the backend whose port and token are in `path` (default: default_state_file())."""
        path = Path(path) if path is not None else default_state_file()
        problem = state_dir_problem(path.parent) if path.parent.exists() else None
        if problem is not None:
            raise BackendUnavailable(f"not trusting the backend state file {path}: {problem}")
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            host, port, token = state["host"], int(state["port"]), state["token"]
        except FileNotFoundError:
            raise BackendUnavailable(
                f"no SegAny backend is running (no state file at {path}); start one with `segany serve` "
                "or from the add-on preferences"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise BackendUnavailable(f"the backend state file {path} is unreadable ({e}); restart the backend") from e
        try:
            return cls(host, port, token, timeout=timeout)
        except BackendUnavailable as e:
            pid = state.get("pid")
            raise BackendUnavailable(
                f"{e} — the state file {path} names process {pid}, which is probably gone; restart the backend"
            ) from None

    # connection ---------------------------------------------------------------------------
    def _connect(self, timeout: float | None) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        except OSError as e:
            raise BackendUnavailable(
                f"cannot reach the SegAny backend at {self.host}:{self.port} ({e.strerror or e}); "
                "is it running? start it with `segany serve` or restart it from the add-on"
            ) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _hello(self, token: str) -> dict[str, Any]:
        try:
            wire.send_frame(self.sock, {"op": "hello", "id": 0, "token": token})
            frame = wire.read_frame(self.sock, self.recv_limits)
        except (OSError, wire.WireError) as e:
            self.sock.close()
            raise BackendUnavailable(f"the backend at {self.host}:{self.port} broke off the handshake ({e})") from None
        if frame is None:
            self.sock.close()
            raise BackendUnavailable(
                f"the backend at {self.host}:{self.port} closed the connection during the handshake"
            )
        header, _ = frame
        if not header.get("ok"):
            self.sock.close()
            err = header.get("error") or {}
            raise RemoteError(err.get("code", "unauthorized"), err.get("message", "the backend refused the token"))
        self.sock.settimeout(None)
        lim = header.get("limits")
        if isinstance(lim, dict):
            self.send_limits = wire.Limits(**{k: int(v) for k, v in lim.items() if k in wire.Limits().to_dict()})
        return header

    def close(self) -> None:
        """Disconnect; the backend cancels this client's unfinished jobs."""
        with self._lock:
            self._closing = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            log.debug("socket already shut down")
        self.sock.close()
        if threading.current_thread() is not self._reader:
            self._reader.join(timeout=5)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return self._gone is None and not self._closing

    def _read_loop(self) -> None:
        reason = "the backend closed the connection"
        while True:
            try:
                frame = wire.read_frame(self.sock, self.recv_limits, resync=True)
            except wire.WireError as e:
                if e.in_sync:  # one unreadable reply: its caller hears why, the connection goes on
                    self._on_bad_frame(e)
                    continue
                reason = f"the backend sent a bad frame ({e})"
                break
            except OSError as e:
                reason = f"the connection broke ({e.strerror or e})"
                break
            except Exception as e:  # a bug here must still fail every waiting call at once, not by timeout
                log.exception("the client's reader failed")
                reason = f"the client could not read a frame ({type(e).__name__}: {e})"
                break
            if frame is None:
                break
            header, arrays = frame
            if "event" in header:
                self._on_event(header)
            else:
                self._on_reply(header, arrays)
        if self._closing:
            gone = BackendUnavailable("this client was closed")
        else:
            gone = BackendUnavailable(
                f"lost the SegAny backend at {self.host}:{self.port}: {reason}. It may have crashed or been "
                "stopped; restart it (`segany serve` or the add-on's Restart button) and try again"
            )
        self._fail_all(gone)

    def _on_reply(self, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        with self._lock:
            pending = self._pending.pop(header.get("id"), None)
        if pending is None:
            log.debug("reply to an abandoned request %r dropped", header.get("id"))
            return
        if pending.on_reply is not None and header.get("ok"):
            pending.on_reply(header)  # runs before the next frame, so no job event can miss its Job
        pending.header, pending.arrays = header, arrays
        pending.event.set()

    def _on_bad_frame(self, error: wire.WireError) -> None:
        """Fail the call whose reply could not be read; if that is unknown, every call waiting now."""
        header = error.header or {}
        log.warning("the backend sent a frame this client cannot read (%s); the connection goes on", error)
        remote = RemoteError(error.code, f"the backend's reply could not be read: {error.message}")
        with self._lock:
            if "event" in header:
                return  # a job's event: its later events (and the final one) still arrive
            rid = header.get("id")
            if rid in self._pending:
                failed = [self._pending.pop(rid)]
            else:
                failed, self._pending = list(self._pending.values()), {}
        for p in failed:
            p.error = remote
            p.event.set()

    def _on_event(self, header: dict[str, Any]) -> None:
        with self._lock:
            job = self._jobs.get(header.get("job"))
            if job is not None and header.get("event") in FINAL_EVENTS:
                del self._jobs[job.id]
        if job is not None:
            job._on_event(header)

    def _fail_all(self, error: BackendUnavailable) -> None:
        with self._lock:
            self._gone = error
            pending, self._pending = list(self._pending.values()), {}
            jobs, self._jobs = list(self._jobs.values()), {}
        for p in pending:
            p.error = error
            p.event.set()
        for j in jobs:
            j._fail(error)

    # requests -----------------------------------------------------------------------------
    def request(
        self,
        op: str,
        arrays: dict[str, np.ndarray] | None = None,
        timeout: float | None = None,
        _on_reply: Callable[[dict[str, Any]], None] | None = None,
        **fields: Any,
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Send one request and wait for its reply; raises RemoteError on an error reply."""
        pending = _Pending(_on_reply)
        with self._lock:
            if self._gone is not None:
                raise self._gone
            if self._closing:
                raise BackendUnavailable("this client was closed")
            rid = next(self._ids)
            self._pending[rid] = pending
        try:
            buffers = wire.encode({"op": op, "id": rid, **fields}, arrays, self.send_limits)
        except wire.WireError as e:
            self._forget(rid)
            raise RemoteError(e.code, e.message) from None
        try:
            with self._send_lock:
                for buf in buffers:
                    self.sock.sendall(buf)
        except OSError as e:
            self._forget(rid)
            if self._gone is not None:
                raise self._gone from None
            raise BackendUnavailable(
                f"could not send to the backend at {self.host}:{self.port} ({e.strerror or e}); restart it"
            ) from None
        wait = self.timeout if timeout is None else timeout
        if not pending.event.wait(wait):
            self._forget(rid)
            raise RequestTimeout(f"the backend did not answer {op!r} within {wait} s")
        if pending.error is not None:
            raise pending.error
        header = pending.header or {}
        if not header.get("ok"):
            err = header.get("error") or {}
            raise RemoteError(err.get("code", "internal"), err.get("message", "the backend gave no reason"))
        return header, pending.arrays

    def _forget(self, rid: int) -> None:
        with self._lock:
            self._pending.pop(rid, None)

    # ops ----------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return _strip(self.request("info")[0])

    def ping(self) -> float:
        """One small round trip; returns the backend's clock (seconds since the epoch)."""
        return float(self.request("echo")[0]["time"])

    def echo(self, arrays: dict[str, np.ndarray], return_arrays: bool = True) -> dict[str, np.ndarray]:
        """Send arrays and get them back (or only their sizes): measures the link."""
        return self.request("echo", arrays, return_arrays=return_arrays)[1]

    def add_scene(self, kind: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        """Send a scene ('mesh', 'splats', 'points') as arrays; returns scene_id, kind, n_elements, warnings."""
        return _strip(self.request("scene.add", arrays, kind=kind)[0])

    def load_scene(self, path: str | Path, allow_references: bool = False) -> dict[str, Any]:
        """Have the backend read a file it can see; returns like add_scene. Files the named one points at (an
        OBJ's materials, a glTF's buffers) are read only with allow_references."""
        return _strip(self.request("scene.load", path=str(path), allow_references=allow_references)[0])

    def drop_scene(self, scene_id: str) -> None:
        self.request("scene.drop", scene_id=scene_id)

    def scenes(self) -> list[dict[str, Any]]:
        return self.request("scene.list")[0]["scenes"]

    def submit(
        self,
        method: str,
        scene_id: str,
        prior: str | None = None,
        options: dict[str, Any] | None = None,
        prior_options: dict[str, Any] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Job:
        """Start a prepare job; progress arrives in `job.events` and `on_progress`."""
        made: dict[str, Job] = {}

        def register(header: dict[str, Any]) -> None:
            job = Job(self, header["job"], on_progress)
            made["job"] = job
            with self._lock:
                self._jobs[job.id] = job

        self.request(
            "job.submit",
            _on_reply=register,
            method=method,
            scene_id=scene_id,
            prior=prior,
            options=options or {},
            prior_options=prior_options or {},
        )
        return made["job"]

    def prepare(self, method: str, scene_id: str, timeout: float | None = None, **kwargs: Any) -> dict[str, Any]:
        """Blocking submit + result."""
        return self.submit(method, scene_id, **kwargs).result(timeout)

    def job_status(self, job_id: str) -> dict[str, Any]:
        return _strip(self.request("job.status", job=job_id)[0])

    def cancel(self, job_id: str) -> dict[str, Any]:
        return _strip(self.request("job.cancel", job=job_id)[0])

    def job_result(self, job_id: str, wait: float = 0.0) -> dict[str, Any]:
        """A job's summary from the backend (works for jobs of other connections too)."""
        timeout = None if self.timeout is None else self.timeout + wait
        return _strip(self.request("job.result", timeout=timeout, job=job_id, wait=wait)[0])

    def query(
        self,
        method: str,
        scene_id: str,
        query: dict[str, Any],
        prior: str | None = None,
        deadline: float | None = None,
    ) -> Selection:
        """Ask a prepared method for scores; numpy values in `query` travel as arrays.

        `deadline`: seconds the backend may spend before it stops the query (`timeout`); by default this
        client's own timeout, since an answer after it would reach no one (no timeout: the backend's default).
        """
        arrays = {k: v for k, v in query.items() if isinstance(v, np.ndarray)}
        plain = {k: _plain(v) for k, v in query.items() if k not in arrays}
        seconds = self.timeout if deadline is None else deadline
        extra = {} if seconds is None else {"deadline": seconds}
        header, out = self.request("query", arrays, method=method, scene_id=scene_id, query=plain, prior=prior, **extra)
        scores = out.pop("scores")
        return Selection(scores=scores, threshold=float(header["threshold"]), extras=out)

    def everything(
        self,
        method: str,
        scene_id: str,
        query: dict[str, Any] | None = None,
        prior: str | None = None,
        deadline: float | None = None,
    ) -> Parts:
        """Split a prepared scene into parts, e.g. query {"scale": 0.2} (SAGA) or {"scales": [0.5, 0.1]} for
        a hierarchy (extras["levels"]); `deadline` as in `query`."""
        plain = {k: _plain(v) for k, v in (query or {}).items()}
        seconds = self.timeout if deadline is None else deadline
        extra = {} if seconds is None else {"deadline": seconds}
        _, out = self.request("everything", method=method, scene_id=scene_id, query=plain, prior=prior, **extra)
        return Parts(labels=out.pop("labels"), colours=out.pop("colours"), extras=out)

    def shutdown(self) -> None:
        """Stop the backend (it removes its state file), then close this client."""
        try:
            self.request("shutdown")
        finally:
            self.close()


def launch_backend(
    python: str | Path,
    state_file: str | Path | None = None,
    args: Sequence[str] = (),
    parent_pid: int | None = None,
    log_path: str | Path | None = None,
    timeout: float = 180.0,
) -> tuple[subprocess.Popen, Client]:
    """Start `python -m segany.server` and connect once it has written its state file.

    `parent_pid` (e.g. Blender's own pid) makes the backend exit when that process dies. Output goes
    to `log_path`, whose tail is quoted if the backend dies before it is ready.
    """
    state = Path(state_file) if state_file is not None else default_state_file()
    cmd = [str(python), "-m", "segany.server", "--state-file", str(state), *args]
    if parent_pid is not None:
        cmd += ["--parent-pid", str(parent_pid)]
    log_file = open(log_path, "ab") if log_path is not None else None  # noqa: SIM115 - handed to the child
    try:
        out = log_file or subprocess.DEVNULL
        flags = subprocess.CREATE_NO_WINDOW if sys.platform == "win32" else 0  # no console window over Blender
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL, creationflags=flags)
    finally:
        if log_file is not None:
            log_file.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            tail = Path(log_path).read_text(errors="replace")[-2000:] if log_path is not None else ""
            raise BackendUnavailable(f"the backend exited with code {code} before it was ready: {tail or cmd}")
        if _state_pid(state) == proc.pid:
            return proc, Client.from_state_file(state)
        time.sleep(0.05)
    proc.kill()
    raise BackendUnavailable(f"the backend did not become ready within {timeout} s: {cmd}")


def _state_pid(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_text(encoding="utf-8"))["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _strip(header: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in header.items() if k not in ("id", "ok")}


def _plain(value: Any) -> Any:
    """numpy scalars and small nested containers as JSON-ready Python values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
