"""`segany eval`: every target of every shape, clicked by the protocol, for one or more methods and the baseline.

Several methods (`--method saga,iseg,sa3d,walk`) run in one pass over the shapes, so their rows share the
date, commit, targets and clicks; a method that does not work on a shape's scene kind is skipped there and
the shape's record says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SegAnyError
from ..methods.queries import MAX_CLICKS
from ..scene import MeshScene, PointScene
from .clicks import next_click
from .data import Shape, iter_shapes, shape_ids
from .geometry import Geometry, mesh_geometry, point_geometry
from .metrics import iou
from .report import build_results, write_outputs
from .scorers import BaselineScorer, EngineScorer, Scorer
from .targets import Target, select_targets

Progress = Callable[[float, str], None]


def shape_geometry(shape: Shape) -> Geometry:
    scene = shape.scene
    if isinstance(scene, MeshScene):
        geom = mesh_geometry(scene.vertices, scene.faces)
    else:
        geom = point_geometry(scene.xyz if isinstance(scene, PointScene) else scene.means)
    if len(shape.labels) != geom.n_labelled:
        unit = "faces" if isinstance(scene, MeshScene) else "elements"
        raise SegAnyError("invalid_array", f"shape {shape.id}: {len(shape.labels)} labels for {geom.n_labelled} {unit}")
    return geom


def click_target(geom: Geometry, target: Target, scorer: Scorer, clicks: int) -> dict[str, Any]:
    """One target: up to `clicks` simulated clicks, the IoU and query time after each.

    Once nothing is wrong no further click is simulated and the curve keeps its last value (1.0).
    """
    pred = np.zeros(geom.n_labelled, dtype=bool)
    done: list[list[int]] = []
    curve: list[float] = []
    seconds: list[float] = []
    for _ in range(clicks):
        click = next_click(geom, target.mask, pred)
        if click is None:
            curve.append(curve[-1] if curve else 1.0)
            continue
        done.append([click[0], click[1]])
        t0 = time.perf_counter()
        selection = scorer.query([(e, s) for e, s in done])
        seconds.append(time.perf_counter() - t0)
        pred = geom.predicted(selection.scores, selection.threshold)
        curve.append(iou(target.mask, pred, geom.weights))
    return {"label": target.label, "fraction": target.fraction, "iou": curve, "clicks": done, "seconds": seconds}


def evaluate_shape(
    shape: Shape, scorers: list[Scorer], clicks: int, progress: Progress | None = None
) -> dict[str, Any]:
    geom = shape_geometry(shape)
    targets = select_targets(shape.labels, geom.weights)
    scene = shape.scene
    record: dict[str, Any] = {
        "id": shape.id,
        "category": shape.category,
        "kind": scene.kind,
        "source": shape.source,
        "n_vertices": int(scene.n_elements),
        "n_faces": len(scene.faces) if isinstance(scene, MeshScene) else 0,
        "targets": [{"label": t.label, "fraction": t.fraction} for t in targets],
        "methods": {},
    }
    record["skipped"] = {s.name: f"works on {', '.join(s.scene_kinds)} scenes" for s in scorers if not s.fits(scene)}
    scorers = [s for s in scorers if s.fits(scene)]
    for i, scorer in enumerate(scorers):
        if progress:
            progress(i / len(scorers), f"{shape.id}: preparing {scorer.name}")
        t0 = time.perf_counter()
        note = scorer.prepare(shape, geom)
        prepare_seconds = time.perf_counter() - t0
        try:
            runs = []
            for j, target in enumerate(targets):
                if progress:
                    progress((i + j / max(len(targets), 1)) / len(scorers), f"{shape.id}: {scorer.name} target {j + 1}")
                runs.append(click_target(geom, target, scorer, clicks))
        finally:
            scorer.release()
        record["methods"][scorer.name] = {"prepare_seconds": prepare_seconds, "prepare_note": note, "targets": runs}
    return record


def method_names(method: str) -> list[str]:
    """The rows a `--method` value names: one name, or several joined by commas (each at most once). A row
    `name@label` runs method `name` under its own row name, so one method can be evaluated twice in one run
    with different --options / --query keyed by the row name (saga@reference: `"scale": "reference"`)."""
    names = [m.strip() for m in method.split(",")]
    if (
        not all(n.partition("@")[0] for n in names)
        or len(set(names)) != len(names)
        or ("baseline" in names and len(names) > 1)
    ):
        raise SegAnyError(
            "bad_request",
            f"--method takes method names separated by commas, each once (e.g. saga,iseg,walk; the baseline "
            f"always runs), or baseline alone: {method!r}",
        )
    return names


def options_for(name: str, options: dict[str, Any] | None, names: list[str]) -> dict[str, Any]:
    """One method's share of --options / --query: a key naming an evaluated method holds that method's own
    keys; every other key goes to every method (so a single method's flat options read as before)."""
    options = options or {}
    own = options.get(name, {})
    if not isinstance(own, dict):
        raise SegAnyError("bad_request", f"options under the method name {name!r} must be a JSON object, got {own!r}")
    return {**{k: v for k, v in options.items() if k not in names}, **own}


def run_eval(
    method: str,
    prior: str | None,
    data: Path,
    ids: list[str] | None,
    clicks: int,
    out: Path,
    engine: Any = None,
    prior_options: dict[str, Any] | None = None,
    method_options: dict[str, Any] | None = None,
    progress: Progress | None = None,
    query_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate `method` (through the Engine; several joined by commas) and the baseline on every shape;
    write the three outputs.

    `method="baseline"` evaluates the baseline alone; `query_options` go into every query next to the
    clicks (see `options_for` for several methods). results.json is rewritten after every shape, so an
    interrupted run keeps what it finished.
    """
    if not 1 <= clicks <= MAX_CLICKS:  # every query carries all clicks so far, and a query takes MAX_CLICKS
        raise SegAnyError("bad_request", f"clicks (--clicks) must lie in 1..{MAX_CLICKS} (a query's limit): {clicks}")
    out = Path(out)
    data = Path(data)
    own_engine = None
    scorers: list[Scorer] = []
    names = method_names(method)
    if names != ["baseline"]:
        if engine is None:
            from ..engine import Engine

            engine = own_engine = Engine()
        for name in names:
            opts, query = options_for(name, method_options, names), options_for(name, query_options, names)
            scorers.append(
                EngineScorer(engine, name, prior, opts, prior_options, query)
            )  # name@label: see method_names
    scorers.append(BaselineScorer())
    config = {
        "method": method,
        "methods": names,
        "prior": prior if method != "baseline" else None,
        "method_options": method_options or {},
        "prior_options": prior_options or {},
        "query_options": query_options or {},
        "clicks": clicks,
        "data": str(data.resolve()),
        "ids": ids,
    }
    shapes: list[dict[str, Any]] = []
    try:
        wanted = [str(i) for i in ids] if ids else shape_ids(data)
        for n, shape in enumerate(iter_shapes(data, wanted)):
            sub = None
            if progress:

                def sub(f: float, msg: str, n: int = n) -> None:
                    progress((n + f) / len(wanted), msg)

            shapes.append(evaluate_shape(shape, scorers, clicks, sub))
            write_outputs(build_results(config, shapes), out, plot_png=False)
    finally:
        if own_engine is not None:
            own_engine.close()
    results = build_results(config, shapes)
    write_outputs(results, out, plot_png=True)
    if progress:
        progress(1.0, "done")
    return results
