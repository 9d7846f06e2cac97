"""segany bench batch: `segany batch` throughput (assets per minute) on the local pool with 1 and 2 workers and on
a local Ray cluster with 2 workers, over the same 24 assets: the 12 PSB development meshes, 6 splat scenes and
6 point clouds generated from them (`segany.eval.generate`, made here in a temp folder).

Every worker gets one thread, so 2 workers should do twice the work of 1 (the ideal); the pool's 1-worker run
is the baseline. Configurations alternate order by round (A B C, C B A, ...) and each ratio is taken within a
round, then the median over rounds is reported with its spread. Each batch writes a fresh output folder; the
task is one click with `walk` (no prepare), so what is timed is loading, the answer, the PLY and the preview
render, plus the machinery: process spawn and imports for the pool, task dispatch for Ray (whose workers stay
up between batches, as on a cluster; starting the cluster is timed apart). The per-asset work times (from the
workers' own clocks) are what docs/batch.md's estimate for 10,000 assets scales from.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from ..batch import collect_assets, parse_spec, run_batch
from ..batch.cluster import connect
from ..samples import sample_mesh, shared_data_dir
from .report import Row, write_report

SPEC = {"method": "walk", "clicks": [[0, 1]]}
CONFIGS = (("pool, 1 worker", 1, None), ("pool, 2 workers", 2, None), ("Ray, 2 workers", 2, "auto"))
KIND_OF = {"off": "mesh", "splats": "splats", "points": "points"}


def _psb_assets(folder: Path) -> list[Path] | None:
    """The 12 PSB meshes, splats of the first 6 and points of the last 6 (None without the shared data)."""
    from ..eval.data import shape_ids
    from ..eval.generate import generate_labelled

    psb = shared_data_dir() / "psb"
    if not (psb / "off").is_dir():
        return None
    ids = shape_ids(psb)
    made = generate_labelled(psb, folder, kinds=("splats",), ids=ids[:6])["splats"]
    made += generate_labelled(psb, folder, kinds=("points",), ids=ids[6:])["points"]
    return sorted((psb / "off").glob("*.off")) + made


def _stool_assets(folder: Path) -> list[Path]:
    """Three small scenes from the built-in stool (a mesh, splats, points): the quick run's."""
    from ..eval.generate import points_from_mesh, splats_from_mesh
    from ..formats import write_labelled_ply, write_mesh_ply

    mesh = sample_mesh(max_edge=0.2)
    for kind in ("off", "splats", "points"):
        (folder / kind).mkdir(parents=True, exist_ok=True)
    write_mesh_ply(folder / "off" / "stool.ply", mesh)
    write_labelled_ply(folder / "splats" / "stool.ply", *splats_from_mesh(mesh, mesh.face_parts, 2000, seed=1))
    write_labelled_ply(folder / "points" / "stool.ply", *points_from_mesh(mesh, mesh.face_parts, 2000, seed=2))
    return [folder / k / "stool.ply" for k in ("off", "splats", "points")]


def _kind(path: Path) -> str:
    return KIND_OF.get(path.parent.name, "mesh")


def _one_batch(paths: list[Path], out: Path, workers: int, ray: str | None, cache: Path) -> dict[str, Any]:
    assets = collect_assets([str(p) for p in paths], parse_spec(SPEC))
    quiet = Console(file=io.StringIO())  # the bench prints its own table; no progress bar in it
    t0 = time.perf_counter()
    outcome = run_batch(assets, out, workers=workers, ray=ray, cache_dir=cache, threads=1, console=quiet)
    wall = time.perf_counter() - t0
    failed = {n: r["error"] for n, r in outcome.records.items() if r["status"] != "ok"}
    if failed:
        raise RuntimeError(f"the bench's batch failed on {failed}")
    work = {str(Path(r["path"])): r["seconds"]["total"] for r in outcome.records.values()}
    cpu = {str(Path(r["path"])): r["seconds"]["cpu"] for r in outcome.records.values()}
    return {"wall_s": wall, "work_s": work, "cpu_s": cpu}


def run(out_dir: Path, quick: bool = False) -> dict:
    import ray

    rounds = 1 if quick else 4  # paired ratios need a few rounds for their spread; 4 x 3 batches of 24 assets
    extra: dict[str, Any] = {"spec": SPEC, "quick": quick, "rounds": rounds, "threads_per_worker": 1,
                             "load_average_1_5_15": list(os.getloadavg())}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="segany-bench-batch-") as tmp:
        root = Path(tmp)
        paths = None if quick else _psb_assets(root / "gen")
        if paths is None:
            extra["assets"] = "3 stool scenes" + ("" if quick else f" ({shared_data_dir()}/psb not found)")
            paths = _stool_assets(root / "gen")
        kinds = [_kind(p) for p in paths]
        extra["assets_by_kind"] = {k: kinds.count(k) for k in sorted(set(kinds))}
        t0 = time.perf_counter()
        started = connect("local", 2)  # `segany batch --ray local`'s cluster, started once for every round
        extra["ray_start_s"] = time.perf_counter() - t0
        try:
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in CONFIGS}
            for r in range(rounds):
                order = CONFIGS if r % 2 == 0 else CONFIGS[::-1]
                for name, workers, address in order:
                    out = root / f"out-{r}-{workers}-{address or 'pool'}"
                    runs[name].append(_one_batch(paths, out, workers, address, root / "cache"))
        finally:
            if started:
                ray.shutdown()
    extra["load_average_1_5_15_after"] = list(os.getloadavg())
    return write_report("batch", out_dir, _rows(paths, kinds, runs, extra), extra)


def _rows(paths: list[Path], kinds: list[str], runs: dict[str, list[dict[str, Any]]], extra: dict) -> list[Row]:
    n = len(paths)
    case = f"{n} assets ({', '.join(f'{v} {k}' for k, v in extra['assets_by_kind'].items())}), walk, 1 click"
    rate = {name: np.array([60.0 * n / b["wall_s"] for b in bs]) for name, bs in runs.items()}
    one, two, ray2 = (rate[name] for name, _, _ in CONFIGS)
    extra["assets_per_minute"] = {k: v.tolist() for k, v in rate.items()}
    scaling = two / (2 * one)  # paired within each round
    ray_vs_pool = ray2 / two
    wall = {name: np.array([b["wall_s"] for b in bs]) for name, bs in runs.items()}
    overhead = (wall["Ray, 2 workers"] - wall["pool, 2 workers"]) / n
    extra["paired"] = {
        "2 workers / (2 x 1 worker)": _spread(scaling),
        "Ray 2 / pool 2, throughput": _spread(ray_vs_pool),
        "Ray - pool per asset, s": _spread(overhead),
    }
    rows = [
        Row(case, "throughput, pool 1 worker", float(np.median(one)), "assets/min"),
        Row(
            case,
            "throughput, pool 2 workers",
            float(np.median(two)),
            "assets/min",
            "pool 1 worker",
            float(np.median(one)),
            "2x the 1-worker rate",
        ),
        Row(
            case,
            "throughput, Ray 2 workers",
            float(np.median(ray2)),
            "assets/min",
            "pool 2 workers",
            float(np.median(two)),
            "the pool's rate",
        ),
        Row(case, "2 workers as a fraction of ideal (median of paired ratios)", float(np.median(scaling)), "x"),
        Row(case, "Ray 2 workers / pool 2 workers (median of paired ratios)", float(np.median(ray_vs_pool)), "x"),
        Row(case, "Ray's extra wall time per asset vs the pool (2 workers)", float(np.median(overhead)), "s"),
    ]
    # per-asset work as the workers clocked it (1 thread), by kind: wall time, and the worker's CPU time, which
    # other processes' load does not inflate: what a bigger run scales from
    for key, what in (("work_s", "wall"), ("cpu_s", "CPU")):
        by_kind: dict[str, list[float]] = {}
        for bs in runs.values():
            for b in bs:
                for p, s in b[key].items():
                    by_kind.setdefault(_kind(Path(p)), []).append(s)
        extra[f"{key}_by_kind"] = {k: _spread(np.array(v)) for k, v in by_kind.items()}
        for k, v in sorted(by_kind.items()):
            rows.append(Row(f"{k} assets", f"{what} time per asset, 1 thread (median over every run)",
                            float(np.median(v)), "s"))  # fmt: skip
    machinery = {name: float(np.median([b["wall_s"] * w / n - np.mean(list(b["work_s"].values())) for b in runs[name]]))
                 for name, w, _ in CONFIGS}  # fmt: skip
    extra["machinery_s_per_asset"] = machinery
    for name, s in machinery.items():
        rows.append(Row(case, f"machinery per asset, {name} (wall x workers / assets - work)", s, "s"))
    rows.append(Row("local Ray cluster, 2 CPUs", "start (ray.init), once", extra["ray_start_s"], "s"))
    return rows


def _spread(values: np.ndarray) -> dict[str, float]:
    return {"median": float(np.median(values)), "min": float(np.min(values)), "max": float(np.max(values))}
