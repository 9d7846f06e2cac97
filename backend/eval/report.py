"""results.json, report.md and iou_vs_clicks.png of `segany eval`.

results.json schema (version 1; other tools read it — add keys, never rename or remove them):

    {
      "schema": 1,
      "summary": {                      # keyed by method name: the evaluated method and "baseline"
        "<method>": {
          "miou@1": float, "miou@3": float, "miou@5": float,   # percent, mean over all targets
          "noc@80": float, "noc@85": float, "noc@90": float,   # mean clicks to reach the IoU; the
                                                               # click budget when never reached
          "seconds_per_click": float,   # mean query time over every simulated click
          "prepare_seconds": float,     # mean per-shape prepare time (cache hits included as measured)
          "targets": int, "shapes": int,
          "mean_iou": [float, ...]      # percent after click 1..clicks, mean over targets
        }
      },
      "categories": {"<category>": {"<method>": {same keys as a summary entry}}},
      "shapes": [
        {
          "id": str, "category": str, "kind": "mesh" | "splats" | "points", "source": str,
          "n_vertices": int,            # scored elements: vertices, Gaussians or points
          "n_faces": int,               # 0 for splats and points
          "skipped": {"<method>": str}, # methods not run on this shape (another scene kind), and why
          "targets": [{"label": int, "fraction": float}],      # fraction of surface area / elements
          "methods": {
            "<method>": {
              "prepare_seconds": float, "prepare_note": str,
              "summary": {same keys as a summary entry, over this shape's targets},
              "targets": [{
                "label": int, "fraction": float,
                "iou": [float, ...],    # 0..1 after click 1..clicks
                "clicks": [[element, sign], ...],   # vertex index on meshes; +1 / -1
                "seconds": [float, ...] # query time of each click made
              }]
            }
          }
        }
      ],
      "config": {"method" (one name, or several joined by commas), "methods" (those names, a list),
                 "prior", "method_options", "prior_options", "clicks", "data", "ids",
                 "protocol": {...}, "date": ISO-8601 UTC, "versions": {...},
                 "commit": short git hash ("+modified", or "unknown" outside a checkout),
                 "command": the command line that ran the evaluation}
    }

Arrays in options (e.g. oracle labels) are written as {"array": dtype, "shape": [...]}.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SegAnyError
from ..jsonable import jsonable
from ..provenance import stamp, stamp_line
from .metrics import MIOU_AT, NOC_AT, mean_curve, summarize
from .targets import MAX_TARGETS, MIN_FRACTION

SCHEMA = 1
PROTOCOL = {
    "segmentation": 0,
    "target_min_fraction": MIN_FRACTION,
    "max_targets": MAX_TARGETS,
    "clicks": "largest error region (surface area), farthest element from its boundary (graph geodesic)",
    "mesh_selection": "face selected when the mean of its vertex scores >= the method's threshold",
    "iou": "surface-area weighted on meshes, element count on splats and points",
}
KEYS = [*(f"miou@{k}" for k in MIOU_AT), *(f"noc@{t}" for t in NOC_AT)]


def _versions() -> dict[str, str]:
    import scipy

    from .. import __version__

    out = {"segany": __version__, "python": platform.python_version(), "numpy": np.__version__}
    out["scipy"] = scipy.__version__
    try:
        import torch

        out["torch"] = torch.__version__
    except ImportError:
        out["torch"] = "absent"
    return out


def aggregate(runs: list[dict[str, Any]], prepare: list[float], cap: int, n_shapes: int) -> dict[str, Any]:
    """Summary entry over target runs (see the schema); `prepare` holds per-shape prepare seconds."""
    curves = [r["iou"] for r in runs]
    seconds = [s for r in runs for s in r["seconds"]]
    entry: dict[str, Any] = summarize(curves, cap)
    entry["seconds_per_click"] = float(np.mean(seconds)) if seconds else 0.0
    entry["prepare_seconds"] = float(np.mean(prepare)) if prepare else 0.0
    entry["targets"] = len(curves)
    entry["shapes"] = n_shapes
    entry["mean_iou"] = mean_curve(curves)
    return entry


def build_results(
    config: dict[str, Any], shapes: list[dict[str, Any]], argv: list[str] | None = None
) -> dict[str, Any]:
    """The results.json object from per-shape records (evaluate_shape's output).

    Stamped with the date, commit and command line (this process's unless `argv` is given), so a table
    copied into the docs says how to make it again.
    """
    cap = int(config["clicks"])
    methods: list[str] = []
    for s in shapes:
        methods += [m for m in s["methods"] if m not in methods]
    for s in shapes:
        for rec in s["methods"].values():
            rec["summary"] = aggregate(rec["targets"], [rec["prepare_seconds"]], cap, 1)

    def over(subset: list[dict[str, Any]]) -> dict[str, Any]:
        out = {}
        for m in methods:
            have = [s["methods"][m] for s in subset if m in s["methods"]]
            runs = [r for h in have for r in h["targets"]]
            out[m] = aggregate(runs, [h["prepare_seconds"] for h in have], cap, len(have))
        return out

    categories = sorted({s["category"] for s in shapes})
    full_config = {
        **config,
        "protocol": PROTOCOL,
        **stamp(argv),
        "versions": _versions(),
    }
    return jsonable(
        {
            "schema": SCHEMA,
            "summary": over(shapes),
            "categories": {c: over([s for s in shapes if s["category"] == c]) for c in categories},
            "shapes": shapes,
            "config": full_config,
        }
    )


def _row(name: str, entry: dict[str, Any]) -> str:
    cells = [f"{entry[k]:.1f}" if k.startswith("miou") else f"{entry[k]:.2f}" for k in KEYS if k in entry]
    cells.append(f"{1000 * entry['seconds_per_click']:.1f}")
    cells.append(f"{entry['prepare_seconds']:.2f}")
    return f"| {name} | {entry['targets']} | " + " | ".join(cells) + " |"


def _skips(shapes: list[dict[str, Any]]) -> list[str]:
    """A line per method that some shapes skipped (another scene kind), naming them."""
    skipped: dict[str, list[str]] = {}
    reason: dict[str, str] = {}
    for s in shapes:
        for m, why in s.get("skipped", {}).items():
            skipped.setdefault(m, []).append(f"{s['id']} ({s['kind']})")
            reason[m] = why
    lines = [f"`{m}` skipped on {len(ids)} shapes (it {reason[m]}): {', '.join(ids)}." for m, ids in skipped.items()]
    return [line for text in lines for line in (text, "")]


def markdown(results: dict[str, Any]) -> str:
    """report.md: overall, per category and per shape tables, method vs baseline."""
    cfg = results["config"]
    head = "| {} | targets | mIoU@1 | mIoU@3 | mIoU@5 | NoC@80 | NoC@85 | NoC@90 | ms/click | prepare s |"
    rule = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    prior = f", prior `{cfg['prior']}`" if cfg.get("prior") else ""
    n = len(results["shapes"])
    lines = [
        f"# segany eval: `{cfg['method']}`{prior}",
        "",
        stamp_line(cfg),
        "",
        f"Data `{cfg['data']}`, {n} shape{'' if n == 1 else 's'}, up to {cfg['clicks']} simulated clicks per target. "
        "mIoU in percent (area-weighted on meshes); NoC = clicks to reach the IoU "
        f"(capped at {cfg['clicks']}); times per click are query times. `baseline` is the classical random "
        "walker with concavity-aware weights (no 2D model, no training), clicked by the same protocol.",
        "",
        *_skips(results["shapes"]),
        "## Overall",
        "",
        head.format("method"),
        rule,
    ]
    lines += [_row(m, e) for m, e in results["summary"].items()]
    lines += ["", "## Per category", "", head.format("category / method"), rule]
    for cat, per in results["categories"].items():
        lines += [_row(f"{cat} / {m}", e) for m, e in per.items()]
    lines += ["", "## Per shape", "", head.format("shape / method"), rule]
    for s in results["shapes"]:
        lines += [_row(f"{s['id']} ({s['category']}) / {m}", r["summary"]) for m, r in s["methods"].items()]
    return "\n".join(lines) + "\n"


def fitted_title(ax: Any, text: str, fontsize: float = 10) -> None:
    """`ax`'s title wrapped to the figure's width: a run of several methods ("iseg vs sa3d vs walk vs saga@...")
    would otherwise run past both edges and be cut off in the PNG."""
    import textwrap

    em = 0.6 * fontsize  # points per character, a little over DejaVu Sans's mean advance, so it errs short
    chars = max(20, int(0.9 * ax.get_figure().get_figwidth() * 72 / em))  # 0.9: the axes sit off-centre
    ax.set_title("\n".join(textwrap.wrap(text, chars)), fontsize=fontsize)


def plot(results: dict[str, Any], path: Path) -> None:
    """Mean IoU after each click, one line per method, overall."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for m, entry in results["summary"].items():
        curve = entry["mean_iou"]
        ax.plot(range(1, len(curve) + 1), curve, marker="o", markersize=3, label=f"{m} (mIoU@5 {entry['miou@5']:.1f})")
    ax.set_xlabel("number of clicks")
    ax.set_ylabel("mean IoU (%)")
    ax.set_ylim(0, 100)
    ax.set_xlim(left=1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    n = len(results["shapes"])
    fitted_title(ax, f"{' vs '.join(results['summary'])}: {n} shape{'s' if n != 1 else ''}, mean over targets")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_outputs(results: dict[str, Any], out: Path, plot_png: bool = True) -> None:
    """results.json and report.md (atomically), and the PNG when asked (skipped for partial saves)."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        _atomic_write(out / "results.json", json.dumps(results, indent=1))
        _atomic_write(out / "report.md", markdown(results))
        if plot_png:
            plot(results, out / "iou_vs_clicks.png")
    except OSError as exc:
        raise SegAnyError("io_error", f"cannot write the evaluation results to {out}: {exc}") from exc
