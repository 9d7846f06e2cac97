"""segany bench iseg: prepare time and time per click on a 15K-vertex mesh, light vs iSeg's full decoder,
with and without the crease refinement.

The mesh is the built-in stool subdivided to ~15K vertices (no shared data needed); the prior is the
geometric one, the default on a machine without SAM weights. The full decoder (iSeg's 512 + 14×256 MLP)
is timed with the prepared features and random weights: its speed does not depend on the weights. The
refined query is timed the way an artist clicks: the answer to the earlier clicks is memoised, the new
click costs one walk; its first call on a mesh (graph and factorisations) is reported on its own. The
baseline is the evaluation harness's classical method (random walk on the dual graph), same clicks.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..eval.baseline import RandomWalkBaseline
from ..eval.geometry import mesh_geometry
from ..jobs import JobContext
from ..methods.iseg import ISeg
from ..methods.iseg.decoder import PRESETS, ClickScorer, Decoder, DecoderConfig
from ..methods.iseg.options import ISegOptions
from ..options import parse_options
from ..priors import get_prior
from ..samples import sample_mesh
from .report import Row, write_report

EDGE_15K = 0.054  # subdivision edge length that gives the stool 14,924 vertices
QUICK = {
    "views": 6,
    "resolution": 64,
    "encoder_steps": 10,
    "click_vertices": 8,
    "views_per_click": 1,
    "second_clicks": 1,
    "decoder_steps": 10,
}


def _click_sets(scene: Any, n: int) -> list[list[list[int]]]:
    """n different three-click queries (two positive, one negative) spread over the mesh.

    Every timed call gets a new click set, so a method that memoises answers is not timed on a hit.
    """
    order = np.argsort(scene.vertices[:, 2])
    picks = np.random.default_rng(0).choice(len(order), (n, 3), replace=True)
    return [[[int(order[a]), 1], [int(order[b]), 1], [int(order[c]), -1]] for a, b, c in picks]


def _per_call(fn: Any, args: list[Any]) -> tuple[float, float]:
    """Median wall and process-CPU seconds of fn(arg) over distinct args, after one warm-up call.

    CPU time is what the call itself consumed: on a shared machine the wall time grows with the other
    processes' load, the CPU time does not (it is the wall time the call takes on an idle core).
    """
    fn(args[0])
    wall, cpu = [], []
    for a in args:
        t0, c0 = time.perf_counter(), time.process_time()
        fn(a)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return float(np.median(wall)), float(np.median(cpu))


def run(out_dir: Path, quick: bool = False) -> dict:
    scene = sample_mesh(max_edge=0.3 if quick else EDGE_15K)
    n = len(scene.vertices)
    case = f"{n:,}-vertex mesh"
    method = ISeg()
    opts = parse_options(ISegOptions, QUICK if quick else {}, scene=scene)
    t0, c0 = time.perf_counter(), time.process_time()
    state = method.prepare(scene, get_prior("geometric"), opts, JobContext())
    prepare_s, prepare_cpu = time.perf_counter() - t0, time.process_time() - c0

    sets = _click_sets(scene, 4 if quick else 12)
    light_s = _per_call(lambda c: method.query(scene, state, {"clicks": c, "refine": False}), sets)
    t0 = time.perf_counter()
    method.query(scene, state, {"clicks": sets[0][:1]})
    refine_first_s = time.perf_counter() - t0

    def next_click(c: list[list[int]]) -> None:
        method.query(scene, state, {"clicks": c})

    for c in sets:
        method.query(scene, state, {"clicks": c[:2]})
    refined_s = _per_call(next_click, sets)

    features = state.tensors["features"]
    full = ClickScorer(Decoder(DecoderConfig(dim=features.shape[1], widths=PRESETS["full"])), features)
    full_s = _per_call(lambda c: full(torch.tensor([v for v, _ in c]), torch.tensor([s > 0 for _, s in c])), sets)

    baseline = RandomWalkBaseline(mesh_geometry(scene.vertices, scene.faces))
    base_s = _per_call(lambda c: baseline.query([(v, s) for v, s in c]), sets)

    base_name = "eval baseline (random walk)"
    rows = []
    for kind, i in (("wall", 0), ("CPU", 1)):
        for label, t in (
            ("light decoder", light_s),
            ("iSeg full decoder", full_s),
            ("light decoder + crease refinement (default)", refined_s),
        ):
            rows.append(
                Row(case, f"{kind} time per click, {label}", 1e3 * t[i], "ms", base_name, 1e3 * base_s[i], "< 100 ms")
            )
    rows += [
        Row(case, "first refined click on a mesh (crease graph + factorisations)", 1e3 * refine_first_s, "ms"),
        Row(case, "wall time of prepare (geometric prior, CPU defaults)", prepare_s, "s", target="< 300 s"),
        Row(case, "CPU time of prepare (geometric prior, CPU defaults)", prepare_cpu, "s", target="< 300 s"),
    ]
    extra = {
        "n_vertices": n,
        "n_faces": len(scene.faces),
        "click_sets": sets,
        "torch_threads": torch.get_num_threads(),
        "load_average_1_5_15": list(os.getloadavg()),
        "options": state.meta["options"],
        "prepare_stages_s": state.meta["timings"],
        "training_samples": state.meta["samples"],
        "quick": quick,
    }
    return write_report("iseg", out_dir, rows, extra)
