"""One way for every benchmark to report: a rich table, NAME.json and NAME.png in the out dir.

JSON layout (stable, documented in the README):
  {"name": str, "machine": {...}, "rows": [{"case": str, "metric": str, "value": float, "unit": str,
   "baseline": str | None, "baseline_value": float | None, "ratio": float | None, "target": str | None}],
   "extra": {...}}
`ratio` is value / baseline_value, so < 1 means faster than the baseline for times.
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
    import torch

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write_report(name: str, out_dir: Path, rows: list[Row], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Print the table, write NAME.json and a bar plot NAME.png (value vs baseline per case)."""
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
        "machine": machine(),
        "rows": [{**asdict(r), "ratio": r.ratio} for r in rows],
        "extra": extra or {},
    }
    (out_dir / f"{name}.json").write_text(json.dumps(doc, indent=2))
    _plot(name, out_dir / f"{name}.png", rows)
    return doc


def _plot(name: str, path: Path, rows: list[Row]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(rows)), 4.5))
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r.value for r in rows], 0.4, label="SegAny")
    ax.bar(x + 0.2, [r.baseline_value or 0 for r in rows], 0.4, label="baseline (same run)")
    ax.set_xticks(x, [f"{r.case}\n{r.metric} [{r.unit}]" for r in rows], fontsize=7, rotation=20, ha="right")
    ax.set_yscale("log")
    ax.set_title(f"segany bench {name}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
