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


def write_report(
    name: str, out_dir: Path, rows: list[Row], extra: dict[str, Any] | None = None, argv: list[str] | None = None
) -> dict[str, Any]:
    """Print the table, write NAME.json, NAME.md and a bar plot NAME.png (value vs baseline per case).

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
    }
    (out_dir / f"{name}.json").write_text(json.dumps(doc, indent=2))
    (out_dir / f"{name}.md").write_text(markdown(doc))
    _plot(name, out_dir / f"{name}.png", rows)
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


def _plot(name: str, path: Path, rows: list[Row]) -> None:
    """Horizontal bars, ours vs the same-run baseline, one panel per unit (times and rates don't share an axis)."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units = list(dict.fromkeys(r.unit for r in rows))
    heights = [max(1.5, 0.55 * sum(r.unit == u for r in rows) + 0.8) for u in units]
    fig, axes = plt.subplots(len(units), 1, figsize=(11, sum(heights)), height_ratios=heights, squeeze=False)
    for ax, unit in zip(axes[:, 0], units, strict=True):
        sel = [r for r in rows if r.unit == unit]
        y = np.arange(len(sel))
        ax.barh(y - 0.2, [r.value for r in sel], 0.4, label="SegAny")
        ax.barh(y + 0.2, [r.baseline_value or 0 for r in sel], 0.4, label="baseline (same run)")
        labels = [textwrap.shorten(f"[{r.metric}] {r.case}", 90) for r in sel]
        ax.set_yticks(y, ["\n".join(textwrap.wrap(t, 48)) for t in labels], fontsize=7)
        ax.invert_yaxis()
        values = [v for r in sel for v in (r.value, r.baseline_value) if v]
        if values and max(values) / max(min(values), 1e-12) > 50:
            ax.set_xscale("log")
        ax.set_xlabel(unit)
        ax.legend(fontsize=7, loc="lower right")
    axes[0, 0].set_title(f"segany bench {name}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
