"""`segany bench protocol`: the wire protocol against a bare socket moving the same bytes, same run.

A real backend process (`python -m segany.server`, real Engine) and a bare-socket peer process
(length prefix + raw bytes, nothing else) each serve one connection over loopback. Both receivers
allocate their buffer per message with np.empty, so the baseline is "the same bytes, no protocol".
Targets: array transfer within 20% of the bare socket; small round trip p50 under 1 ms.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from segany.addon.client import Client, launch_backend

from .report import Row, write_report

_BARE = struct.Struct("<QB")  # payload length, mode (0: ack one byte, 1: send the bytes back)


def _recv_exact(sock: socket.socket, n: int) -> np.ndarray:
    buf = np.empty(n, dtype=np.uint8)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if not k:
            raise ConnectionError("bare peer closed")
        got += k
    return buf


def bare_peer() -> None:
    """The baseline: one connection, length-prefixed messages, acked or echoed."""
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    sock, _ = listener.accept()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        head = bytearray(_BARE.size)
        if sock.recv_into(head, _BARE.size, socket.MSG_WAITALL) < _BARE.size:
            return
        n, mode = _BARE.unpack(head)
        data = _recv_exact(sock, n)
        if mode == 1:
            sock.sendall(struct.pack("<Q", n))
            sock.sendall(memoryview(data))
        else:
            sock.sendall(b"k")


class _Bare:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "segany.bench.protocol", "--bare-peer"], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        port = int(self.proc.stdout.readline())
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: np.ndarray, echo: bool) -> np.ndarray | None:
        raw = memoryview(data.reshape(-1).view(np.uint8))
        self.sock.sendall(_BARE.pack(raw.nbytes, int(echo)))
        self.sock.sendall(raw)
        if not echo:
            self.sock.recv(1)
            return None
        (n,) = struct.unpack("<Q", bytes(_recv_exact(self.sock, 8)))
        return _recv_exact(self.sock, n)

    def close(self) -> None:
        self.sock.close()
        self.proc.wait(timeout=10)


def _paired(fn: Any, base: Any, n: int, warmup: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Wall times of `fn` and `base`, interleaved so machine load hits both alike."""
    for _ in range(warmup):
        fn()
        base()
    out = np.empty((2, n))
    for i in range(n):
        for j, f in enumerate((fn, base)):
            t0 = time.perf_counter()
            f()
            out[j, i] = time.perf_counter() - t0
    return out[0], out[1]


def run(out_dir: Path, quick: bool = False) -> dict:
    n_small = 200 if quick else 3000
    n_points = 100_000 if quick else 1_000_000
    repeats = 5 if quick else 100
    arr = np.random.default_rng(0).random((n_points, 3), dtype=np.float32)
    tiny = np.zeros(16, dtype=np.uint8)
    mb = arr.nbytes / 1e6
    with tempfile.TemporaryDirectory(prefix="segany-bench-protocol-") as tmp:
        proc, client = launch_backend(
            sys.executable,
            Path(tmp) / "state.json",
            ["--cache-dir", str(Path(tmp) / "cache"), "--device", "cpu"],
            log_path=Path(tmp) / "server.log",
        )
        bare = _Bare()
        try:
            small, small_bare = _paired(client.ping, lambda: bare.send(tiny, echo=True), n_small)
            up, up_bare = _paired(
                lambda: client.echo({"x": arr}, return_arrays=False), lambda: bare.send(arr, echo=False), repeats
            )
            both, both_bare = _paired(lambda: client.echo({"x": arr}), lambda: bare.send(arr, echo=True), repeats)
            assert np.array_equal(client.echo({"x": arr})["x"], arr)
        finally:
            _stop(client, proc)
            bare.close()
    ms = 1e3
    # Arrays: best of N, the least load-disturbed estimate on a shared machine (medians go in `extra`).
    up_s, up_b = float(up.min()), float(up_bare.min())
    rt_s, rt_b = float(both.min()), float(both_bare.min())
    case = f"{n_points:,}×3 float32 ({mb:.1f} MB)"
    rows = [
        Row("small request", "round trip p50", float(np.median(small)) * ms, "ms", "bare socket",
            float(np.median(small_bare)) * ms, "< 1 ms"),
        Row("small request", "round trip p99", float(np.percentile(small, 99)) * ms, "ms", "bare socket",
            float(np.percentile(small_bare, 99)) * ms),
        Row(case, "upload", up_s * ms, "ms", "bare socket", up_b * ms, "<= 1.2× bare"),
        Row(case, "download (round trip − upload)", (rt_s - up_s) * ms, "ms", "bare socket", (rt_b - up_b) * ms,
            "<= 1.2× bare"),
        Row(case, "round trip", rt_s * ms, "ms", "bare socket", rt_b * ms, "<= 1.2× bare"),
    ]  # fmt: skip
    extra = {
        "small_requests": n_small,
        "array_repeats": repeats,
        "array_statistic": "min over repeats, protocol and bare interleaved",
        "upload_GBps": mb / 1e3 / up_s,
        "upload_GBps_bare": mb / 1e3 / up_b,
        "median_ms": {
            "upload": float(np.median(up)) * ms,
            "upload_bare": float(np.median(up_bare)) * ms,
            "round_trip": float(np.median(both)) * ms,
            "round_trip_bare": float(np.median(both_bare)) * ms,
        },
        "overhead_upload": up_s / up_b - 1,
        "overhead_round_trip": rt_s / rt_b - 1,
    }
    return write_report("protocol", out_dir, rows, extra)


def _stop(client: Client, proc: subprocess.Popen) -> None:
    client.shutdown()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    if sys.argv[1:] == ["--bare-peer"]:
        bare_peer()
    else:
        run(Path(sys.argv[1] if len(sys.argv) > 1 else "bench-out"), quick="--quick" in sys.argv)
