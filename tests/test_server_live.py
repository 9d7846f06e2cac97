"""A real backend process over real loopback sockets: auth, ops, errors, concurrency, jobs, fuzzing.

One harness process (tests/server_harness.py: `python -m segany.server` plus stand-in methods, because
no real method has a job whose progress and length these tests can choose) serves the module. A job
that must still be running is a `test_gate` job whose gate is not open yet, never a long sleep.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import threading
from pathlib import Path

import numpy as np
import pytest
import server_harness
import wire_fuzz
from budgets import TINY
from hypothesis import given
from waiting import wait_until

from segany.addon import wire
from segany.addon.client import BackendUnavailable, Client, Job, RemoteError, RequestTimeout
from segany.samples import sample_mesh
from segany.scene import scene_arrays
from segany.server import MAX_MESSAGE

LIVE_BATCH = 15  # frames per example, each on its own connection
LIVE_EXAMPLES = 40  # 600 frames in every run, the same ones each time
SOAK_EXAMPLES = 400  # 6,000 frames in the soak tier (pytest -m soak)


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("live")
    state = tmp / "run" / "server.json"
    proc = server_harness.start(state, tmp / "cache")
    yield proc, state
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=30)
    assert not state.exists(), "a clean shutdown removes the state file"


@pytest.fixture()
def client(backend) -> Client:
    with server_harness.connect(backend[1]) as c:
        yield c


def _points(n: int = 100, seed: int = 0) -> dict[str, np.ndarray]:
    return {"xyz": np.random.default_rng(seed).random((n, 3), dtype=np.float32)}


def _raw_exchange(state: Path, data: bytes, hello: bool) -> list[dict]:
    """Send bytes on a fresh connection (after a good hello if asked), half-close, read every reply."""
    doc = json.loads(state.read_text())
    frames = []
    with socket.create_connection(("127.0.0.1", doc["port"]), timeout=20) as sock:
        if hello:
            wire.send_frame(sock, {"op": "hello", "id": 0, "token": doc["token"]})
            header, _ = wire.read_frame(sock)
            assert header["ok"]
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may close first (it refused the frame): its answer is still readable
        while True:
            try:
                frame = wire.read_frame(sock)
            except ConnectionResetError:
                break
            if frame is None:
                break
            frames.append(frame[0])
    return frames


def test_state_file_is_private_and_complete(backend) -> None:
    proc, state = backend
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o600
    doc = json.loads(state.read_text())
    assert doc["pid"] == proc.pid and doc["host"] == "127.0.0.1" and len(doc["token"]) == 64
    assert {"port", "version", "protocol"} <= set(doc)


@pytest.mark.parametrize(
    "first",
    [
        {"op": "info", "id": 1},
        {"op": "hello", "id": 1},
        {"op": "hello", "id": 1, "token": "0" * 64},
        {"op": "hello", "id": 1, "token": 12345},
        {"op": "hello", "id": 1, "token": "é" * 64},
    ],
)
def test_without_the_right_token_only_a_refusal(backend, first: dict) -> None:
    follow = b"".join(bytes(b) for b in wire.encode({"op": "info", "id": 2}))
    data = b"".join(bytes(b) for b in wire.encode(first)) + follow
    frames = _raw_exchange(backend[1], data, hello=False)
    assert len(frames) == 1, frames
    assert frames[0]["ok"] is False and frames[0]["error"]["code"] == "unauthorized"
    assert set(frames[0]) == {"id", "ok", "error"}, "a refusal tells nothing about the server"


def test_garbage_and_big_first_frames_are_refused(backend) -> None:
    for data in (b"GET / HTTP/1.1\r\n\r\n" * 3, wire.PREAMBLE.pack(wire.MAGIC, 1, 0, 2, 1 << 40) + b"{}"):
        frames = _raw_exchange(backend[1], data, hello=False)
        assert [f["error"]["code"] for f in frames] == ["unauthorized"]


def test_wrong_token_from_the_client_class(backend) -> None:
    doc = json.loads(backend[1].read_text())
    with pytest.raises(RemoteError) as info:
        Client("127.0.0.1", doc["port"], "f" * 64)
    assert info.value.code == "unauthorized"


def test_ops_and_their_errors(client: Client, tmp_path: Path) -> None:
    assert client.info()["server"]["protocol"] == wire.VERSION
    added = client.add_scene("points", _points())
    sid = added["scene_id"]
    assert added["kind"] == "points" and added["n_elements"] == 100
    assert client.add_scene("points", _points())["scene_id"] == sid, "same content, same id"
    assert sid in [s["scene_id"] for s in client.scenes()]
    for call, code in [
        (lambda: client.request("no.such.op"), "bad_request"),
        (lambda: client.request("scene.add"), "bad_request"),
        (lambda: client.request("scene.add", kind=5), "bad_request"),
        (lambda: client.add_scene("points", {"xyz": np.zeros((4, 2), np.float32)}), "invalid_array"),
        (lambda: client.add_scene("points", {"xyz": np.full((4, 3), np.nan, np.float32)}), "invalid_geometry"),
        (lambda: client.add_scene("teapot", _points()), "bad_request"),
        (lambda: client.add_scene("splats", {}), "invalid_array"),  # the live soak fuzz found this `internal`
        (lambda: client.load_scene(tmp_path / "missing.ply"), "not_found"),
        (lambda: client.drop_scene("nope"), "not_found"),
        (lambda: client.query("test_sleep", "nope", {}), "not_found"),
        (lambda: client.query("no_method", sid, {}), "not_found"),
        (lambda: client.job_status("j999999"), "not_found"),
        (lambda: client.submit("no_method", sid), "not_found"),
    ]:
        with pytest.raises(RemoteError) as info:
            call()
        assert info.value.code == code, info.value
    assert client.alive, "an error reply leaves the connection usable"
    client.drop_scene(sid)
    assert sid not in [s["scene_id"] for s in client.scenes()]


def test_a_file_is_read_alone_unless_the_client_allows_its_references(client: Client, tmp_path: Path) -> None:
    """scene.load over the wire: a glTF whose vertices live in another file is refused by default (the
    backend reads only the named file) and loads when the client passes allow_references."""
    from test_formats_readers import gltf_with_external_buffer

    path = gltf_with_external_buffer(tmp_path)
    with pytest.raises(RemoteError) as info:
        client.load_scene(path)
    assert info.value.code == "unsupported" and "allow" in info.value.message
    loaded = client.load_scene(path, allow_references=True)
    assert loaded["kind"] == "mesh" and loaded["n_elements"] == 3
    client.drop_scene(loaded["scene_id"])


def test_echo_round_trips_arrays(client: Client) -> None:
    arrays = {"f": np.arange(12, dtype=np.float16).reshape(3, 4), "b": np.array([True, False]), "e": np.zeros(0)}
    back = client.echo(arrays)
    for k, v in arrays.items():
        np.testing.assert_array_equal(back[k], v)
    assert client.echo(arrays, return_arrays=False) == {}


def test_too_large_is_refused_by_the_client_without_losing_the_connection(client: Client) -> None:
    client.send_limits = wire.Limits(max_payload=1000)
    with pytest.raises(RemoteError) as info:
        client.echo({"x": np.zeros(1000, np.float32)})
    assert info.value.code == "too_large"
    assert client.info()


def test_server_refuses_a_terabyte_claim_with_the_request_id(backend) -> None:
    head = b'{"op":"echo","id":77}'
    data = wire.PREAMBLE.pack(wire.MAGIC, wire.VERSION, 0, len(head), 1 << 40) + head
    frames = _raw_exchange(backend[1], data, hello=True)
    assert [(f["id"], f["error"]["code"]) for f in frames] == [(77, "too_large")]


def test_several_clients_at_once(backend) -> None:
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            with server_harness.connect(backend[1]) as c:
                sid = c.add_scene("points", _points(50 + seed, seed))["scene_id"]
                for _ in range(30):
                    c.ping()
                assert c.echo({"x": np.full(1000, seed, np.int32)})["x"][0] == seed
                assert sid in [s["scene_id"] for s in c.scenes()]
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors and not any(t.is_alive() for t in threads), errors


def test_one_client_many_threads(client: Client) -> None:
    results: list[int] = []

    def work(i: int) -> None:
        for j in range(20):
            x = np.full(10, i * 100 + j, np.int64)
            results.append(int(client.echo({"x": x})["x"][0]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert sorted(results) == sorted(i * 100 + j for i in range(4) for j in range(20))


def _next_event(job: Job) -> dict:
    return job.events.get(timeout=120)


def test_a_long_job_does_not_block_queries_and_can_be_cancelled(backend, client: Client, tmp_path: Path) -> None:
    """Queries are answered while a job provably runs: its gate never opens, so only the cancel ends it."""
    sid = client.add_scene("points", _points(64, 7))["scene_id"]
    client.prepare("test_sleep", sid, options={"seconds": 0.1}, timeout=120)
    seen: list[tuple[float, str]] = []
    job = client.submit("test_gate", sid, options={"gate": str(tmp_path)}, on_progress=lambda f, m: seen.append((f, m)))
    first = _next_event(job)
    assert first["event"] == "progress" and first["job"] == job.id and first["status"] == "running"
    with server_harness.connect(backend[1]) as other:
        for c in (client, other):
            sel = c.query("test_sleep", sid, {"weights": np.linspace(0, 1, 64, dtype=np.float32)})
            assert sel.scores.shape == (64,) and sel.threshold == 0.5 and sel.mask.sum() == 32
        assert other.job_status(job.id)["status"] == "running", "running before and after the queries: throughout"
    job.cancel()
    with pytest.raises(RemoteError) as info:
        job.result(timeout=120)
    assert info.value.code == "cancelled" and job.status == "cancelled"
    assert seen and all(0.0 <= f <= 1.0 for f, _ in seen)


def test_each_progress_report_arrives_in_order(client: Client, tmp_path: Path) -> None:
    """The job reports step 1 right after its first report (well inside the rate limit), then waits: the
    held-back report must still arrive, and so must each later step, in order, before the final event."""
    sid = client.add_scene("points", _points(24, 5))["scene_id"]
    server_harness.open_gate(tmp_path, 1)
    job = client.submit("test_gate", sid, options={"gate": str(tmp_path), "steps": 3})
    for step in (1, 2, 3):
        while True:
            event = _next_event(job)
            assert event["event"] == "progress", event
            if event.get("message") == f"step {step} of 3":
                break
        assert event["fraction"] == pytest.approx(step / 3)
        if step < 3:
            server_harness.open_gate(tmp_path, step + 1)
    assert _next_event(job)["event"] == "done" and job.result(timeout=120)["status"] == "done"


def test_a_request_timeout_leaves_the_client_usable(client: Client, tmp_path: Path, caplog) -> None:
    """The late reply is provably late: the server can answer only once the gate opens, after the timeout."""
    caplog.set_level(logging.DEBUG, logger="segany.client")
    sid = client.add_scene("points", _points(8, 11))["scene_id"]
    job = client.submit("test_gate", sid, options={"gate": str(tmp_path)})
    with pytest.raises(RequestTimeout):
        client.request("job.result", timeout=0.3, job=job.id, wait=3600)
    server_harness.open_gate(tmp_path, 1)
    wait_until(
        lambda: any("abandoned request" in r.getMessage() for r in caplog.records),
        what="the late reply to arrive and be dropped",
    )
    assert client.ping() > 0 and client.alive
    assert job.wait(120) and job.status == "done"


def test_a_real_iseg_prepare_over_the_wire(client: Client) -> None:
    """The real method end to end (tiny sizes): a progress event, the result, clicks. (That a job never
    blocks other requests is shown with a job held on a gate, above: a real prepare has no such hold.)"""
    mesh = sample_mesh(max_edge=0.3)
    sid = client.add_scene("mesh", scene_arrays(mesh))["scene_id"]
    job = client.submit("iseg", sid, options=TINY)
    assert _next_event(job)["event"] == "progress"
    result = job.result(timeout=600)
    assert result["status"] == "done" and result["method"] == "iseg"
    sel = client.query("iseg", sid, {"clicks": [[0, 1]]})
    assert sel.scores.shape == (len(mesh.vertices),) and sel.scores.dtype == np.float32
    assert np.isfinite(sel.scores).all() and 0.0 <= sel.threshold <= 1.0


def test_job_done_event_carries_the_result(client: Client) -> None:
    sid = client.add_scene("points", _points(32, 3))["scene_id"]
    job = client.submit("test_sleep", sid, options={"seconds": 0.3})
    result = job.result(timeout=60)
    assert result["status"] == "done" and result["job"] == job.id and result["scene_id"] == sid
    assert client.job_result(job.id)["status"] == "done"
    events = []
    while not job.events.empty():
        events.append(job.events.get())
    assert events[-1]["event"] == "done"
    fractions = [e["fraction"] for e in events if e["event"] == "progress"]
    assert fractions == sorted(fractions)


def test_a_client_that_leaves_mid_job_gets_its_job_cancelled(backend, client: Client, tmp_path: Path) -> None:
    sid = client.add_scene("points", _points(16, 9))["scene_id"]
    leaver = server_harness.connect(backend[1])
    job = leaver.submit("test_gate", sid, options={"gate": str(tmp_path)})  # never opened: only a cancel ends it
    _next_event(job)
    leaver.close()
    with pytest.raises(BackendUnavailable):
        job.result(timeout=120)
    wait_until(
        lambda: client.job_status(job.id)["status"] == "cancelled", what="the departed client's job to be cancelled"
    )


def _live_fuzz(examples: int):
    """The live-server fuzz with `examples` batches; derandomized, so every run sends the same frames."""

    @wire_fuzz.fixed_settings(examples)
    @given(batch=wire_fuzz.batches(LIVE_BATCH))
    def fuzz(backend, batch: list[bytes]) -> None:
        for i, frame in enumerate(batch):
            hello = i % 4 != 0  # most authenticate first, so the frame reaches the full parser and the ops
            frames = _raw_exchange(backend[1], frame, hello=hello)
            for f in frames:
                assert isinstance(f.get("ok"), bool) or f.get("event") in ("progress", "done", "failed", "cancelled"), f
                assert (f.get("error") or {}).get("code") != "internal", f
                assert len((f.get("error") or {}).get("message", "")) <= MAX_MESSAGE + 100, (
                    "a message quoted bulk input"
                )
            if not hello:
                assert len(frames) <= 1 and all(f["error"]["code"] == "unauthorized" for f in frames)

    return fuzz


test_fuzzed_frames_against_the_live_server = _live_fuzz(LIVE_EXAMPLES)
test_fuzzed_frames_against_the_live_server_soak = pytest.mark.soak(_live_fuzz(SOAK_EXAMPLES))


def test_after_fuzzing_the_server_is_alive_and_small(backend, client: Client) -> None:
    proc, _ = backend
    assert proc.poll() is None
    assert client.echo({"x": np.arange(5)})["x"].tolist() == [0, 1, 2, 3, 4]
    status = Path(f"/proc/{proc.pid}/status").read_text().splitlines()
    rss_kb = int(next(line.split()[1] for line in status if line.startswith("VmRSS")))
    assert rss_kb < 2_000_000, f"server RSS {rss_kb} kB after fuzzing"
    threads = int(next(line.split()[1] for line in status if line.startswith("Threads")))
    assert threads < 64, f"{threads} threads left after thousands of connections"


def test_shutdown_op_stops_the_server_and_removes_the_state_file(backend) -> None:
    proc, state = backend
    c = server_harness.connect(state)
    c.shutdown()
    assert proc.wait(timeout=60) == 0
    assert not state.exists()
    with pytest.raises(BackendUnavailable):
        Client.from_state_file(state)
