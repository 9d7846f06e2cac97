"""Crashes and lifecycles with real processes: SIGKILL mid-job and mid-cache-write, restart, parent death.

The harness process is the real server with a stand-in method (see tests/server_harness.py for why);
the parent-death test starts the real `python -m segany.server` through the add-on's launcher.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import server_harness
from waiting import wait_until

from segany.addon.backend_process import pid_alive
from segany.addon.client import BackendUnavailable, Client, RemoteError, RequestTimeout
from segany.cache import Cache


def _scene(client: Client, seed: int) -> str:
    xyz = np.random.default_rng(seed).random((200, 3), dtype=np.float32)
    return client.add_scene("points", {"xyz": xyz})["scene_id"]


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_sigkill_mid_job_fails_pending_calls_at_once_and_a_restart_is_clean(tmp_path: Path) -> None:
    """A call in flight when the server dies fails with BackendUnavailable, not by its (hour-long) timeout."""
    state, cache, gate = tmp_path / "server.json", tmp_path / "cache", tmp_path / "gate"
    gate.mkdir()
    proc = server_harness.start(state, cache)
    try:
        old = json.loads(state.read_text())
        client = server_harness.connect(state)
        sid = _scene(client, 1)
        job = client.submit("test_gate", sid, options={"gate": str(gate)})  # never opened: runs until the kill
        assert job.events.get(timeout=120)["event"] == "progress"
        outcome: dict[str, BaseException] = {}

        def waiter() -> None:
            try:
                client.job_result(job.id, wait=3600)
            except BaseException as e:
                outcome["error"] = e

        t = threading.Thread(target=waiter)
        t.start()
        # The request is in flight once the client holds it unanswered (no public view of that exists).
        wait_until(lambda: len(client._pending) == 1, what="the waiter's request to be in flight")
    finally:
        _kill(proc)
    t.join(120)
    assert not t.is_alive(), "the pending call still waits: only its one-hour timeout would end it"
    error = outcome.get("error")
    assert isinstance(error, BackendUnavailable) and not isinstance(error, RequestTimeout), outcome
    assert "restart" in str(error)
    with pytest.raises(BackendUnavailable):
        job.result(timeout=120)  # the lost connection ends the wait, not the timeout
    with pytest.raises(BackendUnavailable):
        client.info()
    assert not client.alive
    with pytest.raises(BackendUnavailable, match="probably gone"):
        Client.from_state_file(state, timeout=5)

    proc2 = server_harness.start(state, cache)
    try:
        new = json.loads(state.read_text())
        assert new["token"] != old["token"] and new["pid"] == proc2.pid
        assert stat.S_IMODE(os.stat(state).st_mode) == 0o600
        with server_harness.connect(state) as fresh:
            assert fresh.scenes() == []
            with pytest.raises(RemoteError) as info:
                fresh.job_status(job.id)
            assert info.value.code == "not_found"
        with pytest.raises(RemoteError) as info:
            Client("127.0.0.1", new["port"], old["token"])
        assert info.value.code == "unauthorized"
    finally:
        proc2.terminate()
        assert proc2.wait(timeout=60) == 0
    assert not state.exists(), "SIGTERM is a clean shutdown: the state file goes"


def test_sigkill_during_a_cache_write_never_exposes_half_an_artifact(tmp_path: Path) -> None:
    """The harness holds the write after its tensors file (see server_harness.hold_cache_writes): the kill
    lands provably mid-write."""
    state, cache, signals = tmp_path / "server.json", tmp_path / "cache", tmp_path / "signals"
    signals.mkdir()
    proc = server_harness.start(state, cache, "--hold-cache-writes", str(signals))
    try:
        with server_harness.connect(state) as client:
            sid = _scene(client, 2)
            client.submit("test_sleep", sid, options={"seconds": 0.05, "state_mb": 8})
            held = Path(wait_until(lambda: (signals / "held").is_file() and (signals / "held").read_text(),
                                   what="the cache write to reach its hold"))  # fmt: skip
    finally:
        _kill(proc)
    method_dir = cache / "v1" / sid / "test_sleep"
    assert held.parent.parent == method_dir and held.parent.name.startswith(".tmp-") and held.is_file()
    assert [p for p in method_dir.iterdir() if not p.name.startswith(".tmp-")] == []
    assert Cache(cache).entries() == []

    proc2 = server_harness.start(state, cache)
    try:
        with server_harness.connect(state) as client:
            assert _scene(client, 2) == sid
            with pytest.raises(RemoteError) as info:
                client.query("test_sleep", sid, {})
            assert info.value.code == "not_prepared", "the half-written entry must not count as prepared"
            result = client.prepare("test_sleep", sid, options={"seconds": 0.05, "state_mb": 8}, timeout=120)
            assert result["message"] == "prepared", "recomputed, not read from the broken write"
            assert client.query("test_sleep", sid, {"value": 0.9}).mask.all()
        entries = Cache(cache).entries()
        assert len(entries) == 1 and Cache(cache).load(sid, "test_sleep", entries[0].key) is not None
    finally:
        proc2.terminate()
        proc2.wait(timeout=60)


LAUNCHER = """
import os, sys
from segany.addon.client import launch_backend
proc, client = launch_backend(sys.executable, sys.argv[1], ["--cache-dir", sys.argv[2], "--device", "cpu"],
                              parent_pid=os.getpid(), log_path=sys.argv[3])
print(proc.pid, flush=True)
client.close()
"""


def test_the_server_exits_when_its_parent_dies(tmp_path: Path) -> None:
    """A short-lived parent (standing in for Blender) starts the real server and exits."""
    state = tmp_path / "server.json"
    parent = subprocess.run(
        [sys.executable, "-c", LAUNCHER, str(state), str(tmp_path / "cache"), str(tmp_path / "server.log")],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert parent.returncode == 0, parent.stderr
    server_pid = int(parent.stdout.split()[-1])
    wait_until(lambda: not pid_alive(server_pid) and not state.exists(), what="the orphaned server to exit")
    assert "parent process" in (tmp_path / "server.log").read_text()
