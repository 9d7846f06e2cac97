"""`segany eval --task everything`: split each shape into parts and score them with the benchmark's Rand Index.

Per shape: prepare the method, ask it for every part (`Engine.everything`, the query's scale "auto" unless
given), and score 1 − Rand Index against every human segmentation of the shape (PSB: all `seg/<id>/*.seg`;
a labelled PLY: its one `label`), averaged over them, as Chen, Golovinskiy and Funkhouser's benchmark does.
On a mesh a face takes the part two or three of its corners share (vertices are what a method labels,
faces what humans labelled). Beside it stand the humans' agreement with each other on the same shape (each
human scored against the others), the paper's published overall figures (`published.py`) and, as a floor,
one part for the whole shape.

The query's `"parts": "humans"` gives each shape the humans' own part count (the most common count among
its segmentations), as the benchmark gave it to five of its seven published algorithms (`published.py`):
a figure to compare with theirs, labelled so in the report, never with the automatic one.

results.json (schema 1; add keys, never rename or remove them):

    {"schema": 1, "task": "everything",
     "summary": {"<method>" | "human" | "one part": {"rand_index_error": float (mean over shapes),
                 "rand_index_error_by_category": {"<category>": float}, "shapes": int,
                 "parts": float (mean part count; not for "human")}},
     "shapes": [{"id", "category", "kind", "source", "n_elements", "n_faces", "humans": int,
                 "methods": {"<method>": {"rand_index_error": float, "parts": int, "scales": [float],
                              "prepare_seconds": float, "everything_seconds": float, "picture": str},
                             "one part": {...}, "human": {"rand_index_error": float} (PSB, ≥ 2 humans)}}],
     "published": {...published.PUBLISHED},
     "config": {"task", "method", "prior", "method_options", "prior_options", "query", "data", "ids",
                "date", "commit", "command", "versions"}}
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SegAnyError
from ..jsonable import jsonable
from ..provenance import stamp, stamp_line
from ..scene import MeshScene
from .data import Shape, _face_majority, is_psb, iter_shapes, load_psb_humans, shape_ids
from .published import PUBLISHED
from .rand_index import rand_index_error
from .report import fitted_title

Progress = Callable[[float, str], None]
HUMAN, ONE_PART = "human", "one part"


def humans_of(data: Path, shape: Shape) -> list[np.ndarray]:
    """Every human segmentation of the shape: all of a PSB shape's, a labelled PLY's one."""
    return load_psb_humans(data, shape.id, len(shape.labels)) if is_psb(data) else [shape.labels]


def scored_labels(shape: Shape, parts: np.ndarray) -> np.ndarray:
    """Parts per scored element: per face on a mesh (the part its corners share), else per element."""
    if isinstance(shape.scene, MeshScene):
        return _face_majority(shape.scene.faces, parts)
    return parts


def human_error(humans: list[np.ndarray]) -> float | None:
    """The humans' own figure: each segmentation scored against all the others, averaged (None with one)."""
    if len(humans) < 2:
        return None
    return float(np.mean([rand_index_error(h, humans[:k] + humans[k + 1 :]) for k, h in enumerate(humans)]))


def humans_count(humans: list[np.ndarray]) -> int:
    """The most common part count among the humans' segmentations (the smallest on a tie): the benchmark's
    'per model mode' count."""
    counts = np.array([len(np.unique(h)) for h in humans])
    values, times = np.unique(counts, return_counts=True)
    return int(values[np.argmax(times)])


def evaluate_shape(
    engine: Any, shape: Shape, humans: list[np.ndarray], config: dict[str, Any], pictures: Path | None
) -> dict[str, Any]:
    """One shape's record (see the schema)."""
    from ..picture import render_parts

    method, prior = config["method"], config["prior"]
    scene = shape.scene
    sid = engine.add_scene(scene)
    try:
        t0 = time.perf_counter()
        engine.prepare(method, sid, prior, config["method_options"], config["prior_options"])
        t1 = time.perf_counter()
        query = dict(config["query"])
        if query.get("parts") == "humans":
            query["parts"] = humans_count(humans)
        parts = engine.everything(method, sid, query, prior=prior)
        t2 = time.perf_counter()
    finally:
        engine.drop_scene(sid)  # a long run must not hold every shape's scene and state
    entry = {
        "rand_index_error": rand_index_error(scored_labels(shape, parts.labels), humans),
        "parts": len(parts.colours),
        **({"given_parts": query["parts"]} if "parts" in query else {}),
        "scales": [float(s) for s in parts.extras.get("scales", [])],
        "prepare_seconds": t1 - t0,
        "everything_seconds": t2 - t1,
    }
    if pictures is not None:
        entry["picture"] = str(render_parts(scene, parts.labels, parts.colours, pictures / f"{shape.id}.png"))
    methods = {method: entry, ONE_PART: {"rand_index_error": rand_index_error(np.zeros_like(shape.labels), humans)}}
    methods[ONE_PART]["parts"] = 1
    human = human_error(humans)
    if human is not None:
        methods[HUMAN] = {"rand_index_error": human}
    return {
        "id": shape.id,
        "category": shape.category,
        "kind": scene.kind,
        "source": shape.source,
        "n_elements": int(scene.n_elements),
        "n_faces": len(scene.faces) if isinstance(scene, MeshScene) else 0,
        "humans": len(humans),
        "methods": methods,
    }


def summarize(shapes: list[dict[str, Any]]) -> dict[str, Any]:
    """Per method: the mean error over shapes, per category, and the mean part count."""
    names: list[str] = []
    for s in shapes:
        names += [m for m in s["methods"] if m not in names]
    summary = {}
    for name in names:
        rows = [(s["category"], s["methods"][name]) for s in shapes if name in s["methods"]]
        by_cat: dict[str, list[float]] = {}
        for cat, rec in rows:
            by_cat.setdefault(cat, []).append(rec["rand_index_error"])
        entry: dict[str, Any] = {
            "rand_index_error": float(np.mean([rec["rand_index_error"] for _, rec in rows])),
            "rand_index_error_by_category": {c: float(np.mean(v)) for c, v in by_cat.items()},
            "shapes": len(rows),
        }
        if name != HUMAN:
            entry["parts"] = float(np.mean([rec["parts"] for _, rec in rows]))
        summary[name] = entry
    return summary


def markdown(results: dict[str, Any]) -> str:
    """report.md: overall and per-category tables (ours, the humans', one part) and the paper's figures."""
    cfg, summary = results["config"], results["summary"]
    cats = list(dict.fromkeys(c for e in summary.values() for c in e["rand_index_error_by_category"]))
    n = len(results["shapes"])
    lines = [
        f"# segany eval --task everything: `{cfg['method']}`, prior `{cfg['prior']}`",
        "",
        stamp_line(cfg),
        "",
        f"Data `{cfg['data']}`, {n} shape{'' if n == 1 else 's'}; query `{json.dumps(cfg['query'])}`. Rand Index "
        "error = 1 − Rand Index over face pairs (elements on splats and points), averaged over every human "
        "segmentation of a shape, then over shapes; lower is better. `human`: each human segmentation scored "
        "against the others of the same shape; `one part`: the whole shape as one part.",
        "",
        *(
            [
                '**Given the humans\' part count** per shape (`"parts": "humans"`), as five of the seven '
                "published algorithms were: compare with them, not with an automatic figure.",
                "",
            ]
            if cfg["query"].get("parts") == "humans"
            else []
        ),
        "| method | shapes | parts | Rand Index error | " + " | ".join(cats) + " |",
        "|---|---:|---:|---:|" + "---:|" * len(cats),
    ]
    for name, e in summary.items():
        per = e["rand_index_error_by_category"]
        cells = [f"{per[c]:.3f}" if c in per else "–" for c in cats]
        parts = f"{e['parts']:.1f}" if "parts" in e else "–"
        lines.append(f"| {name} | {e['shapes']} | {parts} | {e['rand_index_error']:.3f} | " + " | ".join(cells) + " |")
    pub = results["published"]
    check = "" if pub["verified"] else " (quoted from memory, not yet checked against the paper)"
    lines += ["", f"Published overall figures, all 19 categories{check}: {pub['source']}.", ""]
    lines += ["| algorithm | Rand Index error |", "|---|---:|"]
    lines += [f"| {name} | {value:.3f} |" for name, value in pub["overall"].items()]
    lines += ["", pub["protocol"]]  # five of the seven were told how many parts to make: say so beside them
    lines += [
        "",
        "| shape | category | parts | " + " | ".join(summary) + " |",
        "|---|---|---:|" + "---:|" * len(summary),
    ]
    for s in results["shapes"]:
        cells = [f"{s['methods'][m]['rand_index_error']:.3f}" if m in s["methods"] else "–" for m in summary]
        lines.append(
            f"| {s['id']} | {s['category']} | {s['methods'][cfg['method']]['parts']} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """Bars per category (the method, the humans, one part) with the paper's overall figures as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = results["summary"]
    cats = list(dict.fromkeys(c for e in summary.values() for c in e["rand_index_error_by_category"]))
    groups = [*cats, "all"]
    fig, ax = plt.subplots(figsize=(max(6.4, 1.1 * len(groups) + 2), 4.2), dpi=120)
    width = 0.8 / max(len(summary), 1)
    for i, (name, e) in enumerate(summary.items()):
        values = [e["rand_index_error_by_category"].get(c, np.nan) for c in cats] + [e["rand_index_error"]]
        ax.bar(np.arange(len(groups)) + (i - (len(summary) - 1) / 2) * width, values, width, label=name)
    pub = results["published"]
    for name, style in ((pub["best_automatic"], "--"), ("Human", ":")):
        ax.axhline(pub["overall"][name], color="black", linestyle=style, linewidth=1,
                   label=f"paper, all 19 categories: {name} ({pub['overall'][name]:.3f})")  # fmt: skip
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_ylabel("Rand Index error (lower is better)")
    fitted_title(ax, f"segment everything: {results['config']['method']}, prior {results['config']['prior']}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _write(out: Path, results: dict[str, Any], png: bool) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in (("results.json", json.dumps(jsonable(results), indent=1)), ("report.md", markdown(results))):
            tmp = out / f".{name}.{os.getpid()}.tmp"
            tmp.write_text(text)
            os.replace(tmp, out / name)
        if png:
            plot(results, out / "rand_index.png")
    except OSError as exc:
        raise SegAnyError("io_error", f"cannot write the results in {out}: {exc.strerror or exc}") from exc


def run_everything_eval(
    method: str,
    prior: str | None,
    data: Path,
    ids: list[str] | None,
    out: Path,
    engine: Any,
    prior_options: dict[str, Any] | None = None,
    method_options: dict[str, Any] | None = None,
    query_options: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Segment every shape into parts and score them; writes results.json, report.md, rand_index.png and a
    picture of each shape's parts (out/parts/<id>.png). results.json is rewritten after every shape."""
    from ..methods.base import check_everything
    from .report import _versions

    check_everything(engine.method(method))  # before any shape is loaded
    out, data = Path(out), Path(data)
    config = {
        "task": "everything",
        "method": method,
        "prior": prior or engine.method(method).default_prior,
        "method_options": method_options or {},
        "prior_options": prior_options or {},
        "query": query_options or {},
        "data": str(data.resolve()),
        "ids": ids,
        **stamp(),
        "versions": _versions(),
    }
    wanted = [str(i) for i in ids] if ids else shape_ids(data)
    shapes: list[dict[str, Any]] = []
    for n, shape in enumerate(iter_shapes(data, wanted)):
        if progress:
            progress(n / len(wanted), f"{shape.id}: segmenting everything with {method}")
        shapes.append(evaluate_shape(engine, shape, humans_of(data, shape), config, out / "parts"))
        results = {"schema": 1, "task": "everything", "summary": summarize(shapes), "shapes": shapes,
                   "published": PUBLISHED, "config": config}  # fmt: skip
        _write(out, results, png=False)
    if not shapes:
        raise SegAnyError("not_found", f"no shapes to evaluate in {data}")
    _write(out, results, png=True)
    if progress:
        progress(1.0, "done")
    return results
