"""The client against a peer that sends what the real backend no longer can: replies it cannot read.

The real server bounds its messages and checks each reply against the client's limits, so these
replies can only come from a scripted peer (an older or foreign backend). The peer here is a plain
socket in a thread speaking the wire format; the client under test is the real one.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable

import pytest

from segany.addon import wire
from segany.addon.client import BackendUnavailable, Client, RemoteError

Script = Callable[[socket.socket], None]


def _peer(script: Script) -> tuple[int, threading.Thread]:
    """Listen once; greet the client's hello, then run `script` on the connection."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with listener:
            sock, _ = listener.accept()
        with sock:
            header, _ = wire.read_frame(sock)
            wire.send_frame(sock, {"id": header["id"], "ok": True, "limits": wire.Limits().to_dict()})
            script(sock)
            with contextlib.suppress(ConnectionError):
                sock.recv(1)  # stay connected until the client closes: a healthy backend does not leave

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


def _answer_next(sock: socket.socket, build: Callable[[int], bytes]) -> None:
    header, _ = wire.read_frame(sock)
    sock.sendall(build(header["id"]))


def _good(rid: int) -> bytes:
    return b"".join(bytes(b) for b in wire.encode({"id": rid, "ok": True, "time": 1.0}))


def _huge_header(rid: int) -> bytes:
    head = json.dumps({"id": rid, "ok": False, "error": {"code": "bad_request", "message": "c" * 5000}}).encode()
    return wire.PREAMBLE.pack(wire.MAGIC, wire.VERSION, 0, len(head), 0) + head


def _empty_huge_shape(rid: int) -> bytes:
    table = [{"name": "scores", "dtype": "float32", "shape": [0, 2**63 - 1], "offset": 0, "length": 0}]
    head = json.dumps({"id": rid, "ok": True, "arrays": table}).encode()
    return wire.PREAMBLE.pack(wire.MAGIC, wire.VERSION, 0, len(head), 0) + head


@pytest.mark.parametrize("bad", [_huge_header, _empty_huge_shape])
def test_one_unreadable_reply_fails_its_call_and_the_connection_goes_on(bad: Callable[[int], bytes]) -> None:
    def script(sock: socket.socket) -> None:
        _answer_next(sock, bad)
        _answer_next(sock, _good)
        _answer_next(sock, _good)

    port, thread = _peer(script)
    with Client("127.0.0.1", port, "token", timeout=120, limits=wire.Limits(max_header=4096)) as client:
        with pytest.raises(RemoteError) as info:
            client.ping()
        assert info.value.code in ("too_large", "bad_request")
        assert "could not be read" in info.value.message
        assert client.alive, "a healthy backend is not declared lost"
        assert client.ping() == 1.0 and client.ping() == 1.0
    thread.join(120)


def test_a_broken_stream_still_fails_every_waiting_call_at_once() -> None:
    """Garbage where a preamble should be cannot be skipped: the client gives up, at once, not by timeout."""

    def script(sock: socket.socket) -> None:
        wire.read_frame(sock)
        sock.sendall(b"HTTP/1.1 200 OK\r\n\r\n" + bytes(20))

    port, thread = _peer(script)
    with Client("127.0.0.1", port, "token", timeout=None) as client:
        with pytest.raises(BackendUnavailable, match="bad frame"):
            client.ping()
        assert not client.alive
    thread.join(120)


def test_an_unidentifiable_bad_reply_fails_the_calls_waiting_then() -> None:
    """A reply too big to read has no readable id: every call waiting at that moment hears why."""
    arrived = threading.Event()

    def script(sock: socket.socket) -> None:
        wire.read_frame(sock)
        wire.read_frame(sock)
        arrived.set()
        sock.sendall(_huge_header(1))
        _answer_next(sock, _good)

    port, thread = _peer(script)
    with Client("127.0.0.1", port, "token", timeout=120, limits=wire.Limits(max_header=4096)) as client:
        errors: list[str] = []

        def call() -> None:
            try:
                client.ping()
            except RemoteError as e:
                errors.append(e.code)

        callers = [threading.Thread(target=call) for _ in range(2)]
        for t in callers:
            t.start()
        for t in callers:
            t.join(120)
        assert arrived.is_set() and errors == ["too_large", "too_large"]
        assert client.ping() == 1.0 and client.alive
    thread.join(120)
