"""The backend's life seen from Blender, with the REAL backend process: start, reuse, crash (SIGKILL),
restart, stop, connect to a running one, and the status line when it cannot start."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
from conftest import BACKEND_PYTHON, PKG, TINY, drain_until, import_donut


def _prefs() -> object:
    import bpy

    return bpy.context.preferences.addons[PKG].preferences


def test_connect_fetches_the_catalogue_through_the_bridge(rt: object) -> None:
    import bpy
    from bl_ext.user_default.segany import preferences

    rt.methods = []
    rt.connect()
    drain_until(lambda: bool(rt.methods), timeout=30)
    assert "iseg" in [m["name"] for m in rt.methods]
    text, icon = preferences.status_line(rt, _prefs())
    assert icon == "CHECKMARK" and "pid" in text
    state = json.loads(Path(rt.backend.config.state_file).read_text())
    assert state["pid"] == rt.backend.pid
    assert Path(rt.backend.config.state_file).parent == Path(bpy.utils.extension_path_user(PKG))
    assert oct(Path(rt.backend.config.state_file).stat().st_mode & 0o777) == "0o600"


def test_a_second_backend_object_reuses_the_running_process(rt: object) -> None:
    from bl_ext.user_default.segany.backend_process import Backend

    other = Backend(rt.backend.config)
    other.ensure()
    assert other.status == "running" and "Reusing" in other.message and other.pid == rt.backend.pid
    other.client.close()


def test_crash_is_detected_and_restart_brings_a_new_backend(rt: object) -> None:
    import bpy
    from bl_ext.user_default.segany import preferences

    old = rt.backend.pid
    os.kill(old, signal.SIGKILL)
    # The timer's liveness check notices once the process is reaped or its socket closes: a killed process
    # with many threads takes a moment to become either, so wait for the noticing itself.
    drain_until(lambda: rt.backend.status == "dead", timeout=120)
    assert not rt.backend.alive()
    text, icon = preferences.status_line(rt, _prefs())
    assert rt.backend.status == "dead" and icon == "ERROR" and "Restart" in text
    assert bpy.ops.segany.backend_restart() == {"FINISHED"}
    drain_until(lambda: rt.backend.status == "running" and bool(rt.methods), timeout=120)
    assert rt.backend.pid != old and rt.backend.alive()


def test_an_interpreter_without_segany_gives_an_actionable_message(rt: object, tmp_path: Path) -> None:
    from bl_ext.user_default.segany.backend_process import Backend, BackendConfig
    from bl_ext.user_default.segany.client import BackendUnavailable

    base = getattr(sys, "_base_executable", "")
    assert base and Path(base).is_file(), "a venv's base interpreter is needed for this test"
    cfg = BackendConfig(python=base, state_file=tmp_path / "server.json", start_timeout=60)
    b = Backend(cfg)
    with pytest.raises(BackendUnavailable, match="Is segany installed"):
        b.ensure()
    assert b.status == "error" and "No module named" in b.message


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("python_path", "", "Set the backend interpreter"),
        ("python_path", "relative/python", "must be an absolute path"),
        ("python_path", "/nonexistent/bin/python", "does not exist"),
    ],
)
def test_preferences_status_line_says_what_is_wrong(rt: object, field: str, value: str, expected: str) -> None:
    from bl_ext.user_default.segany import preferences

    prefs = _prefs()
    saved = getattr(prefs, field)
    running = rt.backend.status
    try:
        setattr(prefs, field, value)
        rt.backend.status = "stopped"
        text, icon = preferences.status_line(rt, prefs)
        assert expected in text and icon == "ERROR"
    finally:
        setattr(prefs, field, saved)
        rt.backend.status = running
    assert rt.backend.config.python == BACKEND_PYTHON  # the update callback re-applied the setting


def test_connect_mode_uses_a_running_backend_and_leaves_it_running(rt: object, tmp_path: Path) -> None:
    """A backend started elsewhere (as through an SSH tunnel): host, port and its state file as token file."""
    from bl_ext.user_default.segany import preferences
    from bl_ext.user_default.segany.backend_process import Backend, pid_alive

    rt.backend.ensure()
    state = Path(rt.backend.config.state_file)
    prefs = _prefs()
    try:
        prefs.backend_mode, prefs.port, prefs.token_file = "CONNECT", json.loads(state.read_text())["port"], str(state)
        cfg = preferences.config_from(prefs)
        assert cfg.mode == "connect" and cfg.problem() is None
        remote = Backend(cfg)
        assert remote.ensure().info()["segany"] and "Connected" in remote.message
        remote.stop()
        assert pid_alive(rt.backend.pid) and rt.backend.alive()
        prefs.token_file = str(tmp_path / "missing.json")
        assert "does not exist" in preferences.config_from(prefs).problem()
        prefs.port = 0
        assert "Set the port" in preferences.config_from(prefs).problem()
    finally:
        prefs.backend_mode, prefs.port, prefs.token_file = "START", 0, ""
    assert rt.backend.config.mode == "start"


def test_stop_ends_the_process_and_removes_the_state_file(rt: object) -> None:
    from bl_ext.user_default.segany.backend_process import pid_alive

    rt.backend.ensure()
    pid, state = rt.backend.pid, Path(rt.backend.config.state_file)
    rt.backend.stop()
    assert not pid_alive(pid) and not state.exists() and rt.backend.status == "stopped"
    assert not rt.backend.alive()  # the next call that needs it starts a new one (ensure)


def test_device_cache_and_checkpoint_preferences_reach_the_backend(
    rt: object, fresh_scene: object, tmp_path: Path
) -> None:
    """Device and cache directory are the started backend's own (its info says so); a checkpoint path travels
    with each job (so a backend behind a tunnel gets it too): a broken SAM file is named in the error."""
    from bl_ext.user_default.segany import api

    prefs = _prefs()
    info = api.backend_info()
    assert info["device"] == "cpu" and Path(info["cache_dir"]) == Path(prefs.cache_dir)
    bad = tmp_path / "sam_vit_b.pth"
    bad.write_bytes(b"not a checkpoint")
    ob = import_donut()
    prefs.sam_checkpoint = str(bad)
    try:
        assert rt.backend.config.prior_options("sam") == {"checkpoint": str(bad)}
        with pytest.raises(api.RemoteError) as err:
            api.prepare(ob, "sa3d", prior="sam", options=TINY)
    finally:
        prefs.sam_checkpoint = ""
    assert err.value.code == "corrupt_file" and str(bad) in err.value.message
    assert rt.backend.config.checkpoints == {}
