"""The backend's socket server: the wire protocol of docs/protocol.md in front of one Engine.

Loopback only unless a host is given; the port is the OS's choice unless given; port, pid and a
random token go to a state file only the user can read, in a directory no other user can write. A
connection's first frame must be a hello with that token, within one deadline for the whole hello, or
it gets one `unauthorized` frame and is closed.

Bounds, so that no peer (authenticated or not) can hold the server: a cap on connections and a smaller
one on connections still saying hello (both answered with `busy`), back-off when accept fails (file
descriptors run out), one budget for the payload bytes all connections receive at once, a deadline on
every query, error messages cut short, and replies checked against the client's limits before sending.

Threads: one accept loop, one reader per connection (answers short ops inline), a small pool for
ops that may take long (scene upload/load, queries, waiting for a result), one event writer per
connection (job progress never waits on a slow client), and the engine's own job worker. A long job
therefore never blocks a query. A connection that goes away cancels its unfinished jobs. With
`parent_pid`, the server exits when that process dies (Blender quit or crashed).
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import json
import logging
import math
import os
import queue
import secrets
import selectors
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np

from segany.addon import wire
from segany.addon.backend_process import pid_alive
from segany.addon.client import default_state_file, state_dir_problem
from segany.kernels import tune_cpu_allocator

from . import __version__, deadline
from .engine import Engine, Job
from .errors import SegAnyError
from .jsonable import jsonable
from .priors import checkpoints_from_env

log = logging.getLogger("segany.server")

# An unauthenticated peer gets this long for its whole hello (not per read: one byte every few seconds
# must not hold a connection); after the hello, reads block without a timeout (the peer is the user's
# own program, and a closed peer ends the read at once).
HELLO_SECONDS = 10.0
# The add-on holds one or two connections; 32 leaves room for scripts and tools while keeping the
# threads bounded (two per connection). At most 8 may be unauthenticated at once, so peers without the
# token cannot fill every slot, and at most 8 refusals linger (one thread each) at a time.
MAX_CONNECTIONS, MAX_HELLOS, MAX_REFUSALS = 32, 8, 8
ACCEPT_BACKOFF = (0.005, 0.5)  # seconds: first and longest wait after a failed accept (no spin, no log flood)
# All connections together may be receiving one maximal payload plus this much for everyone else.
PAYLOAD_SPARE = 1 << 30
QUERY_SECONDS, MAX_QUERY_SECONDS = 60.0, 3600.0  # a query's deadline when it names none, and the most it gets
MAX_MESSAGE = 2000  # characters of an error message sent; messages that quote input must not grow with it
PARALLEL_OPS = 4
LINGER_SECONDS, LINGER_BYTES = 1.0, 1 << 20  # after a refusal: how long / how much input to discard
INFLIGHT_GRACE = 60.0  # how long a half-closed connection waits for its slow ops' replies
# Before the token is checked nothing big is read: a hello is a small header and no payload.
PREAUTH_LIMITS = wire.Limits(max_header=4096, max_payload=0, max_arrays=0, max_elements=0)
SLOW_OPS = frozenset({"scene.add", "scene.load", "query", "everything", "job.result"})
REPLY_LIMITS = wire.Limits()  # what a client receives by default: a reply beyond it would end the connection

ReadyFn = Callable[[str, int], None]
# An op's answer: reply fields and arrays, or None when the op already sent its reply itself.
Reply = tuple[dict[str, Any], dict[str, np.ndarray] | None] | None


class _Conn:
    """One client connection: its socket, its jobs, and the writer for job events."""

    def __init__(self, sock: socket.socket, peer: str) -> None:
        self.sock = sock
        self.peer = peer
        self.send_lock = threading.Lock()
        self.order_lock = threading.RLock()  # a job's events go out only after its submit reply
        self.jobs: dict[str, Job] = {}
        self.closed = False
        self.eof = False  # the client sent its last frame (it may still read our replies)
        self.gone = threading.Event()  # set when the connection closes: its queries stop at their next check
        self.inflight: set[Future] = set()
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.writer: threading.Thread | None = None

    def start_events(self) -> None:
        """Only an authenticated connection gets its event writer: a peer without the token costs one thread."""
        self.writer = threading.Thread(target=self._write_events, name=f"segany-events-{self.peer}", daemon=True)
        self.writer.start()

    def send(self, header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> None:
        """Send one frame; a frame the client could not receive raises WireError (too_large) unsent."""
        buffers = wire.encode(header, arrays, REPLY_LIMITS)
        try:
            with self.send_lock:
                for buf in buffers:
                    self.sock.sendall(buf)
        except OSError as e:
            log.debug("client %s went away while we sent (%s)", self.peer, e)

    def error(self, rid: Any, code: str, message: str) -> None:
        self.send({"id": rid, "ok": False, "error": {"code": code, "message": _bounded(message)}})

    def refuse(self, rid: Any, code: str, message: str) -> None:
        """Send a last error, then let the peer read it before the socket closes.

        Closing with unread input makes the kernel send a reset, which can destroy the error frame
        before the peer reads it; so half-close and discard the peer's input for a moment first.
        """
        self.error(rid, code, message)
        _linger(self.sock, self.peer)

    def _write_events(self) -> None:
        while True:
            event = self.events.get()
            if event is None:
                return
            try:
                self.send(event)
            except wire.WireError as e:
                log.warning("event %s of job %s too large to send (%s): sent without its details", event.get("event"),
                            event.get("job"), e.message)  # fmt: skip
                self.send({k: event[k] for k in ("event", "job", "status") if k in event})

    def close(self) -> None:
        self.gone.set()
        with self.order_lock:
            self.closed = True
            unfinished = [j for j in self.jobs.values() if not j.done]
        for job in unfinished:
            job.cancel()
        if unfinished:
            log.info("client %s left: cancelled %d unfinished job(s)", self.peer, len(unfinished))
        self.events.put(None)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            log.debug("socket of %s already shut down", self.peer)
        self.sock.close()


def _linger(sock: socket.socket, peer: str) -> None:
    """After a last frame: half-close and discard the peer's input for a moment, then the caller closes.

    Closing with unread input makes the kernel send a reset, which can destroy the last frame before
    the peer reads it.
    """
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(LINGER_SECONDS)
        drained = 0
        while drained < LINGER_BYTES:
            chunk = sock.recv(65536)
            if not chunk:
                break
            drained += len(chunk)
    except OSError as e:
        log.debug("linger on %s ended: %s", peer, e)


class _HelloReader:
    """The socket as a reader with one deadline for the whole hello, not a timeout per read."""

    def __init__(self, sock: socket.socket, seconds: float) -> None:
        self.sock = sock
        self.end = time.monotonic() + seconds

    def readinto(self, view: memoryview) -> int:
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("the hello deadline passed")
        self.sock.settimeout(left)
        return self.sock.recv_into(view)


class _PayloadBudget:
    """Payload bytes being received or answered, across all connections: one total, not one per connection."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> None:
        with self._lock:
            if self.used + n > self.total:
                raise wire.WireError(
                    "busy",
                    f"the backend is already receiving {self.used:,} bytes for other requests and takes at most "
                    f"{self.total:,} at once; retry this {n:,}-byte request when they finish",
                )
            self.used += n

    def give(self, n: int) -> None:
        with self._lock:
            self.used -= n


class _Claim:
    """What one request took from the budget, given back once when the request is answered."""

    def __init__(self, budget: _PayloadBudget) -> None:
        self.budget = budget
        self.n = 0

    def take(self, n: int) -> None:
        self.budget.take(n)
        self.n += n

    def release(self, *_: object) -> None:
        n, self.n = self.n, 0
        if n:
            self.budget.give(n)


def _bounded(message: str) -> str:
    if len(message) <= MAX_MESSAGE:
        return message
    return f"{message[:MAX_MESSAGE]}… ({len(message) - MAX_MESSAGE:,} more characters cut)"


def _field(header: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    value = header.get(name, default)
    if value is ...:
        raise SegAnyError("bad_request", f"op {wire.quote(header.get('op'))} needs the field {name!r}")
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if value is not default and (not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds)):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise SegAnyError("bad_request", f"field {name!r} must be {want}, got {type(value).__name__}")
    return value


class Server:
    """Start with start() (non-blocking) or serve() (blocking); stop() from anywhere."""

    def __init__(
        self,
        engine: Engine,
        host: str = "127.0.0.1",
        port: int = 0,
        state_file: str | Path | None = None,
        parent_pid: int | None = None,
        limits: wire.Limits | None = None,
        hello_seconds: float = HELLO_SECONDS,
        max_connections: int = MAX_CONNECTIONS,
        max_hellos: int = MAX_HELLOS,
        payload_budget: int | None = None,
    ) -> None:
        self.engine = engine
        self.host = host
        self.port = port
        self.state_file = Path(state_file) if state_file is not None else default_state_file()
        self.parent_pid = parent_pid
        self.limits = limits or wire.Limits()
        self.token = secrets.token_hex(32)
        self.hello_seconds = hello_seconds
        self.max_connections, self.max_hellos = max_connections, max_hellos
        self._conn_slots = threading.BoundedSemaphore(max_connections)
        self._hello_slots = threading.BoundedSemaphore(max_hellos)
        self._refusal_slots = threading.BoundedSemaphore(MAX_REFUSALS)
        self._refused = 0  # connections turned away (only the accept thread counts)
        self._budget = _PayloadBudget(payload_budget or self.limits.max_payload + PAYLOAD_SPARE)
        self._conns: set[_Conn] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=PARALLEL_OPS, thread_name_prefix="segany-op")
        self._wake_r, self._wake_w = socket.socketpair()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._ops: dict[str, Callable[[_Conn, dict[str, Any], dict[str, np.ndarray]], Reply]] = {
            "hello": self._op_hello,
            "info": self._op_info,
            "echo": self._op_echo,
            "scene.add": self._op_scene_add,
            "scene.load": self._op_scene_load,
            "scene.drop": self._op_scene_drop,
            "scene.list": self._op_scene_list,
            "job.submit": self._op_job_submit,
            "job.status": self._op_job_status,
            "job.cancel": self._op_job_cancel,
            "job.result": self._op_job_result,
            "query": self._op_query,
            "everything": self._op_everything,
            "shutdown": self._op_shutdown,
        }

    # lifecycle ----------------------------------------------------------------------------
    def start(self) -> tuple[str, int]:
        """Bind, write the state file, start the accept loop; returns (host, port)."""
        self._check_state_dir()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.create_server((self.host, self.port), family=family, backlog=64)
        if not ipaddress.ip_address(
            socket.gethostbyname(self.host) if family == socket.AF_INET else self.host
        ).is_loopback:
            log.warning("listening on %s, beyond this machine: only the token keeps others out", self.host)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._write_state()
        self._spawn(self._accept_loop, "segany-accept")
        if self.parent_pid is not None:
            self._spawn(self._watch_parent, "segany-parent-watch")
        log.info("SegAny backend listening on %s:%d (state file %s)", self.host, self.port, self.state_file)
        return self.host, self.port

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def wait(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def stop(self) -> None:
        """Close the listener and every connection (their jobs are cancelled), remove the state file."""
        if self._stopping.is_set():
            self._stopped.wait()
            return
        self._stopping.set()
        self._wake_w.send(b"x")
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            conn.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._remove_state()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=5)
        self._wake_r.close()
        self._wake_w.close()
        self._stopped.set()

    def _check_state_dir(self) -> None:
        """The state file goes only where no other user can write: there they could swap in their own."""
        self.state_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        problem = state_dir_problem(self.state_file.parent)
        if problem is not None:
            raise SegAnyError("io_error", problem)

    def _write_state(self) -> None:
        """Atomically, mode 0600 from the first byte: a reader sees the old file or the whole new one."""
        doc = {
            "host": self.host,
            "port": self.port,
            "pid": os.getpid(),
            "token": self.token,
            "version": __version__,
            "protocol": wire.VERSION,
        }
        tmp = self.state_file.with_name(f".{self.state_file.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(doc, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.state_file)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _remove_state(self) -> None:
        """Remove the state file only if it is still ours (a newer server may have replaced it)."""
        try:
            if json.loads(self.state_file.read_text(encoding="utf-8")).get("token") == self.token:
                self.state_file.unlink()
        except (OSError, ValueError) as e:
            log.debug("state file %s not removed: %s", self.state_file, e)

    def _watch_parent(self) -> None:
        # A direct child also notices re-parenting, which is immune to the parent's pid being reused.
        direct = os.name == "posix" and os.getppid() == self.parent_pid
        while not self._stopping.wait(0.5):
            if (direct and os.getppid() != self.parent_pid) or not pid_alive(self.parent_pid):
                log.info("parent process %s is gone: shutting down", self.parent_pid)
                threading.Thread(target=self.stop, name="segany-stop", daemon=True).start()
                return

    # connections --------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        assert self._listener is not None
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        failures = 0
        try:
            while not self._stopping.is_set():
                for key, _ in sel.select():
                    if key.fileobj is self._wake_r:
                        return
                    try:
                        sock, addr = self._listener.accept()
                    except OSError as e:
                        # Out of file descriptors the listener stays readable: without a pause this loop
                        # spins and logs each try. One line per outage, and waits that double.
                        if not failures:
                            log.warning("accept failed: %s; retrying with back-off (quiet until it works)", e)
                        failures += 1
                        self._stopping.wait(min(ACCEPT_BACKOFF[1], ACCEPT_BACKOFF[0] * 2 ** min(failures, 30)))
                        continue
                    if failures:
                        log.warning("accept works again after %d failed tries", failures)
                        failures = 0
                    self._admit(sock, f"{addr[0]}:{addr[1]}")
        finally:
            sel.close()
            self._listener.close()

    def _admit(self, sock: socket.socket, peer: str) -> None:
        """Serve the connection if a slot is free, else turn it away with `busy` (on the accept thread)."""
        if not self._conn_slots.acquire(blocking=False):
            why = f"the backend already serves {self.max_connections} connections; close one (another client) and retry"
        elif not self._hello_slots.acquire(blocking=False):
            self._conn_slots.release()
            why = f"{self.max_hellos} connections are already waiting to say hello; retry in a few seconds"
        else:
            try:
                threading.Thread(target=self._serve_conn, args=(sock, peer), name="segany-conn", daemon=True).start()
            except RuntimeError as e:  # no thread to be had: drop this peer, keep accepting
                log.warning("cannot serve %s: %s", peer, e)
                self._hello_slots.release()
                self._conn_slots.release()
                sock.close()
            return
        self._refused += 1
        if math.log10(self._refused).is_integer():  # the 1st, 10th, 100th…: a flood cannot flood the log
            log.warning("turned %d connection(s) away so far; the latest (%s): %s", self._refused, peer, why)
        frame = wire.encode({"id": None, "ok": False, "error": {"code": "busy", "message": why}})
        if self._refusal_slots.acquire(blocking=False):
            threading.Thread(
                target=self._turn_away, args=(sock, peer, frame), name="segany-refuse", daemon=True
            ).start()
            return
        # Too many refusals lingering already: a best-effort frame, then close (the peer may see a reset).
        try:
            sock.setblocking(False)
            sock.send(b"".join(frame))
        except OSError as e:
            log.debug("refusal to %s not sent: %s", peer, e)
        sock.close()

    def _turn_away(self, sock: socket.socket, peer: str, frame: list[bytes | bytearray | memoryview]) -> None:
        try:
            sock.settimeout(LINGER_SECONDS)
            for buf in frame:
                sock.sendall(buf)
            _linger(sock, peer)
        except OSError as e:
            log.debug("refusal to %s not sent: %s", peer, e)
        finally:
            sock.close()
            self._refusal_slots.release()

    def _serve_conn(self, sock: socket.socket, peer: str) -> None:
        hello_slot = True
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(sock, peer)
            with self._lock:
                if self._stopping.is_set():
                    conn.close()
                    return
                self._conns.add(conn)
            try:
                authenticated = self._authenticate(conn)
                self._hello_slots.release()
                hello_slot = False
                if authenticated:
                    conn.start_events()
                    self._read_requests(conn)
            finally:
                with self._lock:
                    self._conns.discard(conn)
                conn.close()
        finally:
            if hello_slot:
                self._hello_slots.release()
            self._conn_slots.release()

    def _authenticate(self, conn: _Conn) -> bool:
        reason = "the first frame must be a hello carrying the token from the backend's state file"
        rid = None
        try:
            frame = wire.read_frame(_HelloReader(conn.sock, self.hello_seconds), PREAUTH_LIMITS)
        except wire.WireError as e:
            frame, reason = None, f"{reason} ({e.message})"
        except TimeoutError:
            frame, reason = None, f"{reason} (none came within {self.hello_seconds:g} s)"
        except OSError:
            return False
        if frame is not None:
            header, _ = frame
            rid = header.get("id") if isinstance(header.get("id"), (int, str)) else None
            token = header.get("token")
            if header.get("op") == "hello" and isinstance(token, str):
                if hmac.compare_digest(token.encode("utf-8"), self.token.encode("utf-8")):
                    conn.sock.settimeout(None)
                    conn.send({"id": rid, "ok": True, **self._hello_fields()})
                    return True
                reason = "wrong token: read it from the backend's state file (only its user can)"
        conn.refuse(rid, "unauthorized", reason)
        return False

    def _read_requests(self, conn: _Conn) -> None:
        while not self._stopping.is_set():
            claim = _Claim(self._budget)
            try:
                frame = wire.read_frame(conn.sock, self.limits, reserve=claim.take)
            except wire.WireError as e:
                claim.release()
                if e.in_sync:  # the whole frame was read: answer it and go on
                    conn.error(_rid(e.header), e.code, e.message)
                    continue
                # The stream position is lost after a bad frame: answer, then close.
                conn.refuse(_rid(e.header), e.code, e.message)
                return
            except OSError:
                return
            if frame is None:
                # A half-closed client still gets the replies to what it sent.
                conn.eof = True
                wait(list(conn.inflight), timeout=INFLIGHT_GRACE)
                return
            header, arrays = frame
            op = header.get("op")
            if op in SLOW_OPS:
                try:
                    future = self._pool.submit(self._answer, conn, header, arrays)
                except RuntimeError:
                    claim.release()
                    return  # the pool is shut down: the server is stopping
                conn.inflight.add(future)
                future.add_done_callback(conn.inflight.discard)
                future.add_done_callback(claim.release)
            else:
                try:
                    self._answer(conn, header, arrays)
                finally:
                    claim.release()

    def _answer(self, conn: _Conn, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        rid = _rid(header)
        op = header.get("op")
        try:
            if "id" in header and rid is None:
                raise SegAnyError("bad_request", "the request id must be an integer or a string")
            handler = self._ops.get(op) if isinstance(op, str) else None
            if handler is None:
                raise SegAnyError("bad_request", f"unknown op {wire.quote(op)}; known ops: {sorted(self._ops)}")
            reply = handler(conn, header, arrays)
            if reply is not None:
                fields, out = reply
                conn.send({"id": rid, "ok": True, **jsonable(fields)}, out)
        except SegAnyError as e:
            conn.error(rid, e.code, e.message)
        except wire.WireError as e:
            # too_large: the client asked for more than it can receive; anything else is our bug.
            code = "too_large" if e.code == "too_large" else "internal"
            conn.error(rid, code, f"the reply to {wire.quote(op)} could not be sent: {e.message}")
        except Exception as e:
            log.error("op %s failed:\n%s", wire.quote(op), traceback.format_exc())
            frame = traceback.extract_tb(e.__traceback__)[-1]
            where = f"{Path(frame.filename).name}:{frame.lineno}"
            conn.error(rid, "internal", f"{type(e).__name__}: {e} (op {wire.quote(op)}, at {where})")

    # ops ----------------------------------------------------------------------------------
    def _hello_fields(self) -> dict[str, Any]:
        return {
            "server": "segany",
            "version": __version__,
            "protocol": wire.VERSION,
            "pid": os.getpid(),
            "limits": self.limits.to_dict(),
        }

    def _op_hello(self, conn: _Conn, h: dict[str, Any], a: dict[str, np.ndarray]) -> Reply:
        return self._hello_fields(), None

    def _op_info(self, conn: _Conn, h: dict[str, Any], a: dict[str, np.ndarray]) -> Reply:
        with self._lock:
            clients = len(self._conns)
        info = {**self.engine.info(), "method_details": self.engine.methods()}
        return {**info, "server": {**self._hello_fields(), "clients": clients}}, None

    def _op_echo(self, conn: _Conn, h: dict[str, Any], a: dict[str, np.ndarray]) -> Reply:
        """Diagnostics: measures the link (the add-on's connection test, `segany bench protocol`)."""
        if _field(h, "return_arrays", bool, True):
            return {"time": time.time()}, a
        return {"time": time.time(), "received": {k: int(v.nbytes) for k, v in a.items()}}, None

    def _scene_reply(self, sid: str) -> dict[str, Any]:
        scene = self.engine.get_scene(sid)
        return {"scene_id": sid, "kind": scene.kind, "n_elements": scene.n_elements, "warnings": list(scene.warnings)}

    def _op_scene_add(self, conn: _Conn, h: dict[str, Any], a: dict[str, np.ndarray]) -> Reply:
        return self._scene_reply(self.engine.add_arrays(_field(h, "kind", str), a)), None

    def _op_scene_load(self, conn: _Conn, h: dict[str, Any], a: dict[str, np.ndarray]) -> Reply:
        allow = _field(h, "allow_references", bool, False)
        return self._scene_reply(self.engine.load_scene(_field(h, "path", str), allow_references=allow)), None

    def _op_scene_drop(self, conn: _Conn, h: dict[str, Any], a: dict[str, np.ndarray]) -> Reply:
        self.engine.drop_scene(_field(h, "scene_id", str))
        return {}, None

    def _op_scene_list(self, conn: _Conn, h: dict[str, Any], a: dict[str, np.ndarray]) -> Reply:
        return {"scenes": self.engine.scenes()}, None

    def _op_job_submit(self, conn: _Conn, h: dict[str, Any], a: dict[str, np.ndarray]) -> Reply:
        method = _field(h, "method", str)
        sid = _field(h, "scene_id", str)
        prior = _field(h, "prior", (str, type(None)), None)
        options = _field(h, "options", dict, {})
        prior_options = _field(h, "prior_options", dict, {})
        finals: set[str] = set()

        def forward(job: Job) -> None:
            with conn.order_lock:
                if conn.closed or job.id in finals:
                    return
                if job.done:
                    finals.add(job.id)
                    conn.events.put(_final_event(job))
                else:
                    event = {"event": "progress", "job": job.id, "status": job.status}
                    conn.events.put({**event, "fraction": job.fraction, "message": job.message})

        with conn.order_lock:
            job = self.engine.submit(method, sid, prior, options, prior_options, on_progress=forward)
            conn.jobs[job.id] = job
            # Replying under order_lock: the client learns the job id before any of its events.
            conn.send({"id": _rid(h), "ok": True, "job": job.id, "status": job.status})
        return None

    def _op_job_status(self, conn: _Conn, h: dict[str, Any], a: dict[str, np.ndarray]) -> Reply:
        return self.engine.job(_field(h, "job", str)).to_dict(), None

    def _op_job_cancel(self, conn: _Conn, h: dict[str, Any], a: dict[str, np.ndarray]) -> Reply:
        job = self.engine.job(_field(h, "job", str))
        job.cancel()
        return job.to_dict(), None

    def _op_job_result(self, conn: _Conn, h: dict[str, Any], a: dict[str, np.ndarray]) -> Reply:
        job = self.engine.job(_field(h, "job", str))
        until = time.monotonic() + max(0.0, min(float(_field(h, "wait", (int, float), 0.0)), 3600.0))
        # Wait in slices so a waiter whose client left frees its pool thread at once.
        while not job.wait(max(0.0, min(0.25, until - time.monotonic()))) and not (conn.closed or conn.eof):
            if time.monotonic() >= until:
                break
        return job.result(timeout=0), None

    def _within_deadline(
        self, conn: _Conn, h: dict[str, Any], a: dict[str, np.ndarray], what: str, call: Callable[..., Any]
    ) -> Any:
        """`call(method, scene_id, query, prior=…)` under the request's deadline: the fields `query` and
        `everything` share."""
        query = {**_field(h, "query", dict, {}), **a}
        prior = _field(h, "prior", (str, type(None)), None)
        seconds = _field(h, "deadline", (int, float), QUERY_SECONDS)
        if not seconds > 0:
            raise SegAnyError(
                "bad_request", f"field 'deadline' must be seconds > 0 (at most {MAX_QUERY_SECONDS:g} used)"
            )
        method, sid = _field(h, "method", str), _field(h, "scene_id", str)
        # Held on one of PARALLEL_OPS shared threads: the deadline, or the client leaving, frees it.
        with deadline.within(min(seconds, MAX_QUERY_SECONDS), what, conn.gone):
            return call(method, sid, query, prior=prior)

    def _op_query(self, conn: _Conn, h: dict[str, Any], a: dict[str, np.ndarray]) -> Reply:
        sel = self._within_deadline(conn, h, a, "query", self.engine.query)
        out = {k: np.asarray(v) for k, v in sel.extras.items()}
        out["scores"] = np.asarray(sel.scores, dtype=np.float32)
        return {"threshold": float(sel.threshold), "n": int(out["scores"].shape[0])}, out

    def _op_everything(self, conn: _Conn, h: dict[str, Any], a: dict[str, np.ndarray]) -> Reply:
        parts = self._within_deadline(conn, h, a, "everything", self.engine.everything)
        out = {k: np.asarray(v) for k, v in parts.extras.items()}
        out["labels"] = np.asarray(parts.labels, dtype=np.int32)
        out["colours"] = np.asarray(parts.colours, dtype=np.float32)
        return {"n": int(out["labels"].shape[0]), "parts": int(out["colours"].shape[0])}, out

    def _op_shutdown(self, conn: _Conn, h: dict[str, Any], a: dict[str, np.ndarray]) -> Reply:
        conn.send({"id": _rid(h), "ok": True})
        threading.Thread(target=self.stop, name="segany-stop", daemon=True).start()
        return None


def _final_event(job: Job) -> dict[str, Any]:
    event = "done" if job.status == "done" else ("cancelled" if job.status == "cancelled" else "failed")
    out: dict[str, Any] = {"event": event, "job": job.id, "status": job.status}
    if job.error is not None:
        out["error"] = {"code": job.error.code, "message": _bounded(job.error.message)}
    else:
        out["result"] = jsonable(job.to_dict())
    return out


def _rid(header: dict[str, Any] | None) -> int | str | None:
    rid = (header or {}).get("id")
    return rid if isinstance(rid, (int, str)) and not isinstance(rid, bool) else None


def serve(
    engine: Engine,
    host: str = "127.0.0.1",
    port: int = 0,
    state_file: str | Path | None = None,
    parent_pid: int | None = None,
    ready: ReadyFn | None = None,
    limits: wire.Limits | None = None,
) -> None:
    """Run until shutdown (op, SIGTERM, Ctrl+C or parent death); closes the engine at the end."""
    server = Server(engine, host, port, state_file, parent_pid, limits)
    server.start()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: threading.Thread(target=server.stop, daemon=True).start())
    if ready is not None:
        ready(server.host, server.port)
    try:
        while not server.wait(0.5):
            pass
    finally:
        server.stop()
        engine.close()


def main(argv: list[str] | None = None) -> None:
    """`python -m segany.server`: the server without the CLI's imports (what tests and Blender start)."""
    parser = argparse.ArgumentParser(prog="python -m segany.server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state-file", type=Path, default=None)
    parser.add_argument("--parent-pid", type=int, default=None)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.exit(2, "error [bad_request] --port must be 0..65535 (0: the OS picks one)\n")
    if args.parent_pid is not None and not 0 < args.parent_pid < 2**31:  # pid_t is a signed 32-bit integer
        parser.exit(2, f"error [bad_request] --parent-pid must be a process id, 1..{2**31 - 1}\n")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    def announce(host: str, port: int) -> None:
        print(json.dumps({"ready": True, "host": host, "port": port, "pid": os.getpid()}), flush=True)

    tune_cpu_allocator()
    try:
        engine = Engine(cache_dir=args.cache_dir, device=args.device, checkpoints=checkpoints_from_env())
    except SegAnyError as exc:  # an unknown or absent --device: one line, as the CLI prints it
        parser.exit(2, f"error [{exc.code}] {exc.message}\n")
    serve(engine, args.host, args.port, args.state_file, args.parent_pid, ready=announce)


if __name__ == "__main__":
    main()
