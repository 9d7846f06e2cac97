"""`segany bench addon`: the Blender side of a click, of writing selections, and of sending splats.

The Blender half runs in a subprocess with bpy and WITHOUT torch (as inside Blender): it builds the
meshes and splats, starts the real backend through the add-on's own lifecycle code, and times
- a click on a ~100K-vertex mesh: pick (BVH of the original mesh), the query's transport (request frame
  answered, a score per vertex received), the hand-over from the worker thread to the main thread (the
  add-on's timer period), and the live colour write;
- writing a 1M-element selection into a vertex group and into a float attribute, against a per-element
  Python loop (the baseline);
- importing a 1M-Gaussian 3DGS PLY with Blender's importer, reading it as scene arrays and sending it,
  against a bare socket moving the same bytes.
The add-on's share of a click is the sum of those pieces, which leaves the method's own query out by
construction; a real iSeg query round trip on a small mesh is reported beside it for context.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .report import Row, timeit, write_report

# A small iSeg: the bench measures the add-on's overhead, and reports the method's own query time apart.
ISEG_BENCH = {
    "views": 6,
    "resolution": 64,
    "encoder_width": 32,
    "encoder_depth": 1,
    "fourier": 16,
    "encoder_steps": 20,
    "encoder_pixels": 512,
    "click_vertices": 8,
    "views_per_click": 2,
    "second_clicks": 1,
    "decoder": "light",
    "decoder_steps": 20,
    "decoder_batch": 4,
    "decoder_pixels": 128,
}


_timed = partial(timeit, warmup=0)  # median seconds, no warm-up run (some cases take seconds)


def _bare_send_seconds(payload: bytes) -> float:
    """Loopback baseline: the same bytes through a bare socket to a reader that acks the end."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def reader() -> None:
        conn, _ = server.accept()
        buf = bytearray(1 << 20)
        left = len(payload)
        while left:
            left -= conn.recv_into(buf, min(len(buf), left))
        conn.sendall(b"k")
        conn.close()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    sock = socket.create_connection(("127.0.0.1", port))
    t0 = time.perf_counter()
    sock.sendall(payload)
    sock.recv(1)
    dt = time.perf_counter() - t0
    sock.close()
    server.close()
    t.join()
    return dt


def blender_side(out_json: Path, work: Path, quick: bool) -> None:
    """Runs in the bpy subprocess (no torch). Writes its timings to out_json."""
    import bpy
    from mathutils import Vector

    from segany.addon import picking, results, scene_read, splat_layout
    from segany.addon.backend_process import Backend, BackendConfig
    from segany.addon.bridge import Bridge

    out: dict[str, Any] = {}
    rng = np.random.default_rng(0)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    python = os.environ.get("SEGANY_BACKEND_PYTHON") or sys.executable  # bpy's venv may lack torch (CI's matrix)
    config = BackendConfig(python=python, state_file=work / "server.json", cache_dir=str(work / "cache"))
    config.device = "cpu"
    backend = Backend(config)
    client = backend.ensure()

    # A real iSeg click on a small mesh, for context (its query time is the method's, not the add-on's).
    bpy.ops.mesh.primitive_uv_sphere_add(segments=48, ring_count=24, radius=1.0)
    small = bpy.context.active_object
    small_scene = scene_read.read_object(small)
    sid = client.add_scene(small_scene.kind, small_scene.arrays)["scene_id"]
    t0 = time.perf_counter()
    client.prepare("iseg", sid, options=ISEG_BENCH, timeout=3600)
    out["iseg_vertices"], out["iseg_prepare_s"] = small_scene.n_elements, time.perf_counter() - t0
    out["iseg_query_round_trip_s"] = _timed(lambda: client.query("iseg", sid, {"clicks": [[0, 1]]}), 20)

    # The add-on's share of a click on a ~100K-vertex mesh, piece by piece.
    segs, rings = (100, 50) if quick else (400, 250)
    bpy.ops.mesh.primitive_uv_sphere_add(segments=segs, ring_count=rings, radius=1.0)
    ob = bpy.context.active_object
    n_mesh = len(ob.data.vertices)
    out["mesh_vertices"] = n_mesh
    t0 = time.perf_counter()
    scene = scene_read.read_object(ob)
    out["mesh_read_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    client.add_scene(scene.kind, scene.arrays)
    out["mesh_send_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    picker = picking.MeshPicker(ob)
    out["bvh_build_s"] = time.perf_counter() - t0
    dirs = [Vector(d).normalized() for d in rng.normal(size=(50, 3))]
    picks = []

    def pick() -> None:
        d = dirs[len(picks) % len(dirs)]
        picks.append(picker.pick_ray(d * 5.0, -d))

    out["pick_s"] = _timed(pick, 50)
    clicks = {"clicks": [[max(picks[0], 0), 1]]}
    scores = rng.random(n_mesh, dtype=np.float32)
    # Transport without the method: the request (a small frame, answered) plus the scores' bytes
    # moving one way (echo without the return), as a query's reply carries them.
    out["send_s"] = _timed(lambda: client.request("echo", None, **clicks), 50)
    out["receive_s"] = _timed(lambda: client.echo({"scores": scores}, return_arrays=False), 10)
    out["write_preview_s"] = _timed(lambda: results.show_preview(ob.data, scores, 0.5, (1, 0, 0, 1)), 10)

    bridge = Bridge()
    waits = []
    for _ in range(30):
        got = threading.Event()
        t_post = [0.0]

        def mark(t_post: list[float] = t_post) -> None:
            t_post[0] = time.perf_counter()

        bridge.run(mark, lambda _v, got=got: got.set())
        while not got.is_set():  # the add-on's timer body, at its busy period (registration.TIMER_BUSY)
            time.sleep(0.005)
            bridge.drain()
        waits.append(time.perf_counter() - t_post[0])
    bridge.close()
    out["handover_s"] = float(statistics.median(waits))
    pieces = ("pick_s", "send_s", "receive_s", "handover_s", "write_preview_s")
    out["click_addon_s"] = sum(out[k] for k in pieces)

    side = 316 if quick else 1000
    bpy.ops.mesh.primitive_grid_add(x_subdivisions=side - 1, y_subdivisions=side - 1, size=2.0)
    big = bpy.context.active_object
    n_big = len(big.data.vertices)
    out["write_elements"] = n_big
    scores = rng.random(n_big, dtype=np.float32)
    out["attribute_foreach_s"] = _timed(lambda: results.write_float_attribute(big.data, "score", scores), 5)
    attr = big.data.attributes["score"]
    loop_n = n_big if not quick else min(n_big, 100_000)

    def naive_attribute() -> None:
        data = attr.data
        for i in range(loop_n):
            data[i].value = float(scores[i])

    out["attribute_loop_s"] = _timed(naive_attribute, 1) * (n_big / loop_n)
    out["vertex_group_binary_s"] = _timed(lambda: results.write_vertex_group(big, "vg_bin", scores, 0.5, True), 3)
    out["vertex_group_weights_s"] = _timed(lambda: results.write_vertex_group(big, "vg_w", scores, 0.5, False), 3)
    vg = big.vertex_groups.new(name="vg_loop")
    idx = np.flatnonzero(scores >= 0.5)[: max(1, loop_n // 2)]

    def naive_group() -> None:
        for i in idx.tolist():
            vg.add([i], float(scores[i]), "REPLACE")

    sel_n = int((scores >= 0.5).sum())
    out["vertex_group_loop_s"] = _timed(naive_group, 1) * (sel_n / len(idx))

    n_splats = 100_000 if quick else 1_000_000
    g = {
        "means": rng.normal(size=(n_splats, 3)).astype(np.float32),
        "quats": np.tile(np.float32([1, 0, 0, 0]), (n_splats, 1)),
        "log_scales": np.full((n_splats, 3), -4, np.float32),
        "logit_opacities": rng.normal(size=n_splats).astype(np.float32),
        "sh": rng.normal(0, 0.3, size=(n_splats, 1, 3)).astype(np.float32),
    }
    ply = work / "splats.ply"
    splat_layout.write_ply(str(ply), g)
    out["splats"] = n_splats
    t0 = time.perf_counter()
    bpy.ops.wm.ply_import(filepath=str(ply))
    out["splat_import_s"] = time.perf_counter() - t0
    sob = bpy.context.active_object
    t0 = time.perf_counter()
    sscene = scene_read.read_object(sob)
    out["splat_read_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    client.add_scene(sscene.kind, sscene.arrays)
    out["splat_send_s"] = time.perf_counter() - t0
    payload = b"".join(np.ascontiguousarray(a).tobytes() for a in sscene.arrays.values())
    out["splat_bytes"] = len(payload)
    out["splat_bare_send_s"] = statistics.median(_bare_send_seconds(payload) for _ in range(3))
    backend.stop()
    out_json.write_text(json.dumps(out))


def run(out_dir: Path, quick: bool = False) -> dict:
    out_dir = Path(out_dir)
    work = Path(tempfile.mkdtemp(prefix="segany_bench_addon_"))
    side_json = work / "blender.json"
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(work / "blender_user")}
    code = "import sys; from segany.bench.addon import blender_side; from pathlib import Path; "
    code += f"blender_side(Path({str(side_json)!r}), Path({str(work)!r}), {quick!r})"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"the Blender side of the bench failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    b = json.loads(side_json.read_text())
    shutil.rmtree(work)  # the 1M-Gaussian PLY and the cache are only scratch
    ms = 1000.0
    nv, nw, ns = b["mesh_vertices"], b["write_elements"], b["splats"]
    click = f"click, {nv:,}-vertex mesh"
    rows = [
        Row(click, "pick (BVH of the original mesh)", b["pick_s"] * ms, "ms"),
        Row(click, "send (request frame, answered)", b["send_s"] * ms, "ms"),
        Row(click, "receive (scores, float32)", b["receive_s"] * ms, "ms"),
        Row(click, "worker → main thread (timer)", b["handover_s"] * ms, "ms"),
        Row(click, "write live colour attribute", b["write_preview_s"] * ms, "ms"),
        Row(click, "event → coloured, minus method", b["click_addon_s"] * ms, "ms", target="< 30 ms"),
        Row(
            f"iSeg, {b['iseg_vertices']:,}-vertex mesh",
            "query round trip (with method)",
            b["iseg_query_round_trip_s"] * ms,
            "ms",
        ),
        Row(
            f"write {nw:,} scores",
            "float attribute (foreach_set)",
            b["attribute_foreach_s"] * ms,
            "ms",
            "per-element Python loop",
            b["attribute_loop_s"] * ms,
            "< 100 ms",
        ),
        Row(
            f"write {nw:,} scores",
            "vertex group, 1.0 above threshold",
            b["vertex_group_binary_s"] * ms,
            "ms",
            "per-vertex VertexGroup.add loop",
            b["vertex_group_loop_s"] * ms,
        ),
        Row(
            f"write {nw:,} scores",
            "vertex group, weights = scores",
            b["vertex_group_weights_s"] * ms,
            "ms",
            "per-vertex VertexGroup.add loop",
            b["vertex_group_loop_s"] * ms,
        ),
        Row(f"{ns:,} Gaussians", "Blender PLY import", b["splat_import_s"], "s"),
        Row(f"{ns:,} Gaussians", "read attributes → scene arrays", b["splat_read_s"], "s"),
        Row(
            f"{ns:,} Gaussians",
            "send to backend (scene.add)",
            b["splat_send_s"],
            "s",
            "bare socket, same bytes",
            b["splat_bare_send_s"],
        ),
        Row(
            f"{ns:,} Gaussians",
            "import + read + send",
            b["splat_import_s"] + b["splat_read_s"] + b["splat_send_s"],
            "s",
            target="< 3 s",
        ),
    ]
    extra = {**b, "quick": quick}
    return write_report("addon", out_dir, rows, extra)


if __name__ == "__main__":
    run(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("bench-out"), quick="--quick" in sys.argv)
