"""The backend process seen from Blender: start it on demand, reuse a running one, notice a dead one,
restart it, stop it. Plain Python (no bpy) so tests drive it directly; it never blocks Blender's main
thread itself — the add-on calls `ensure` from its worker thread (see bridge.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .client import BackendUnavailable, Client, RemoteError, launch_backend

LOG_TAIL = 1500
CLIP_HOLDERS = ("clip_crops", "clip_sources")  # priors whose options hold a CLIP model's (`clip`)


@dataclass
class BackendConfig:
    """What the preferences say about the backend."""

    mode: str = "start"  # start: run `python -m segany.server`; connect: use a running one (SSH tunnel)
    python: str = ""  # absolute path of the backend's interpreter (a venv with segany installed)
    state_file: Path = field(default_factory=lambda: Path("segany_server.json"))
    log_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = 0
    token_file: str = ""
    cache_dir: str = ""
    device: str = "auto"
    checkpoints: dict[str, str] = field(default_factory=dict)
    start_timeout: float = 120.0

    def server_args(self) -> list[str]:
        """Extra `python -m segany.server` arguments (a list, never a shell string)."""
        args = ["--cache-dir", self.cache_dir] if self.cache_dir else []
        if self.device and self.device != "auto":
            args += ["--device", self.device]
        return args

    def prior_options(self, prior: str | None) -> dict[str, Any]:
        """Checkpoints travel with each job (prior_options), so a connected remote backend gets them too; the
        language sources that hold a CLIP model take the CLIP checkpoint in their `clip` options."""
        path = self.checkpoints.get(prior or "", "")
        if path:
            return {"checkpoint": path}
        clip = self.checkpoints.get("clip", "")
        return {"clip": {"checkpoint": clip}} if clip and prior in CLIP_HOLDERS else {}

    def problem(self) -> str | None:
        """What is wrong with this configuration, said so a person can fix it; None when it looks usable."""
        if self.mode == "connect":
            if not (0 < int(self.port) < 65536):
                return "Set the port of the running backend (the local end of your SSH tunnel)"
            if not self.token_file:
                return "Set the token file of the running backend (its state file, or a file with the token)"
            if not Path(self.token_file).expanduser().is_file():
                return f"The token file {self.token_file} does not exist; copy the backend's state file here"
            return None
        if not self.python:
            return (
                "Set the backend interpreter in Edit > Preferences > Add-ons > SegAny > Backend Python: "
                "the absolute path of the python in the venv where segany is installed"
            )
        if not os.path.isabs(self.python):
            return f"The backend interpreter must be an absolute path, not {self.python!r}"
        if not Path(self.python).is_file():
            return f"The backend interpreter {self.python} does not exist"
        return None


def read_token(path: str) -> str:
    """A token file is either a backend state file (JSON with "token") or a file holding just the token."""
    text = Path(path).expanduser().read_text(encoding="utf-8").strip()
    if text.startswith("{"):
        return str(json.loads(text)["token"])
    return text


def pid_alive(pid: int | None) -> bool:
    """Whether process `pid` still runs (zombies count as dead). Never signals it on Windows."""
    if pid is None:
        return True
    if pid <= 0:
        return False
    if sys.platform == "win32":
        import ctypes

        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


class Backend:
    """At most one backend process (ours, or one already running) and one client to it. Thread-safe."""

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.process: subprocess.Popen | None = None
        self.client: Client | None = None
        self.status = "stopped"  # stopped | starting | running | dead | error
        self.message = "Not started: it starts on the first Prepare or click"
        self._lock = threading.RLock()

    # state -------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        if self.process is not None:
            return self.process.pid
        if self.client is not None:
            return self.client.server.get("pid")
        return None

    def alive(self) -> bool:
        """True when we hold a working connection; marks the backend dead (with a message) when not.

        Never waits: while another thread starts or stops the backend it answers from the status, so
        Blender's main thread can call it from a timer or a panel.
        """
        if not self._lock.acquire(blocking=False):
            return self.status == "running"
        try:
            if self.client is None:
                return False
            if self.process is not None and self.process.poll() is not None:
                self._mark_dead(f"The backend process exited with code {self.process.returncode}")
                return False
            if not self.client.alive:
                self._mark_dead("The connection to the backend broke")
                return False
            return True
        finally:
            self._lock.release()

    def _mark_dead(self, why: str) -> None:
        tail = self.log_tail()
        self.status = "dead"
        self.message = f"{why}. Press Restart. " + (f"Last log lines: {tail}" if tail else "")
        self.client = None

    def log_tail(self) -> str:
        path = self.config.log_file
        if path is None or not Path(path).is_file():
            return ""
        data = Path(path).read_bytes()[-LOG_TAIL:]
        return data.decode("utf-8", "replace").strip()

    # lifecycle ---------------------------------------------------------------------------------
    def ensure(self) -> Client:
        """A live client: the current one, a running backend found in the state file, or a new process."""
        with self._lock:
            if self.alive():
                return self.client
            if self.config.mode == "connect":
                return self._connect_remote()
            reused = self._reuse()
            if reused is not None:
                return reused
            return self._start()

    def _connect_remote(self) -> Client:
        problem = self.config.problem()
        if problem:
            self.status, self.message = "error", problem
            raise BackendUnavailable(problem)
        try:
            client = Client(self.config.host, int(self.config.port), read_token(self.config.token_file))
        except (BackendUnavailable, RemoteError, OSError, ValueError, KeyError) as e:
            self.status = "error"
            self.message = f"Cannot reach the backend at {self.config.host}:{self.config.port}: {e}"
            raise BackendUnavailable(self.message) from None
        return self._connected(client, f"Connected to {self.config.host}:{self.config.port}")

    def _reuse(self) -> Client | None:
        """Attach to a backend that already wrote our state file and still answers (e.g. after a reload)."""
        path = Path(self.config.state_file)
        if not path.is_file():
            return None
        try:
            pid = int(json.loads(path.read_text(encoding="utf-8")).get("pid", -1))
        except (OSError, ValueError):
            return None
        if not pid_alive(pid):
            return None
        try:
            client = Client.from_state_file(path, timeout=10.0)
        except (BackendUnavailable, RemoteError):
            return None
        return self._connected(client, f"Reusing the running backend (pid {pid})")

    def _start(self) -> Client:
        problem = self.config.problem()
        if problem:
            self.status, self.message = "error", problem
            raise BackendUnavailable(problem)
        state = Path(self.config.state_file)
        state.parent.mkdir(parents=True, exist_ok=True)
        state.unlink(missing_ok=True)
        log_path = Path(self.config.log_file or state.with_suffix(".log"))
        log_path.unlink(missing_ok=True)
        self.config.log_file = log_path
        self.status, self.message = "starting", "Starting the backend (loading torch takes a few seconds)"
        try:
            self.process, client = launch_backend(
                self.config.python, state, self.config.server_args(), os.getpid(), log_path, self.config.start_timeout
            )
        except BackendUnavailable as e:  # before OSError: it is a ConnectionError
            self.status = "error"
            self.message = f"The backend did not start. Is segany installed for {self.config.python}? {e}"
            raise BackendUnavailable(self.message) from None
        except OSError as e:
            self.status = "error"
            self.message = f"Cannot run {self.config.python}: {e.strerror or e}. Check the backend interpreter path"
            raise BackendUnavailable(self.message) from None
        return self._connected(client, f"Running (pid {self.process.pid})")

    def _connected(self, client: Client, message: str) -> Client:
        self.client = client
        self.status, self.message = "running", message
        return client

    def stop(self) -> None:
        """Shut down our backend (politely, then terminate, then kill); only disconnect from a foreign one."""
        with self._lock:
            client, self.client = self.client, None
            proc, self.process = self.process, None
            if client is not None:
                try:
                    if proc is not None or self.config.mode == "start":
                        client.shutdown()
                    else:
                        client.close()
                except (BackendUnavailable, RemoteError, OSError):
                    client.close()
            if proc is not None:
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.terminate()
                    try:
                        proc.wait(timeout=3)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(timeout=3)
            self.status, self.message = "stopped", "Stopped"

    def restart(self) -> Client:
        self.stop()
        return self.ensure()
