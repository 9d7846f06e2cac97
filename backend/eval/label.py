"""`segany eval --task label`: label every shape from its part names and score per-element mIoU per variant.

Each shape's segments carry names (part_names.json, per category and shape: a chair's seat, back and legs;
segments of one kind share a name, so the four legs are one label). The method labels the shape from the
distinct names through the Engine, once per variant: each language source alone (`source:<name>`), their
plain average (`average`), SAS's capability-guided fusion as published (`fused:sas`: per-word capability),
the method's fusion (`fused`: besides, each source's view evidence at the element) and fusion with the 3D step,
named for SAS's superpoint stage (`fused+superpoints`: the fused scores spread over the walk graph). The score is the
mean over names of the IoU of the elements labelled with a name and the elements carrying it, weighted by
face area on meshes (a face takes the word its three vertices are most relevant to on average) and by
count on splats and points.

A language source that knows the truth (`oracle_text`) is given the labels and names; no other prior is.
The report also says whether the capability a method estimates ranks the sources the way their true
per-name IoU does (`capability_ranking`: of the (shape, name, source pair) cases where the true IoUs differ
by more than RANK_MARGIN, the share the estimate orders the same way).

results.json (schema 1):

    {"schema": 1, "task": "label",
     "summary": {"<variant>": {"miou": float (percent), "shapes": int}},
     "capability_ranking": {"agree": int, "cases": int, "share": float | null},
     "categories": {"<category>": {"<variant>": {"miou": float, "shapes": int}}},
     "shapes": [{"id", "category", "kind", "words": [...], "prepare_seconds": float,
                 "variants": {"<variant>": {"miou": float, "iou": {"<word>": float}, "seconds": float}},
                 "capability": {"<source>": {"<word>": float}}}],
     "config": {"method", "prior", "method_options", "prior_options", "data", "ids", date, commit, command}}
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SegAnyError
from ..jsonable import jsonable
from ..methods.sas.calibration import model_id
from ..provenance import stamp, stamp_line
from ..scene import MeshScene
from .calibration import SOURCE, calibration_table, load_table, table_capability
from .data import NAMES_FILE, Shape, iter_shapes, shape_ids
from .run import shape_geometry

PACKAGED_NAMES = Path(__file__).with_name(NAMES_FILE)  # the PSB development shapes' part names
RANK_MARGIN = 0.05  # true IoUs closer than this do not rank two sources
CALIBRATED = "fused:calibrated"  # SAS's fusion with capabilities from a calibration table (--calibration)
Progress = Callable[[float, str], None]


def part_names(category: str, shape_id: str, labels: np.ndarray, data: Path | None = None) -> list[str]:
    """The name of every label value 0..max: from the data directory's part_names.json (same layout as the
    packaged one, category → shape id → names) when it names the shape, else the packaged table's (PSB),
    else "part <value>"."""
    table = given_names(category, shape_id, data)
    top = int(labels.max()) + 1 if len(labels) else 0
    return [table[v] if v < len(table) else f"part {v}" for v in range(top)]


def given_names(category: str, shape_id: str, data: Path | None = None) -> list[str]:
    """The names a table gives the shape's label values (the data directory's, else the packaged); [] if none."""
    table = _names_table(Path(data) / NAMES_FILE).get(category, {}).get(shape_id) if data else None
    return table or json.loads(PACKAGED_NAMES.read_text()).get(category, {}).get(shape_id, [])


def _names_table(path: Path) -> dict[str, dict[str, list[str]]]:
    if not path.is_file():
        return {}
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SegAnyError("corrupt_file", f"{path} is not JSON (category → shape id → part names): {exc}") from exc
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise SegAnyError("corrupt_file", f"{path} must map categories to {{shape id: [part names]}}")
    return table


def predicted_words(shape: Shape, relevancy: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per labelled element the index of its word: a mesh face the word its vertices are most relevant to on
    average, a splat or point its own label."""
    if isinstance(shape.scene, MeshScene):
        return relevancy[shape.scene.faces].mean(axis=1).argmax(axis=1)
    return labels


def word_ious(truth: np.ndarray, pred: np.ndarray, weights: np.ndarray, n_words: int) -> np.ndarray:
    """Weighted IoU per word (n_words,)."""
    inter = np.bincount(truth[truth == pred], weights=weights[truth == pred], minlength=n_words)
    total = np.bincount(truth, weights=weights, minlength=n_words) + np.bincount(
        pred, weights=weights, minlength=n_words
    )
    union = total - inter
    return np.divide(inter, union, out=np.zeros(n_words), where=union > 0)


def variants(sources: list[str]) -> dict[str, dict[str, Any]]:
    """Each variant's query keys besides the words."""
    out: dict[str, dict[str, Any]] = {f"source:{s}": {"source": s, "superpoints": False} for s in sources}
    out["average"] = {"fusion": "average", "superpoints": False}
    out["fused:sas"] = {"fusion": "sas", "superpoints": False}
    out["fused"] = {"superpoints": False}
    out["fused+superpoints"] = {"superpoints": True}
    return out


def ranking(capability: dict[str, dict[str, float]], true: dict[str, dict[str, float]]) -> tuple[int, int]:
    """(agree, cases): source pairs per word whose true IoUs differ by more than RANK_MARGIN, and how many
    of those the capability estimate orders the same way."""
    agree = cases = 0
    names = list(capability)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            for word in capability[a]:
                gap = true[a][word] - true[b][word]
                if abs(gap) > RANK_MARGIN:
                    cases += 1
                    agree += int(np.sign(capability[a][word] - capability[b][word]) == np.sign(gap))
    return agree, cases


def label_shape(
    engine: Any,
    method: str,
    prior: str,
    shape: Shape,
    method_options: dict,
    prior_options: dict,
    *,
    data: Path | None = None,
    calibration: dict | None = None,
    sources_only: bool = False,
) -> dict:
    """Prepare `method` on one shape, run every variant (with `calibration`, also fusion by that table;
    `sources_only`: each source alone, what a calibration measures), score it."""
    geom = shape_geometry(shape)
    names = part_names(shape.category, shape.id, shape.labels, data)
    words = sorted(set(np.asarray(names, dtype=object)[np.unique(shape.labels)].tolist()))
    truth = np.searchsorted(words, np.asarray(names, dtype=object)[shape.labels].astype(str))
    sid = engine.add_scene(shape.scene)
    popts = dict(prior_options)
    if prior == "oracle_text":
        popts.update(labels=shape.labels, names=names)
    try:
        t0 = time.perf_counter()
        engine.prepare(method, sid, prior=prior, options=method_options, prior_options=popts)
        prepare_seconds = time.perf_counter() - t0
        state = engine.state(method, sid, prior)
        sources = list(state.meta["sources"])
        models = {name: model_id(source) for name, source in state.prior.text_sources().items()}
        record: dict[str, Any] = {
            "id": shape.id, "category": shape.category, "kind": shape.scene.kind, "words": words,
            "prepare_seconds": prepare_seconds, "variants": {}, "models": models,
        }  # fmt: skip
        todo = variants(sources)
        if sources_only:
            todo = {v: keys for v, keys in todo.items() if "source" in keys}
        if calibration is not None:
            todo[CALIBRATED] = {"superpoints": False, "calibration": calibration}
        capability = None
        for variant, keys in todo.items():
            t1 = time.perf_counter()
            # a face takes the word its vertices are most relevant to: the per-word relevancy is asked for
            sel = engine.query(method, sid, {"words": words, "relevancy": True, **keys}, prior=prior)
            seconds = time.perf_counter() - t1
            pred = predicted_words(shape, sel.extras["relevancy"], sel.extras["labels"])
            ious = word_ious(truth, pred, geom.weights, len(words))
            record["variants"][variant] = {
                "miou": 100.0 * float(ious.mean()),
                "iou": dict(zip(words, ious.tolist(), strict=True)),
                "seconds": seconds,
            }
            if "calibration" not in keys:  # the scene's own estimate, which the ranking judges
                capability = sel.extras["capability"]
        record["capability"] = {s: dict(zip(words, capability[i].tolist(), strict=True)) for i, s in enumerate(sources)}
        return record
    finally:
        engine.drop_scene(sid)


def _summary(shapes: list[dict]) -> dict[str, dict[str, float]]:
    names = list(dict.fromkeys(v for s in shapes for v in s["variants"]))
    out = {}
    for v in names:
        values = [s["variants"][v]["miou"] for s in shapes if v in s["variants"]]
        out[v] = {"miou": float(np.mean(values)), "shapes": len(values)}
    return out


def _true(shape: dict) -> dict[str, dict[str, float]]:
    """Per source, its true per-word IoU on the shape (the `source:<name>` variants)."""
    return {name[len(SOURCE) :]: v["iou"] for name, v in shape["variants"].items() if name.startswith(SOURCE)}


def _ranked(pairs: list[tuple[dict, dict]]) -> dict[str, Any]:
    """Sum of `ranking` over (capability, true) pairs, as results.json keeps it."""
    agree = cases = 0
    for capability, true in pairs:
        a, c = ranking(capability, true)
        agree, cases = agree + a, cases + c
    return {"agree": agree, "cases": cases, "share": agree / cases if cases else None}


def leave_one_out(shapes: list[dict]) -> dict[str, Any]:
    """The ranking when each shape's capability is the table measured on all the other shapes (a calibration
    set that never saw the shape), plus how many of the shapes' words that table covered."""
    pairs, covered, words = [], 0, 0
    for i, s in enumerate(shapes):
        others = shapes[:i] + shapes[i + 1 :]
        words += len(s["words"])
        if not others:
            continue
        capability = table_capability(calibration_table(others, ""), s["words"])
        covered += len(next(iter(capability.values()), {}))
        pairs.append((capability, _true(s)))
    return {**_ranked(pairs), "words_covered": covered, "words": words}


def build_label_results(config: dict, shapes: list[dict], calibration: dict | None = None) -> dict[str, Any]:
    categories = sorted({s["category"] for s in shapes})
    rankings = {"leave_one_out": leave_one_out(shapes)}
    if calibration is not None:
        rankings["given"] = _ranked([(table_capability(calibration, s["words"]), _true(s)) for s in shapes])
    return {
        "schema": 1,
        "task": "label",
        "summary": _summary(shapes),
        "capability_ranking": _ranked([(s["capability"], _true(s)) for s in shapes]),
        "calibration_ranking": rankings,
        "categories": {c: _summary([s for s in shapes if s["category"] == c]) for c in categories},
        "shapes": shapes,
        "config": {**config, **stamp()},
    }


def label_markdown(results: dict[str, Any]) -> str:
    cfg = results["config"]
    lines = [
        f"### Label mIoU: {cfg['method']} with prior {cfg['prior']}",
        "",
        stamp_line(cfg),
        "",
        "| variant | mIoU | shapes |",
        "|---|---:|---:|",
    ]
    lines += [f"| {v} | {e['miou']:.1f} | {e['shapes']} |" for v, e in results["summary"].items()]
    rank = results["capability_ranking"]
    share = "n/a" if rank["share"] is None else f"{100 * rank['share']:.0f}%"
    lines += ["", f"Capability ranks the sources like their true per-word IoU in {share} of {rank['cases']} cases."]
    for key, how in (("leave_one_out", "measured on the other shapes (leave one out)"), ("given", "from the table")):
        rank = results.get("calibration_ranking", {}).get(key)
        if rank is not None:
            share = "n/a" if rank["share"] is None else f"{100 * rank['share']:.0f}%"
            lines.append(f"Calibrated capability {how} ranks them so in {share} of {rank['cases']} cases.")
    if results["categories"]:
        variants_ = list(results["summary"])
        lines += ["", "| category | " + " | ".join(variants_) + " |", "|---|" + "---:|" * len(variants_)]
        for c, entry in results["categories"].items():
            lines.append(
                f"| {c} | " + " | ".join(f"{entry[v]['miou']:.1f}" if v in entry else "" for v in variants_) + " |"
            )
    return "\n".join(lines) + "\n"


def label_plot(results: dict[str, Any], path: Path) -> None:
    """mIoU per variant, one bar each, overall."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["summary"])
    values = [results["summary"][v]["miou"] for v in names]
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=120)
    bars = ax.bar(range(len(names)), values, color=["#9aa" if n.startswith("source:") else "#47a" for n in names])
    ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    ax.set_ylabel("mIoU (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"label: {len(results['shapes'])} shapes, mean over shapes of the mean over names", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run_label_eval(
    method: str,
    prior: str,
    data: Path,
    ids: list[str] | None,
    out: Path,
    engine: Any,
    prior_options: dict[str, Any] | None = None,
    method_options: dict[str, Any] | None = None,
    progress: Progress | None = None,
    calibration: Path | None = None,
) -> dict[str, Any]:
    """Label every shape of `data` with `method`; writes results.json, report.md and label_miou.png to `out`.
    With a `calibration` file, also fusion by its table (variant fused:calibrated) and its ranking."""
    if prior is None:
        raise SegAnyError("bad_request", "the label task needs a language prior, e.g. --prior oracle_text")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    wanted = [str(i) for i in ids] if ids else shape_ids(Path(data))
    table = load_table(calibration) if calibration is not None else None
    config = {
        "method": method, "prior": prior, "method_options": method_options or {},
        "prior_options": prior_options or {}, "data": str(Path(data).resolve()), "ids": ids,
        "calibration": str(calibration) if calibration is not None else None,
    }  # fmt: skip
    shapes = []
    for n, shape in enumerate(iter_shapes(Path(data), wanted)):
        if progress:
            progress(n / len(wanted), f"{shape.id}: labelling")
        record = label_shape(
            engine, method, prior, shape, method_options or {}, prior_options or {}, data=Path(data), calibration=table
        )
        shapes.append(record)
        (out / "results.json").write_text(json.dumps(jsonable(build_label_results(config, shapes, table)), indent=1))
    results = build_label_results(config, shapes, table)
    (out / "results.json").write_text(json.dumps(jsonable(results), indent=1))
    (out / "report.md").write_text(label_markdown(results))
    label_plot(results, out / "label_miou.png")
    return results


def run_calibrate(
    method: str,
    prior: str,
    data: Path,
    ids: list[str] | None,
    out: Path,
    engine: Any,
    prior_options: dict[str, Any] | None = None,
    method_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Measure each language source's per-word IoU on the labelled shapes of `data`; write the table to `out`
    (the JSON a label query's `calibration` takes) and return it."""
    wanted = [str(i) for i in ids] if ids else shape_ids(Path(data))
    shapes = []
    for shape in iter_shapes(Path(data), wanted):
        if not given_names(shape.category, shape.id, data):
            raise SegAnyError(
                "bad_request",
                f"shape {shape.id} ({shape.category}) has no part names, and a calibration measures words: name its "
                f"labels in {Path(data) / NAMES_FILE} (category → shape id → the name of each label value)",
            )
        opts = (method_options or {}, prior_options or {})
        shapes.append(label_shape(engine, method, prior, shape, *opts, data=Path(data), sources_only=True))
    made = stamp()
    note = (
        f"per-word IoU of each source alone on {len(shapes)} scenes of {Path(data).resolve()} ({', '.join(wanted)}),"
        f" by `{made['command']}` on {made['date']} at commit {made['commit']}"
    )
    table = calibration_table(shapes, note)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(table, indent=1))
    return table
