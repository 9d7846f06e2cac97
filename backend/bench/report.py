"""One way for every benchmark to report: a rich table, NAME.json, NAME.md and NAME.png in the out dir.

JSON layout (stable, documented in docs/performance.md; add keys, never rename or remove them):
  {"name": str, "date": ISO-8601 UTC, "commit": str, "command": str, "machine": {...},
   "rows": [{"case": str, "metric": str, "value": float, "unit": str, "baseline": str | None,
             "baseline_value": float | None, "ratio": float | None, "target": str | None}],
   "extra": {...}}
`ratio` is value / baseline_value, so < 1 means faster than the baseline for times. NAME.md is the same
table in markdown under a line saying which command, date and commit made it, ready to paste into the docs.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..provenance import stamp, stamp_line

WIDE_SPAN = 50  # magnitudes spanning more than this share a panel on a log axis, or linear bars would vanish


@dataclass
class Row:
    case: str
    metric: str
    value: float
    unit: str
    baseline: str | None = None
    baseline_value: float | None = None
    target: str | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline_value in (None, 0):
            return None
        return self.value / self.baseline_value


def click_rows(
    case: str, labels: tuple[str, ...], times: dict[str, list[list[float]]], base_name: str, target: str,
    extra: dict[str, Any],
) -> list[Row]:  # fmt: skip
    """Rows for click timings raced A B A B against a baseline: per click (`labels`), the median wall and CPU
    times beside the baseline's and the median of the paired wall ratios; `times` holds `ours_wall`,
    `base_wall`, `ours_cpu`, `base_cpu`, a list of seconds per click. Quartiles and the slowest CPU time go
    to `extra`."""
    rows = []
    for k, label in enumerate(labels):
        ours_w, base_w = np.array(times["ours_wall"][k]), np.array(times["base_wall"][k])
        ours_c, base_c = np.array(times["ours_cpu"][k]), np.array(times["base_cpu"][k])
        q1, med, q3 = np.percentile(ours_w / base_w, [25, 50, 75])
        extra.setdefault("paired_wall_ratio", {})[f"{case}: {label}"] = {"median": med, "q25": q1, "q75": q3}
        extra.setdefault("max_cpu_ms", {})[f"{case}: {label}"] = 1e3 * float(ours_c.max())
        rows.append(Row(case, f"wall time, {label}", 1e3 * float(np.median(ours_w)), "ms", base_name,
                        1e3 * float(np.median(base_w)), target))  # fmt: skip
        rows.append(Row(case, f"CPU time, {label}", 1e3 * float(np.median(ours_c)), "ms", base_name,
                        1e3 * float(np.median(base_c)), target))  # fmt: skip
        rows.append(Row(case, f"paired wall ratio, {label}", float(med), "x"))
    return rows


def timeit(fn: Callable[[], Any], repeat: int = 5, warmup: int = 1) -> float:
    """Median wall seconds of `fn` over `repeat` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def machine() -> dict[str, Any]:
    """Where a bench ran; the add-on bench may run from a Blender's Python without torch (CI's bpy matrix)."""
    base = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        import torch
    except ImportError:
        return {**base, "torch": None, "torch_threads": None, "cuda": None}
    return {
        **base,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


@dataclass
class Curve:
    """A measurement over a run (memory by clicks, say), drawn as its own panel below the bars."""

    title: str
    xlabel: str
    ylabel: str
    x: list[float]
    y: list[float]


def write_report(
    name: str,
    out_dir: Path,
    rows: list[Row],
    extra: dict[str, Any] | None = None,
    argv: list[str] | None = None,
    curves: list[Curve] | None = None,
) -> dict[str, Any]:
    """Print the table, write NAME.json, NAME.md and a plot NAME.png (value vs baseline per case, and any
    curves, whose points also go into NAME.json).

    Stamped with the date, commit and command line (this process's unless `argv` is given).
    """
    from rich.console import Console
    from rich.table import Table

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = Table(title=f"segany bench {name}")
    for col in ("case", "metric", "value", "baseline", "ratio", "target"):
        table.add_column(col)
    for r in rows:
        base = f"{r.baseline}: {r.baseline_value:.4g} {r.unit}" if r.baseline_value is not None else "-"
        ratio = f"{r.ratio:.3f}" if r.ratio is not None else "-"
        table.add_row(r.case, r.metric, f"{r.value:.4g} {r.unit}", base, ratio, r.target or "-")
    Console().print(table)
    doc = {
        "name": name,
        **stamp(argv),
        "machine": machine(),
        "rows": [{**asdict(r), "ratio": r.ratio} for r in rows],
        "extra": extra or {},
        "curves": [asdict(c) for c in curves or []],
    }
    (out_dir / f"{name}.json").write_text(json.dumps(doc, indent=2))
    (out_dir / f"{name}.md").write_text(markdown(doc))
    _plot(name, out_dir / f"{name}.png", rows, curves or [])
    return doc


def _number(value: float, unit: str) -> str:
    return f"{value:.4g} {unit}".strip()


def markdown(doc: dict[str, Any]) -> str:
    """NAME.md: the stamp, the machine and one row per case, as written into NAME.json."""
    m = doc["machine"]
    gpu = f", GPU {m['cuda']}" if m.get("cuda") else ", no GPU"
    torch = f", torch {m['torch']} ({m['torch_threads']} threads)" if m.get("torch") else ", no torch"
    lines = [
        f"# segany bench {doc['name']}",
        "",
        stamp_line(doc),
        "",
        f"Machine: {m['platform']}, {m['cpus']} CPUs{gpu}, Python {m['python']}{torch}.",
        "",
        "| case | metric | value | baseline, same run | ratio | target |",
        "|---|---|---:|---|---:|---|",
    ]
    for r in doc["rows"]:
        base = f"{r['baseline']}: {_number(r['baseline_value'], r['unit'])}" if r["baseline_value"] is not None else ""
        ratio = f"{r['ratio']:.3f}" if r["ratio"] is not None else ""
        cells = [r["case"], r["metric"], _number(r["value"], r["unit"]), base, ratio, r["target"] or ""]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _x_axis(ax: Any, values: list[float]) -> None:
    """A log axis where the magnitudes span more than WIDE_SPAN; symlog when some value is also negative (a log
    axis has no place for it: a slower-than-baseline difference, say); else linear with room for the labels,
    reaching below 0 for a negative value."""
    sizes = [abs(v) for v in values]
    wide = bool(sizes) and max(sizes) / min(sizes) > WIDE_SPAN
    if wide:
        if min(values) > 0:
            ax.set_xscale("log")
        else:
            ax.set_xscale("symlog", linthresh=min(sizes))
            ax.axvline(0, color="0.4", lw=0.6)
        ax.margins(x=0.12)  # room for the labels at the bars' ends, on either side
    else:
        low, high = min([0.0, *values]), max([0.0, *values])
        room = 0.15 * (high - low) or 1.0  # an all-zero panel still reads
        ax.set_xlim(low - room if low < 0 else 0.0, high + room)
        if low < 0:
            ax.axvline(0, color="0.4", lw=0.6)


def _plot(name: str, path: Path, rows: list[Row], curves: list[Curve]) -> None:
    """Horizontal bars, ours vs the same-run baseline, one panel per unit (times and rates don't share an
    axis), each bar labelled with its value; one legend above the panels so it never hides a bar; then one
    panel per curve."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    units = list(dict.fromkeys(r.unit for r in rows))
    heights = [max(1.5, 0.55 * sum(r.unit == u for r in rows) + 0.8) for u in units] + [2.6] * len(curves)
    fig, axes = plt.subplots(len(heights), 1, figsize=(11, sum(heights) + 0.6), height_ratios=heights, squeeze=False)
    for ax, unit in zip(axes[: len(units), 0], units, strict=True):
        sel = [r for r in rows if r.unit == unit]
        y = np.arange(len(sel))
        ours = ax.barh(y - 0.2, [r.value for r in sel], 0.4, label="SegAny", color="C0")
        ax.bar_label(ours, [_number(r.value, r.unit) for r in sel], fontsize=7, padding=2)
        if any(r.baseline_value is not None for r in sel):
            base = ax.barh(y + 0.2, [r.baseline_value or 0 for r in sel], 0.4, label="baseline (same run)", color="C1")
            ax.bar_label(base, [_number(r.baseline_value, r.unit) if r.baseline_value else "" for r in sel],
                         fontsize=7, padding=2)  # fmt: skip
        labels = [textwrap.shorten(f"[{r.metric}] {r.case}", 90) for r in sel]
        ax.set_yticks(y, ["\n".join(textwrap.wrap(t, 48)) for t in labels], fontsize=7)
        ax.invert_yaxis()
        _x_axis(ax, [v for r in sel for v in (r.value, r.baseline_value) if v])
        ax.set_xlabel(unit)
    for ax, c in zip(axes[len(units) :, 0], curves, strict=True):
        ax.plot(c.x, c.y, color="C0", lw=1.2)
        ax.set_title(c.title, fontsize=9)
        ax.set_xlabel(c.xlabel)
        ax.set_ylabel(c.ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    handles = [
        Patch(color="C0", label="SegAny"),
        Patch(color="C1", label="baseline (same run)"),
    ]
    fig.legend(handles=handles, loc="upper right", fontsize=8, ncols=2, frameon=False)
    fig.suptitle(f"segany bench {name}", x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
