"""Model downloads against a real HTTP server on 127.0.0.1 that supports Range and can break off midway."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from segany import models
from segany.errors import SegAnyError
from segany.models import ModelFile, download

PAYLOAD = hashlib.sha256(b"seed").digest() * 12_000  # 384 kB, not a multiple of the 1 MiB chunk


@dataclass
class Server:
    url: str
    drops: list[int] = field(default_factory=list)  # byte counts after which successive requests break off
    ranges: list[str | None] = field(default_factory=list)  # the Range header of every request
    honour_range: bool = True


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            rng = self.headers.get("Range")
            state.ranges.append(rng)
            start = int(rng.split("=")[1].split("-")[0]) if rng and state.honour_range else 0
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.end_headers()
                return
            body = PAYLOAD[start:]
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if state.drops:
                body = body[: state.drops.pop(0)]  # then the handler returns and the socket closes
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/weights.bin"
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _spec(sha: str | None = hashlib.sha256(PAYLOAD).hexdigest(), md5: str | None = None) -> ModelFile:
    return ModelFile("test_model", "sam", "vit_b", "test_model.bin", "http://unused.invalid/", sha, None, md5)


def test_full_download_with_progress(server: Server, tmp_path: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    md5 = hashlib.md5(PAYLOAD, usedforsecurity=False).hexdigest()[:6]
    path = download(_spec(md5=md5), tmp_path, server.url, progress=lambda d, t: seen.append((d, t)))
    assert path == tmp_path / "test_model.bin" and path.read_bytes() == PAYLOAD
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert not (tmp_path / "test_model.bin.part").exists()


def test_broken_download_resumes_with_range(server: Server, tmp_path: Path) -> None:
    server.drops = [100_000]
    with pytest.raises(SegAnyError) as err:
        download(_spec(), tmp_path, server.url, retries=0)
    assert err.value.code == "io_error" and "resumes" in err.value.message
    part = tmp_path / "test_model.bin.part"
    assert part.stat().st_size == 100_000 and not (tmp_path / "test_model.bin").exists()
    path = download(_spec(), tmp_path, server.url)
    assert path.read_bytes() == PAYLOAD
    assert server.ranges == [None, "bytes=100000-"]


def test_breaks_within_one_call_are_retried(server: Server, tmp_path: Path) -> None:
    server.drops = [50_000, 70_000]
    assert download(_spec(), tmp_path, server.url, retries=3).read_bytes() == PAYLOAD
    assert server.ranges == [None, "bytes=50000-", "bytes=120000-"]


def test_server_ignoring_range_restarts_cleanly(server: Server, tmp_path: Path) -> None:
    (tmp_path / "test_model.bin.part").write_bytes(PAYLOAD[:1000])
    server.honour_range = False
    assert download(_spec(), tmp_path, server.url).read_bytes() == PAYLOAD


def test_complete_part_is_just_verified(server: Server, tmp_path: Path) -> None:
    (tmp_path / "test_model.bin.part").write_bytes(PAYLOAD)
    assert download(_spec(), tmp_path, server.url).read_bytes() == PAYLOAD
    assert server.ranges == [f"bytes={len(PAYLOAD)}-"]


def test_wrong_hash_leaves_nothing(server: Server, tmp_path: Path) -> None:
    with pytest.raises(SegAnyError) as err:
        download(_spec(sha="0" * 64), tmp_path, server.url)
    assert err.value.code == "corrupt_file" and "expected " + "0" * 64 in err.value.message
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SegAnyError, match="MD5"):
        download(_spec(md5="ffffff"), tmp_path, server.url)
    assert list(tmp_path.iterdir()) == []


def test_fetch_where_verify_through_the_catalogue(server: Server, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SEGANY_MODELS", str(tmp_path / "models"))
    assert models.where() == tmp_path / "models"
    assert models.where("sam_vit_b") == tmp_path / "models" / "sam_vit_b_01ec64.pth"
    listed = {m["name"]: m for m in models.list_models()}
    assert set(listed) == {"sam_vit_b", "sam_vit_l", "sam_vit_h", "clip_vit_b_16"}
    assert not listed["sam_vit_b"]["present"]
    for name, m in listed.items():
        if m["kind"] == "sam":
            assert m["filename"].endswith(m["md5_prefix"] + ".pth") and len(m["sha256"]) == 64, name
    with pytest.raises(SegAnyError, match="segany models fetch sam_vit_b"):
        models.checkpoint("sam_vit_b")
    with pytest.raises(SegAnyError) as err:
        models.fetch("sam_vit_b", url_override=server.url)  # the test payload is not SAM: refused
    assert err.value.code == "corrupt_file"
    assert not models.where("sam_vit_b").exists()
    # CLIP has no published hash: the one seen at download time is recorded and re-checked later
    path = models.fetch("clip_vit_b_16", url_override=server.url)
    assert models.verify("clip_vit_b_16")["sha256"] == hashlib.sha256(PAYLOAD).hexdigest()
    path.write_bytes(PAYLOAD[:-1] + b"x")
    with pytest.raises(SegAnyError, match="SHA-256"):
        models.verify("clip_vit_b_16")
    with pytest.raises(SegAnyError) as err:
        models.fetch("sam_vit_q")
    assert err.value.code == "not_found"


def test_unreachable_server_is_an_io_error(tmp_path: Path) -> None:
    with pytest.raises(SegAnyError) as err:
        download(_spec(), tmp_path, "http://127.0.0.1:9/nothing", retries=0, timeout=2)
    assert err.value.code == "io_error"
