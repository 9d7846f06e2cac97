"""Batch labelling of many assets with one spec, on a local process pool or a Ray cluster (docs/batch.md)."""

from .run import Outcome, run_batch
from .spec import Asset, Spec, collect_assets, load_spec, parse_spec

__all__ = ["Asset", "Outcome", "Spec", "collect_assets", "load_spec", "parse_spec", "run_batch"]
