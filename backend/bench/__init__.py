"""Benchmarks: `segany bench NAME --out DIR` runs `segany.bench.<NAME>.run(out_dir)`."""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import SegAnyError

BENCHES = ("protocol", "kernels", "priors", "iseg", "iseg_sam", "addon", "walk", "soak", "saga", "batch", "sas")


def run_bench(name: str, out_dir: Path, quick: bool = False) -> dict:
    if name not in BENCHES:
        raise SegAnyError("not_found", f"unknown benchmark {name!r}; available: {list(BENCHES)}")
    module = importlib.import_module(f"segany.bench.{name}")
    return module.run(Path(out_dir), quick=quick)
