"""`segany bench soak`: 10,000 clicks from 4 clients against one real backend, with prepares and cancels between.

The claims under test (issue 16): the backend's memory stays flat and no request ends in `internal`. One
backend process (`python -m segany.server`, real Engine, CPU); four clients, each on its own connection
in its own thread, click with the walk method on a prepared sample mesh (a cheap method per click, so the
run loads the server, not a model). A click session grows to 1-5 clicks and each click sends the whole
session, as the add-on does. PREPARES times over its clicks a client uploads a fresh point cloud, submits a
walk prepare on it, cancels every other one at once, waits for the end and drops the scene.

The backend's resident memory (VmRSS, Linux) is sampled by a fifth thread every SAMPLE_EVERY clicks.
"Flat": the median of the last quarter's samples against the second quarter's (the first quarter warms
caches and allocator pools). Figures go to docs/journal.md with the command that made them.
"""

from __future__ import annotations

import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from segany.addon.client import BackendUnavailable, Client, RemoteError, launch_backend

from ..samples import sample_mesh
from ..scene import scene_arrays
from .report import Curve, Row, write_report

CLIENTS = 4
CLICKS, QUICK_CLICKS = 10_000, 400
PREPARES = 10  # per client over the run, evenly spaced between its clicks (every 250 in the full run)
SAMPLE_EVERY = 100  # clicks (all clients together) between memory samples
POINTS = 2_000  # a prepare's point cloud: big enough to build a real graph, small enough to repeat


def _rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return int(next(line.split()[1] for line in status if line.startswith("VmRSS")))


class _Soak:
    def __init__(self, state: Path, sid: str, n_vertices: int, clicks: int) -> None:
        self.state, self.sid, self.n_vertices = state, sid, n_vertices
        self.clicks = clicks
        self.lock = threading.Lock()
        self.done_clicks = 0
        self.codes: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.prepares = self.cancels = 0
        self.tick = threading.Condition(self.lock)
        self.finished = False  # every client thread has returned (a lost backend ends them early)
        self.failures: list[str] = []

    def client(self, index: int) -> None:
        try:
            self._clicks(index)
        except (BackendUnavailable, RemoteError) as e:
            with self.lock:
                self.failures.append(f"client {index}: {e}")

    def _clicks(self, index: int) -> None:
        rnd = random.Random(index)
        share = self.clicks // CLIENTS + (index < self.clicks % CLIENTS)
        every = max(1, share // PREPARES)
        with Client.from_state_file(self.state, timeout=600) as c:
            session: list[list[int]] = []
            for k in range(share):
                if not session or len(session) >= rnd.randint(1, 5):
                    session = []
                session.append([rnd.randrange(self.n_vertices), 1 if not session or rnd.random() < 0.7 else -1])
                t0 = time.perf_counter()
                try:
                    c.query("walk", self.sid, {"clicks": session})
                except RemoteError as e:
                    self._count(e.code)
                with self.tick:
                    self.latencies.append(time.perf_counter() - t0)
                    self.done_clicks += 1
                    self.tick.notify_all()
                if (k + 1) % every == 0:
                    self._prepare(c, rnd, cancel=(k // every) % 2 == 0)

    def _prepare(self, c: Client, rnd: random.Random, cancel: bool) -> None:
        xyz = np.random.default_rng(rnd.randrange(2**32)).random((POINTS, 3), dtype=np.float32)
        sid = c.add_scene("points", {"xyz": xyz})["scene_id"]
        job = c.submit("walk", sid)
        if cancel:
            job.cancel()
        try:
            job.result(timeout=600)
        except RemoteError as e:
            self._count(e.code)
        c.drop_scene(sid)
        with self.lock:
            self.prepares += 1
            self.cancels += cancel

    def _count(self, code: str) -> None:
        with self.lock:
            self.codes[code] += 1

    def sample(self, pid: int, out: list[tuple[int, int]]) -> None:
        """RSS after every SAMPLE_EVERY clicks, until all are done."""
        mark = 0
        while mark < self.clicks:
            target = min(mark + SAMPLE_EVERY, self.clicks)
            with self.tick:
                self.tick.wait_for(lambda t=target: self.done_clicks >= t or self.finished)
                if self.done_clicks < target:
                    return
                mark = self.done_clicks
            out.append((mark, _rss_kb(pid)))

    def finish(self) -> None:
        with self.tick:
            self.finished = True
            self.tick.notify_all()


def run(out_dir: Path, quick: bool = False) -> dict:
    clicks = QUICK_CLICKS if quick else CLICKS
    mesh = sample_mesh()
    with tempfile.TemporaryDirectory(prefix="segany-bench-soak-") as tmp:
        state = Path(tmp) / "run" / "state.json"
        proc, first = launch_backend(
            sys.executable, state, ["--cache-dir", str(Path(tmp) / "cache"), "--device", "cpu"],
            log_path=Path(tmp) / "server.log",
        )  # fmt: skip
        try:
            sid = first.add_scene("mesh", scene_arrays(mesh))["scene_id"]
            first.prepare("walk", sid, timeout=600)
            soak = _Soak(state, sid, len(mesh.vertices), clicks)
            samples: list[tuple[int, int]] = [(0, _rss_kb(proc.pid))]
            sampler = threading.Thread(target=soak.sample, args=(proc.pid, samples), daemon=True)
            sampler.start()
            t0 = time.perf_counter()
            workers = [threading.Thread(target=soak.client, args=(i,)) for i in range(CLIENTS)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            seconds = time.perf_counter() - t0
            soak.finish()
            sampler.join(60)
            alive = first.ping() > 0
        finally:
            first.shutdown()
            proc.wait(timeout=60)
    rss = np.array([kb for _, kb in samples], dtype=np.float64) / 1024
    q = max(1, len(rss) // 4)
    second, last = float(np.median(rss[q : 2 * q])), float(np.median(rss[-q:]))
    lat = np.array(soak.latencies) * 1e3
    case = f"{clicks:,} clicks, {CLIENTS} clients, {soak.prepares} prepares ({soak.cancels} cancelled)"
    rows = [
        Row(case, "clicks per second (prepares included)", soak.done_clicks / seconds, "clicks/s"),
        Row(case, "query p50", float(np.median(lat)), "ms"),
        Row(case, "query p99", float(np.percentile(lat, 99)), "ms"),
        Row(case, "backend RSS, median of the last quarter", last, "MiB", "second quarter", second, "<= 1.1× (flat)"),
        Row(case, "backend RSS, peak", float(rss.max()), "MiB"),
        Row(case, "internal errors", float(soak.codes["internal"]), "", target="0"),
    ]
    extra = {
        "clicks": clicks,
        "clients": CLIENTS,
        "seconds": seconds,
        "error_codes": dict(soak.codes),
        "rss_mib_by_clicks": [[n, kb / 1024] for n, kb in samples],
        "backend_alive_after": alive,
        "client_failures": soak.failures,
    }
    memory = Curve(
        "backend memory over the run: flat once warm is what the soak checks",
        "clicks answered",
        "RSS (MiB)",
        [float(n) for n, _ in samples],
        [kb / 1024 for _, kb in samples],
    )
    return write_report("soak", out_dir, rows, extra, curves=[memory])


if __name__ == "__main__":
    run(Path(sys.argv[1] if len(sys.argv) > 1 else "bench-out"), quick="--quick" in sys.argv)
