"""segany bench iseg: iSeg's time per click on the largest PSB development meshes, against the classical
walk on the same clicks, alternating; and a prepare's time.

Cases: the two largest PSB development meshes (102 and 21, ~15K vertices, ~31K faces; shared data, left
out when absent), their states read from the cache ($SEGANY_CACHE) when an `segany eval` has prepared them
with the CPU defaults and prepared here otherwise; without the shared data, the built-in stool subdivided
to ~15K vertices. The prior is the geometric one (the default on a machine without SAM weights). Clicks are
as an artist clicks: a first click, then a negative and a positive one, each a new spot, so the memo of
click prefixes serves only the earlier clicks of a list (a later click costs one step). iSeg ("auto", the
default query) and the baseline (`segany.eval.baseline`, the evaluation's random walk on the dual graph) are
timed alternately (A B A B, which goes first swapped per list); per click position the medians of both and
the median and quartiles of the paired wall ratio are reported. Wall and process-CPU time are both kept: on
a shared machine the wall time grows with the other processes' load, the CPU time much less.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..cache import Cache
from ..eval.baseline import RandomWalkBaseline
from ..eval.data import load_psb_shape
from ..eval.geometry import mesh_geometry
from ..jobs import JobContext
from ..methods.base import State
from ..methods.iseg import ISeg
from ..methods.iseg.options import ISegOptions
from ..options import parse_options
from ..priors import get_prior
from ..samples import sample_mesh, shared_data_dir
from ..scene import MeshScene, scene_id
from .report import Row, click_rows, write_report

EDGE_15K = 0.054  # subdivision edge length that gives the stool 14,924 vertices
PSB_LARGEST = ("102", "21")  # the development meshes with the most vertices (15,724 and 15,198)
TARGET = "≤ 100 ms"
QUICK = {
    "views": 6,
    "resolution": 64,
    "encoder_steps": 10,
    "click_vertices": 8,
    "views_per_click": 1,
    "second_clicks": 1,
    "decoder_steps": 10,
}
LABELS = ("first click", "second click (negative)", "third click (positive)")


def _click_lists(n: int, sets: int, seed: int) -> list[list[list[int]]]:
    """`sets` click lists of three new spots each: positive, negative, positive."""
    picks = np.random.default_rng(seed).choice(n, (sets, 3), replace=False)
    return [[[int(a), 1], [int(b), -1], [int(c), 1]] for a, b, c in picks]


def _state(method: ISeg, scene: MeshScene, opts: ISegOptions, cache: Cache | None) -> tuple[State, float | None]:
    """A geometric-prior state of the scene: from the cache when one was prepared (the eval's), else
    prepared here; the prepare's wall seconds, None when read from the cache."""
    if cache is not None:
        found = cache.latest(scene_id(scene), "iseg", "geometric")
        if found is not None and found[1].meta.get("options") == opts.to_dict():
            return found[1], None
    t0 = time.perf_counter()
    state = method.prepare(scene, get_prior("geometric"), opts, JobContext())
    return state, time.perf_counter() - t0


def _race(method: ISeg, scene: MeshScene, state: State, lists: list[list[list[int]]]) -> dict[str, Any]:
    """Per click position, wall / CPU seconds of iSeg and the baseline on the same clicks, alternating."""
    baseline = RandomWalkBaseline(mesh_geometry(scene.vertices, scene.faces))
    method.query(scene, state, {"clicks": lists[0][:1]})  # the decoders and the crease graph, once per state
    for thread in threading.enumerate():  # a state from the cache warms its factorisations on a thread
        if thread.name == "iseg-warm":
            thread.join()
    baseline.query([(v, s) for v, s in lists[0][:1]])

    def ours(clicks: list[list[int]]) -> None:
        method.query(scene, state, {"clicks": clicks})

    def base(clicks: list[list[int]]) -> None:
        baseline.query([(v, s) for v, s in clicks])

    times: dict[str, list[list[float]]] = {k: [[], [], []] for k in ("ours_wall", "ours_cpu", "base_wall", "base_cpu")}
    for i, clicks in enumerate(lists[1:]):
        order = (("ours", ours), ("base", base)) if i % 2 == 0 else (("base", base), ("ours", ours))
        for k in range(3):
            for name, fn in order:
                t0, c0 = time.perf_counter(), time.process_time()
                fn(clicks[: k + 1])
                times[f"{name}_wall"][k].append(time.perf_counter() - t0)
                times[f"{name}_cpu"][k].append(time.process_time() - c0)
    return times


def _rows(case: str, times: dict[str, list[list[float]]], extra: dict[str, Any]) -> list[Row]:
    return click_rows(case, LABELS, times, "eval baseline (random walk)", TARGET, extra)


def _scenes(quick: bool) -> list[tuple[str, MeshScene]]:
    psb = shared_data_dir() / "psb"
    if not quick and (psb / "off").is_dir():
        return [(f"PSB {i}", load_psb_shape(psb, i).scene) for i in PSB_LARGEST if (psb / "off" / f"{i}.off").is_file()]
    return [("stool", sample_mesh(max_edge=0.3 if quick else EDGE_15K))]


def run(out_dir: Path, quick: bool = False) -> dict:
    cache = None if quick else Cache()
    sets = 4 if quick else 12
    rows: list[Row] = []
    extra: dict[str, Any] = {"torch_threads": torch.get_num_threads(), "quick": quick, "prepares_s": {}}
    for name, scene in _scenes(quick):
        method = ISeg()
        opts = parse_options(ISegOptions, QUICK if quick else {}, scene=scene)
        state, prepare_s = _state(method, scene, opts, cache)
        case = f"{name}, {len(scene.vertices):,}-vertex mesh"
        if prepare_s is not None:
            rows.append(Row(case, "wall time of prepare (geometric prior)", prepare_s, "s", target="< 300 s"))
            extra["prepares_s"][case] = state.meta["timings"]
        rows += _rows(case, _race(method, scene, state, _click_lists(len(scene.vertices), sets + 1, seed=0)), extra)
    extra["load_average_1_5_15"] = list(os.getloadavg())
    return write_report("iseg", out_dir, rows, extra)
