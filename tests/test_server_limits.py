"""No peer can hold the server: hello deadline, connection caps, accept back-off, one payload budget,
bounded messages, query deadlines, frames numpy cannot shape, and a state directory others can write.

Most tests run a real Server and Engine in this process (they need its caps set small); the stand-in
method of tests/server_harness.py supplies a query that only a deadline ends (no real method has one
whose length a test chooses). The accept back-off needs a process with few file descriptors: a
harness subprocess.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import select
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import server_harness
from waiting import wait_until

from segany.addon import wire
from segany.addon.client import BackendUnavailable, Client, RemoteError, RequestTimeout
from segany.engine import Engine
from segany.errors import SegAnyError
from segany.server import MAX_MESSAGE, MAX_REFUSALS, PARALLEL_OPS, QUERY_SECONDS, Server

server_harness.register()


@pytest.fixture()
def make_server(tmp_path: Path):
    made: list[tuple[Server, Engine]] = []

    def make(**kwargs) -> Server:
        engine = Engine(cache_dir=tmp_path / f"cache{len(made)}", device="cpu")
        server = Server(engine, state_file=tmp_path / "run" / f"server{len(made)}.json", **kwargs)
        made.append((server, engine))
        server.start()
        return server

    yield make
    for server, engine in made:
        server.stop()
        engine.close()


def _client(server: Server, **kwargs) -> Client:
    return Client.from_state_file(server.state_file, timeout=120, **kwargs)


def _hello(server: Server) -> bytes:
    return b"".join(bytes(b) for b in wire.encode({"op": "hello", "id": 0, "token": server.token}))


def _read_all(sock: socket.socket) -> list[dict]:
    """Every frame until the server closes (the socket's timeout is only a guard against a hang)."""
    frames = []
    while True:
        try:
            frame = wire.read_frame(sock)
        except ConnectionResetError:
            return frames
        if frame is None:
            return frames
        frames.append(frame[0])


def test_a_trickled_hello_is_cut_off_by_one_deadline(make_server) -> None:
    """One byte per pace never lets a per-read timeout fire; a deadline for the whole hello does.

    The pace is the attack's, not a synchronisation: the test waits on the server's reply or closure."""
    server = make_server(hello_seconds=0.5)
    head = json.dumps({"op": "hello", "id": 1, "token": "t" * 3000}).encode()
    data = wire.PREAMBLE.pack(wire.MAGIC, wire.VERSION, 0, len(head), 0) + head
    with socket.create_connection(("127.0.0.1", server.port), timeout=120) as sock:
        sent = 0
        while sent < len(data) and not select.select([sock], [], [], 0.05)[0]:
            sock.sendall(data[sent : sent + 1])
            sent += 1
        assert sent < len(data), "the whole hello trickled in: the deadline never fired"
        frames = _read_all(sock)
    assert [f["error"]["code"] for f in frames] == ["unauthorized"]
    assert "none came within 0.5 s" in frames[0]["error"]["message"]


def test_a_connection_beyond_the_cap_is_told_busy(make_server) -> None:
    server = make_server(max_connections=3)
    clients = [_client(server) for _ in range(3)]
    with pytest.raises(RemoteError) as info:
        _client(server)
    assert info.value.code == "busy" and "3 connections" in info.value.message
    assert all(c.ping() > 0 for c in clients), "the refusal costs the served clients nothing"
    clients.pop().close()

    def admitted() -> Client | None:
        try:
            return _client(server)
        except RemoteError as e:
            assert e.code == "busy"
            return None  # the closed connection's slot is freed when its thread ends

    late = wait_until(admitted, what="a freed slot to admit a new client")
    assert late.ping() > 0
    for c in [*clients, late]:
        c.close()


def test_idle_peers_without_the_token_get_few_threads_and_a_clear_refusal(make_server) -> None:
    server = make_server(max_hellos=2, max_connections=8, hello_seconds=300)
    before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=120) for _ in range(2)]
    wait_until(lambda: len(server._conns) == 2, what="the two idle peers to be admitted")
    turned_away = [socket.create_connection(("127.0.0.1", server.port), timeout=120) for _ in range(40)]
    threads_while_idle = threading.active_count() - before
    for sock in turned_away:
        frames = _read_all(sock)
        assert [f["error"]["code"] for f in frames] == ["busy"], frames
        assert "waiting to say hello" in frames[0]["error"]["message"]
        sock.close()
    # Two idle peers hold one thread each; refusals linger on at most MAX_REFUSALS threads.
    assert threads_while_idle <= 2 + MAX_REFUSALS + 1, f"{threads_while_idle} threads for 42 idle peers"
    for sock in idle:
        sock.close()
    wait_until(lambda: not server._conns, what="the idle peers to be closed")
    with _client(server) as c:
        assert c.ping() > 0, "the slots come back"


def _fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_running_out_of_file_descriptors_backs_off_with_one_log_line(tmp_path: Path) -> None:
    """A server with a few spare descriptors, held by idle authenticated clients: the next connection
    waits in the backlog while accept fails. The log gets one line for the outage and one when it ends,
    not one per failed try (a spinning loop wrote thousands per second)."""
    state = tmp_path / "run" / "server.json"
    proc = server_harness.start(state, tmp_path / "cache", "--fd-headroom", "12")
    log_path = tmp_path / "server.log"
    held: list[socket.socket] = []
    try:
        doc = json.loads(state.read_text())
        hello = b"".join(bytes(b) for b in wire.encode({"op": "hello", "id": 0, "token": doc["token"]}))
        while "accept failed" not in log_path.read_text():
            assert len(held) < 40, "the server never ran out of descriptors"
            sock = socket.create_connection(("127.0.0.1", doc["port"]), timeout=120)
            held.append(sock)
            sock.sendall(hello)
            answered = wait_until(
                lambda s=sock: select.select([s], [], [], 0)[0] or "accept failed" in log_path.read_text(),
                what="a hello reply or the accept failure",
            )
            if answered and select.select([sock], [], [], 0)[0]:
                assert wire.read_frame(sock)[0]["ok"]
        waiting = held.pop()  # accepted only once descriptors are free again
        for sock in held:
            sock.close()
        header, _ = wire.read_frame(waiting)
        assert header["ok"], "the waiting connection is served once descriptors are free"
        waiting.close()
        log = log_path.read_text()
        assert log.count("accept failed") == 1, log[-3000:]
        assert log.count("accept works again after") == 1, log[-3000:]
    finally:
        for sock in held:
            sock.close()
        proc.terminate()
        proc.wait(timeout=60)


def test_payload_bytes_are_budgeted_across_connections(make_server) -> None:
    """A peer that claims a payload and sends half of it holds its claim; another connection's request
    beyond the budget is answered `busy` (its bytes read and dropped) and that connection goes on."""
    server = make_server(limits=wire.Limits(max_payload=1000), payload_budget=1500)
    with _client(server) as c:
        slow = socket.create_connection(("127.0.0.1", server.port), timeout=120)
        slow.sendall(_hello(server))
        assert wire.read_frame(slow)[0]["ok"]
        frame = b"".join(bytes(b) for b in wire.encode({"op": "echo", "id": 9}, {"x": np.ones(125, np.float64)}))
        slow.sendall(frame[:-500])
        wait_until(lambda: server._budget.used == 1000, what="the half-sent payload to be claimed")
        with pytest.raises(RemoteError) as info:
            c.echo({"x": np.zeros(100, np.float64)})
        assert info.value.code == "busy" and "retry" in info.value.message
        assert c.ping() > 0, "the refused connection goes on"
        slow.sendall(frame[-500:])
        assert wire.read_frame(slow)[1]["x"].sum() == 125
        slow.close()
        wait_until(lambda: server._budget.used == 0, what="the claim to be given back")
        assert c.echo({"x": np.zeros(100, np.float64)})["x"].shape == (100,)


def test_error_messages_never_quote_bulk_input(make_server) -> None:
    server = make_server()
    with _client(server) as c:
        with pytest.raises(RemoteError) as info:
            c.request("x" * 500_000)
        assert info.value.code == "bad_request" and len(info.value.message) <= MAX_MESSAGE + 100
        with pytest.raises(RemoteError) as info:
            c.request("echo", {"a": np.zeros(1)}, return_arrays="y" * 400_000)
        assert len(info.value.message) <= MAX_MESSAGE + 100
        assert c.alive and c.ping() > 0


def test_a_reply_the_client_cannot_receive_is_refused_as_too_large(make_server, monkeypatch) -> None:
    """The server measures each reply against the client's limits; one beyond them is an error reply."""
    server = make_server()
    monkeypatch.setattr("segany.server.REPLY_LIMITS", wire.Limits(max_payload=4096))
    with _client(server) as c:
        with pytest.raises(RemoteError) as info:
            c.echo({"x": np.zeros(1000, np.float64)})
        assert info.value.code == "too_large" and "echo" in info.value.message
        assert c.ping() > 0


@pytest.mark.parametrize("shape", [[0, 2**63 - 1], [2**40, 0, 2**40], [0, 2**31, 2**31]])
def test_an_empty_array_with_huge_sizes_is_a_bad_request(make_server, shape: list[int]) -> None:
    """numpy refuses such a shape; the reader used to die on it, leaving the peer without an answer."""
    server = make_server()
    head = json.dumps(
        {"op": "echo", "id": 5, "arrays": [{"name": "a", "dtype": "float32", "shape": shape, "offset": 0, "length": 0}]}
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=120) as sock:
        sock.sendall(_hello(server))
        assert wire.read_frame(sock)[0]["ok"]
        sock.sendall(wire.PREAMBLE.pack(wire.MAGIC, wire.VERSION, 0, len(head), 0) + head)
        frames = _read_all(sock)
    assert [(f["id"], f["error"]["code"]) for f in frames] == [(5, "bad_request")]
    with _client(server) as c:
        assert c.ping() > 0


def test_queries_stop_at_their_deadline_and_free_the_shared_threads(make_server) -> None:
    """More spinning queries than the server has threads for them: each ends with `timeout` at its
    deadline, and the server answers an ordinary query afterwards."""
    server = make_server()
    with _client(server) as c:
        sid = c.add_scene("points", {"xyz": np.random.default_rng(0).random((16, 3), dtype=np.float32)})["scene_id"]
        c.prepare("test_sleep", sid, options={"seconds": 0.0}, timeout=120)
        codes: list[str] = []

        def spin() -> None:
            try:
                c.query("test_sleep", sid, {"spin": True}, deadline=0.2)
            except RemoteError as e:
                codes.append(e.code)

        threads = [threading.Thread(target=spin) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert codes == ["timeout"] * 6
        assert c.query("test_sleep", sid, {"value": 0.7}).mask.all()
        for bad in (0, -1):
            with pytest.raises(RemoteError) as info:
                c.query("test_sleep", sid, {}, deadline=bad)
            assert info.value.code == "bad_request"
        assert c.query("test_sleep", sid, {}, deadline=1e9).mask.all(), "a long deadline is cut to the maximum"


def test_a_query_stops_when_its_client_would_have_given_up(make_server) -> None:
    """A client's timeout is its queries' deadline: spins from a client that gives up at once hold no
    thread for long, so a patient client's query, sent after them, is answered."""
    server = make_server()
    with _client(server) as c:
        sid = c.add_scene("points", {"xyz": np.random.default_rng(1).random((16, 3), dtype=np.float32)})["scene_id"]
        c.prepare("test_sleep", sid, options={"seconds": 0.0}, timeout=120)
        impatient = Client.from_state_file(server.state_file, timeout=0.3)
        ended: list[str] = []

        def spin() -> None:
            try:
                impatient.query("test_sleep", sid, {"spin": True})
            except (RemoteError, RequestTimeout) as e:
                ended.append(type(e).__name__)

        threads = [threading.Thread(target=spin) for _ in range(PARALLEL_OPS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert len(ended) == PARALLEL_OPS
        # Without the deadline each spin would hold its thread for the server's default, twice this wait.
        patient = Client.from_state_file(server.state_file, timeout=QUERY_SECONDS / 2)
        assert patient.query("test_sleep", sid, {"value": 0.7}).mask.all()
        patient.close()
        impatient.close()


def test_a_state_directory_other_users_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    engine = Engine(cache_dir=tmp_path / "cache", device="cpu")
    try:
        with pytest.raises(SegAnyError) as info:
            Server(engine, state_file=shared / "server.json").start()
        assert info.value.code == "io_error" and "writable by other users" in info.value.message
    finally:
        engine.close()
    (shared / "server.json").write_text(json.dumps({"host": "127.0.0.1", "port": 1, "token": "x", "pid": 1}))
    with pytest.raises(BackendUnavailable, match="writable by other users"):
        Client.from_state_file(shared / "server.json")


def test_a_state_directory_writable_only_by_the_users_private_group_is_accepted(make_server, tmp_path: Path) -> None:
    """Debian and Ubuntu give each user a private group and umask 002: such a directory is the user's alone."""
    group = grp.getgrgid(os.getgid())
    if group.gr_name != pwd.getpwuid(os.getuid()).pw_name or group.gr_mem:
        pytest.skip(f"this user's primary group {group.gr_name!r} is not a private group")
    shared = tmp_path / "run"
    shared.mkdir()
    shared.chmod(0o770)
    server = make_server()
    assert server.state_file.parent == shared
    with _client(server) as c:
        assert c.ping() > 0
