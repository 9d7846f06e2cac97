"""`segany eval`: simulated-click evaluation of a method against a classical baseline.

Modules: data (PSB / labelled PLY shapes), targets, geometry (graphs), clicks (the protocol),
metrics, baseline (random walker), scorers (Engine method or baseline), run (the loop), report
(results.json schema, report.md, PNG), generate (labelled splats / points from labelled meshes).
"""

from .run import run_eval

__all__ = ["run_eval"]
