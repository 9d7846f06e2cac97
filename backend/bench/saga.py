"""segany bench saga: SAGA's prepare (capture + training) on the real donut and on a million Gaussians, with peak
memory, and its click query, scale-slider step and segment everything on the million.

- Prepare on `donut.ply` (45,624 Gaussians, shared data; left out when absent) with the default (CPU)
  options: total, capture and training seconds, wall and the process's CPU.
- A million Gaussians sampled on the built-in stool (`segany.eval.generate.splats_from_mesh`) seen by 200
  views: the CPU renderer draws a view of a million Gaussians in tens of seconds, so a full 200-view prepare
  does not fit a bench run. The prepare runs on BIG_VIEWS_MEASURED of the views and BIG_STEPS training
  steps; the capture's seconds per view and the training's seconds per step (from the progress reports, so
  the one-time setup is apart), wall and CPU, are measured and scaled to 200 views and the default steps —
  those rows say "extrapolated". Peak memory is the process's resident peak (VmHWM, reset before the
  prepare), which counts torch's allocations that tracemalloc would miss; capture streams views
  (`pixels.py`), so only the kept pixels grow with the view count, and the 200-view row adds a bound on
  them (every pixel of every other view kept, twice for the final join).
- Queries on that prepared state (fp16 features, 1M × 32): one click, a scale-slider step (the same click
  at the next scale) and the similarity kernel alone, each timed alternately with a streaming read of the
  same feature bytes (the memory-bandwidth limit of one pass, measured in the same run); and three clicks
  through `click_similarity` (one read) against a read per click combined in torch. The median of the
  paired ratios is a row, its quartiles are in `extra`.
- Segment everything at the prepare's reference scale on the million, with the query's default sample.

torch runs with SEGANY_BENCH_THREADS threads (default 1), as in `bench kernels`: on a shared 2-core machine
torch's OpenMP threads wait on each other, and a step's time then measures the load more than the code.
Wall and process-CPU seconds are both kept for the prepares: on a shared machine the wall time grows with
the other processes' load. "G" in a case name is Gaussians.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..formats import load_scene
from ..jobs import JobContext
from ..methods import get_method
from ..methods.base import State
from ..methods.saga.everything import everything_parts
from ..methods.saga.features import gate_for
from ..methods.saga.options import SAGAOptions
from ..options import parse_options
from ..priors import get_prior
from ..samples import sample_mesh, shared_data_dir
from ..scene import Scene
from .kernels import interleaved_times, paired_ratio
from .report import Curve, Row, write_report

DONUT = shared_data_dir() / "splats" / "donut.ply"
BIG = 1_000_000
BIG_VIEWS = 200  # the view count for the million-Gaussian prepare
BIG_VIEWS_MEASURED = 6  # views actually captured; the capture scales linearly in views (streamed)
BIG_STEPS = 75  # training steps actually run (progress reports every 25 give the per-step time)
QUERY_TURNS = 31
RSS_EVERY_S = 0.25  # sampling period of the memory curve


def _big_scene(n: int) -> Scene:
    from ..eval.generate import splats_from_mesh

    mesh = sample_mesh()
    scene, _ = splats_from_mesh(mesh, mesh.face_parts, n, seed=0)
    return scene


def _status_kb(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in KiB (the memory rows need Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> bool:
    """Reset the kernel's resident-peak counter (VmHWM); False where /proc does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class _Memory:
    """Resident set size sampled every RSS_EVERY_S seconds on a thread, for the plot; the peak itself comes
    from VmHWM, which misses no short spike between samples."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.points: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(RSS_EVERY_S):
            self.points.append((time.perf_counter() - self.start, _status_kb("VmRSS") / 2**20))

    def __enter__(self) -> _Memory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _prepare(scene: Scene, options: SAGAOptions) -> tuple[State, dict[str, Any]]:
    """The method's prepare with the geometric prior, timed in wall and process-CPU seconds: in all, the
    capture (to its last progress report, the last view's masks), the rest (training, its setup, filling
    hidden elements), and a training step (between the first and the last step reports; fraction 0.3..0.99
    of the prepare is training)."""
    reports: list[tuple[float, float, float, str]] = []

    def report(f: float, m: str) -> None:
        reports.append((time.perf_counter(), time.process_time(), f, m))

    ctx = JobContext(on_progress=report, interval=0.0)
    wall, cpu = time.perf_counter(), time.process_time()
    state = get_method("saga").prepare(scene, get_prior("geometric"), options, ctx)
    end_wall, end_cpu = time.perf_counter(), time.process_time()
    capture = [r for r in reports if r[2] < 0.3]
    steps = [r for r in reports if r[3].startswith("training step")]
    t: dict[str, Any] = {"wall_s": end_wall - wall, "cpu_s": end_cpu - cpu, "step_s": None, "step_cpu_s": None}
    t.update({f"{k}_s": v for k, v in state.meta["timings"].items()})
    t["capture_cpu_s"] = capture[-1][1] - cpu if capture else None
    t["after_capture_cpu_s"] = t["cpu_s"] - t["capture_cpu_s"] if capture else None
    if len(steps) >= 2:
        first, last = steps[0], steps[-1]
        done = (last[2] - first[2]) / 0.69 * options.steps  # steps between the first and the last report
        if done > 0:
            t["step_s"], t["step_cpu_s"] = (last[0] - first[0]) / done, (last[1] - first[1]) / done
    return state, t


def _donut_rows(scene: Scene, name: str, options: SAGAOptions, extra: dict[str, Any]) -> list[Row]:
    _, t = _prepare(scene, options)
    case = f"prepare, {name}, {scene.n_elements:,} G, {options.views} views, {options.steps} steps"
    extra.setdefault("prepare", {})[case] = t
    rows = [
        Row(case, "wall time, total", t["wall_s"], "s", target="≤ 60 s"),
        Row(case, "CPU time, total", t["cpu_s"], "s", target="≤ 60 s"),
        Row(case, "wall time, capture (render + prior masks)", t["capture_s"], "s"),
        Row(case, "wall time, training", t["train_s"], "s", target="≤ 20 s"),
    ]
    if t["capture_cpu_s"] is not None:
        rows += [
            Row(case, "CPU time, capture", t["capture_cpu_s"], "s"),
            Row(
                case,
                "CPU time, training (its setup and the hidden elements' fill included)",
                t["after_capture_cpu_s"],
                "s",
                target="≤ 20 s",
            ),
        ]
    if t["step_cpu_s"] is not None:
        rows.append(Row(case, "CPU time, training step", 1e3 * t["step_cpu_s"], "ms"))
    return rows


def _big_rows(scene: Scene, views: int, steps: int, extra: dict[str, Any]) -> tuple[list[Row], State, Curve]:
    opts = parse_options(SAGAOptions, {"views": views, "steps": steps})
    default_steps = parse_options(SAGAOptions).steps
    before_gb = _status_kb("VmRSS") / 2**20
    reset = _reset_peak()
    with _Memory() as memory:
        state, t = _prepare(scene, opts)
    peak_gb = _status_kb("VmHWM") / 2**20
    # what capture keeps grows with the views: at most every pixel, each with top_k ids (int64) and weights
    # (float32) and a mask id (int64) and scale (float32) per prior level (`Pixels`)
    levels = len(get_prior("geometric").levels) + 1  # the prior's levels and the whole-view root
    pixel_gb_per_view = opts.resolution**2 * 12 * (opts.top_k + levels) / 2**30
    per_view = {k: t[f"capture{k}_s"] / views for k in ("", "_cpu")}
    per_step = {"": t["step_s"] or t["train_s"] / steps, "_cpu": t["step_cpu_s"] or t["after_capture_cpu_s"] / steps}
    after = {"": t["wall_s"] - t["capture_s"], "_cpu": t["after_capture_cpu_s"]}  # training, setup, fill
    fixed = {k: max(after[k] - per_step[k] * steps, 0.0) for k in after}
    total = {k: per_view[k] * BIG_VIEWS + fixed[k] + per_step[k] * default_steps for k in after}
    case = f"prepare, stool, {scene.n_elements:,} G, {BIG_VIEWS} views"
    measured = f"{views} of {BIG_VIEWS} views, {steps} steps measured"
    extra["big_prepare"] = {
        **t, "views_measured": views, "steps_measured": steps, "default_steps": default_steps,
        "rss_before_gb": before_gb, "peak_gb": peak_gb, "peak_reset": reset,
        "pixel_gb_per_view_bound": pixel_gb_per_view, "fixed_s": fixed[""], "fixed_cpu_s": fixed["_cpu"],
    }  # fmt: skip
    rows = []
    for k, clock in (("", "wall"), ("_cpu", "CPU")):
        rows += [
            Row(case, f"{clock} time, total, extrapolated ({measured})", total[k], "s", target="≤ 600 s"),
            Row(case, f"{clock} time, capture per view", per_view[k], "s"),
            Row(case, f"{clock} time, training step", per_step[k], "s"),
            Row(case, f"{clock} time, training setup + filling hidden elements, once", fixed[k], "s"),
        ]
    rows += [
        Row(
            case,
            f"peak memory, {measured}",
            peak_gb,
            "GB",
            "resident before the prepare (scene loaded)",
            before_gb,
            "≤ 4 GB",
        ),
        # twice: the kept pixels are joined once at the end of capture
        Row(
            case,
            f"peak memory, {BIG_VIEWS} views, bound (+ twice every pixel of the other views)",
            peak_gb + 2 * pixel_gb_per_view * (BIG_VIEWS - views),
            "GB",
            target="≤ 4 GB",
        ),
    ]
    x, y = zip(*memory.points, strict=True) if memory.points else ((0.0,), (before_gb,))
    curve = Curve(f"resident memory during the prepare ({measured})", "seconds", "GB", list(x), list(y))
    return rows, state, curve


def _read_kernel() -> Any:
    """A streaming read of an array's bytes as uint64 words (a sum the compiler vectorises): one pass at the
    memory bandwidth, the floor for any query that reads every feature once."""
    from numba import njit

    @njit(nogil=True, boundscheck=False)
    def read(words: np.ndarray) -> int:
        total = np.uint64(0)
        for i in range(words.shape[0]):
            total += words[i]
        return total

    return read


def _per_click(features: torch.Tensor, queries: torch.Tensor, positive: torch.Tensor, gate: torch.Tensor) -> Any:
    """The click rule the way the query formed it before `click_similarity`: a read of the features per click
    (`scale_gated_similarity`), then torch passes to combine (the baseline of the three-click row)."""
    from segany.kernels.similarity import scale_gated_similarity

    best = {True: torch.full((len(features),), -1.0), False: torch.full((len(features),), -1.0)}
    for q, p in zip(queries, positive.tolist(), strict=True):
        best[p] = torch.maximum(best[p], scale_gated_similarity(features, q, gate))
    scores = best[True].clamp(0.0, 1.0)
    return torch.where(best[False] >= best[True], torch.zeros_like(scores), scores)


def _query_rows(scene: Scene, state: State, turns: int, extra: dict[str, Any]) -> list[Row]:
    from segany.kernels.similarity import click_similarity, scale_gated_similarity

    method = get_method("saga")
    features = state.tensors["features"]
    words = features.contiguous().numpy().view(np.uint64).reshape(-1)
    read = _read_kernel()
    lo, hi = state.meta["scale_range"]
    scale = float(state.meta["scale_reference"])
    slider = iter(np.tile(np.geomspace(lo, hi, 64), 8 * turns))  # each slider step a new scale
    clicks = np.random.default_rng(2).choice(scene.n_elements, 3, replace=False)
    click = int(clicks[0])
    gate = torch.from_numpy(gate_for(state, scale))
    three = features[torch.from_numpy(clicks)].float()
    signs = torch.tensor([True, False, True])

    def one_click() -> None:
        method.query(scene, state, {"clicks": [[click, 1]], "scale": scale})

    def slider_step() -> None:
        method.query(scene, state, {"clicks": [[click, 1]], "scale": float(next(slider))})

    def kernel() -> None:
        scale_gated_similarity(features, features[click], gate)

    n = f"{scene.n_elements / 1e6:g}M" if scene.n_elements >= 1e6 else f"{scene.n_elements:,}"
    mb = features.numel() * features.element_size() / 2**20
    kind = f"{n} G, {features.shape[1]} × {str(features.dtype).removeprefix('torch.')} features"
    read_name = f"streaming read of the same {mb:.3g} MB"
    races = (
        ("click query", one_click, read_name, lambda: read(words), "≤ 15 ms"),
        ("scale-slider step", slider_step, read_name, lambda: read(words), "≤ 15 ms"),
        ("similarity kernel", kernel, read_name, lambda: read(words), None),
        ("three clicks (+ − +), click_similarity: one read", lambda: click_similarity(features, three, signs, gate),
         "a read per click, combined in torch", lambda: _per_click(features, three, signs, gate), None),
    )  # fmt: skip
    rows = []
    for label, fn, base_name, base, target in races:
        times = interleaved_times([fn, base], turns)
        ratio = paired_ratio(times)
        case = f"{label}, {kind}"
        extra.setdefault("query_paired_ratio", {})[case] = ratio
        rows.append(Row(case, "wall time (median)", 1e3 * float(np.median(times[0])), "ms", base_name,
                        1e3 * float(np.median(times[1])), target))  # fmt: skip
        rows.append(Row(case, "paired ratio to the baseline (median)", ratio["median"], "x"))
    extra["query"] = {
        "clicks": clicks.tolist(), "scale": scale, "feature_bytes": mb * 2**20, "threads": torch.get_num_threads(),
    }  # fmt: skip
    return rows


def _everything_rows(scene: Scene, state: State, extra: dict[str, Any]) -> list[Row]:
    wall, cpu = time.perf_counter(), time.process_time()
    parts = everything_parts(scene, state, {})
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    n = f"{scene.n_elements / 1e6:g}M" if scene.n_elements >= 1e6 else f"{scene.n_elements:,}"
    case = f"segment everything, {n} G, default sample, reference scale"
    extra["everything"] = {"parts": int(parts.labels.max()) + 1, "wall_s": wall, "cpu_s": cpu}
    return [Row(case, "wall time", wall, "s", target="≤ 10 s"), Row(case, "CPU time", cpu, "s")]


def run(out_dir: Path, quick: bool = False) -> dict:
    from ..threads import bench_threads, torch_threads

    with torch_threads(bench_threads()):
        return _run(out_dir, quick)


def _run(out_dir: Path, quick: bool) -> dict:
    from segany.kernels import tune_cpu_allocator

    extra: dict[str, Any] = {
        "quick": quick, "torch_threads": torch.get_num_threads(), "load_average_1_5_15": list(os.getloadavg()),
        "cpu_allocator_tuned": tune_cpu_allocator(),  # as the server and the CLI's engine run
    }  # fmt: skip
    rows: list[Row] = []
    if quick:
        tiny = {**get_method("saga").Options.presets(None)["tiny"], "steps": 50}
        rows += _donut_rows(_big_scene(2_000), "stool", parse_options(SAGAOptions, tiny), extra)
        big = _big_scene(5_000)
        big_rows, state, curve = _big_rows(big, 2, 50, extra)
    else:
        if DONUT.is_file():
            rows += _donut_rows(load_scene(DONUT), "donut.ply", parse_options(SAGAOptions), extra)
        else:
            extra["donut"] = f"{DONUT} not found: its rows are left out"
        big = _big_scene(BIG)
        big_rows, state, curve = _big_rows(big, BIG_VIEWS_MEASURED, BIG_STEPS, extra)
    rows += big_rows
    rows += _query_rows(big, state, 5 if quick else QUERY_TURNS, extra)
    rows += _everything_rows(big, state, extra)
    extra["load_average_1_5_15_after"] = list(os.getloadavg())
    return write_report("saga", out_dir, rows, extra, curves=[curve])
