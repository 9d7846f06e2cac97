"""segany bench walk: the `walk` method's one-time graph build and its time per click on splat scenes, against
today's walk solve on the same graph, alternating.

Scenes: the real `donut.ply` (45,624 Gaussians, shared data; left out when absent) and a million Gaussians
sampled on the built-in stool (`segany.eval.generate.splats_from_mesh`), which the walk coarsens to
`max_nodes` centres. Ours is the walk method's graph (`SeededCreaseGraph`: one LDLᵀ per pull, a path solve
per seeded node, one triangular pass per click); the baseline is `segany.graphwalk.CreaseGraph` on the same
nodes, edges and weights (SuperLU with its default ordering, one full solve per seeded node), i.e. the
evaluation baseline's and iSeg's solve. Both answer the same click lists through the same `ClickWalker`,
as an artist clicks: a first click, then a negative and a positive one, each a new spot; the two are timed
alternately (A B A B) and the per-click ratio's median and quartiles are reported beside the medians. Wall
and process-CPU time are both kept: on a shared machine the wall time grows with the other processes' load.
The answers of the two are compared too (selected elements that differ, in `extra`). "G" in a case name is
Gaussians; the paired ratio is ours / baseline (quartiles in `extra`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..clock import clock, since
from ..formats import load_scene
from ..graphwalk import FIRST_PULL, FOLLOW_PULL, CreaseGraph
from ..methods.walk.graph import element_attributes, knn_edges, scene_graph
from ..methods.walk.options import WalkOptions
from ..methods.walk.solve import SeededCreaseGraph
from ..methods.walk.walker import ClickWalker
from ..options import parse_options
from ..samples import sample_mesh, shared_data_dir
from ..scene import Scene
from .report import Row, click_rows, write_report

DONUT = shared_data_dir() / "splats" / "donut.ply"
BIG = 1_000_000
TARGET = "≤ 100 ms"


def _big_scene(n: int) -> Scene:
    from ..eval.generate import splats_from_mesh

    mesh = sample_mesh()
    scene, _ = splats_from_mesh(mesh, mesh.face_parts, n, seed=0)
    return scene


def _build(scene: Scene, opts: WalkOptions) -> tuple[SeededCreaseGraph, dict[str, float]]:
    """The method's graph and factorisations, timed by stage (kNN alone, then everything)."""
    positions = element_attributes(scene)[0]
    t0 = time.perf_counter()
    knn_edges(positions, opts.neighbours)
    knn_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    graph = scene_graph(scene, opts.colour, opts.neighbours, opts.max_nodes)
    graph_s = time.perf_counter() - t0
    if not isinstance(graph, SeededCreaseGraph):
        raise TypeError("the walk bench times point and splat scenes")
    t0 = time.perf_counter()
    for gamma in (FIRST_PULL, FOLLOW_PULL):
        graph.factor(gamma)
    factor_s = time.perf_counter() - t0
    return graph, {"knn_s": knn_s, "graph_s": graph_s, "factorisations_s": factor_s, "total_s": graph_s + factor_s}


def _click_lists(n: int, sets: int, seed: int) -> list[list[tuple[int, int]]]:
    """`sets` click lists of three new spots each: positive, negative, positive."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(n, (sets, 3), replace=False)
    return [[(int(a), 1), (int(b), -1), (int(c), 1)] for a, b, c in picks]


def _race(ours: ClickWalker, base: ClickWalker, lists: list[list[tuple[int, int]]]) -> dict[str, Any]:
    """Per click position, wall / CPU seconds of ours and the baseline, alternating which goes first."""
    times: dict[str, list[list[float]]] = {k: [[], [], []] for k in ("ours_wall", "ours_cpu", "base_wall", "base_cpu")}
    differ = 0
    for i, clicks in enumerate(lists):
        order = (("ours", ours), ("base", base)) if i % 2 == 0 else (("base", base), ("ours", ours))
        answers: dict[str, np.ndarray] = {}
        for k in range(3):
            for name, walker in order:
                start = clock()
                answers[name] = walker.scores(clicks[: k + 1])
                wall, cpu = since(start)
                times[f"{name}_wall"][k].append(wall)
                times[f"{name}_cpu"][k].append(cpu)
            differ += int(((answers["ours"] >= 0.5) != (answers["base"] >= 0.5)).sum())
    return {"times": times, "differing_selections": differ}


def _rows(case: str, race: dict[str, Any], extra: dict[str, Any]) -> list[Row]:
    labels = ("first click", "second click (negative)", "third click (positive)")
    return click_rows(case, labels, race["times"], "CreaseGraph solve", TARGET, extra)


def _scene_rows(name: str, scene: Scene, opts: WalkOptions, sets: int, extra: dict[str, Any]) -> list[Row]:
    graph, build = _build(scene, opts)
    g = graph
    base_graph = CreaseGraph(g.edges, g.edge_weights, g.n, g.seed_of, g.to_elements, g.positions)
    coarse = f" → {graph.n:,} nodes" if graph.n < scene.n_elements else ""
    case = f"{name}, {scene.n_elements:,} G{coarse}"
    race = _race(ClickWalker(graph), ClickWalker(base_graph), _click_lists(scene.n_elements, sets, seed=1))
    extra.setdefault("build", {})[case] = build
    extra.setdefault("differing_selected_elements", {})[case] = race["differing_selections"]
    extra.setdefault("factor_nonzeros", {})[case] = {str(g): graph.factor(g).nnz for g in (FIRST_PULL, FOLLOW_PULL)}
    rows = _rows(case, race, extra)
    rows.append(Row(case, "graph build, once (kNN, weights, coarsening, 2 factorisations)", build["total_s"], "s"))
    rows.append(Row(case, "of which the kNN search", build["knn_s"], "s"))
    return rows


def run(out_dir: Path, quick: bool = False) -> dict:
    opts = parse_options(WalkOptions)
    extra: dict[str, Any] = {"options": opts.to_dict(), "quick": quick, "load_average_1_5_15": list(os.getloadavg())}
    rows: list[Row] = []
    if quick:
        rows += _scene_rows("stool", _big_scene(6_000), parse_options(WalkOptions, {"max_nodes": 2_000}), 2, extra)
    else:
        if DONUT.is_file():
            rows += _scene_rows("donut.ply", load_scene(DONUT), opts, 12, extra)
        else:
            extra["donut"] = f"{DONUT} not found: its rows are left out"
        rows += _scene_rows("stool", _big_scene(BIG), opts, 12, extra)
    extra["load_average_1_5_15_after"] = list(os.getloadavg())
    return write_report("walk", out_dir, rows, extra)
