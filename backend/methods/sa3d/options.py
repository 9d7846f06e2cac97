"""SA3D's options: sizes by device, SA3D's published constants, and strict checking."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import SegAnyError

# name: (smallest, largest) for integers; every one is required after defaults are merged in.
INT_RANGES = {"views": (1, 512), "resolution": (16, 2048), "top_k": (1, 64), "prompts": (1, 32), "seed": (0, 2**31)}
FLOAT_RANGES = {"iou_threshold": (0.0, 1.0), "negative_weight": (0.0, 100.0), "fov_deg": (1.0, 179.0)}
CHOICES = {"mask": ("best", "smallest", "largest")}
FLAGS = ("fill_hidden",)


def default_options(device: str) -> dict[str, Any]:
    """SA3D's constants (3 self-prompt points, IoU 0.5 rejection, λ = 0.3) and view sizes for the device.

    A CPU gets 20 views at 160 px with the 8 strongest contributors per pixel: the real 45K-Gaussian
    donut renders in seconds and a query stays within seconds. A GPU renders more and larger views.
    """
    gpu = str(device).startswith("cuda")
    return {
        "views": 32 if gpu else 20,
        "resolution": 224 if gpu else 160,
        "top_k": 8,
        "fov_deg": 45.0,
        "prompts": 3,
        "iou_threshold": 0.5,
        "negative_weight": 0.3,
        "mask": "best",
        "fill_hidden": True,
        "seed": 0,
    }


def check_options(opts: dict[str, Any]) -> dict[str, Any]:
    """Refuse unknown keys, wrong types and out-of-range values with a message naming the option."""
    known = set(INT_RANGES) | set(FLOAT_RANGES) | set(CHOICES) | set(FLAGS)
    unknown = sorted(set(opts) - known)
    if unknown:
        raise SegAnyError("bad_request", f"unknown sa3d options {unknown}; known: {sorted(known)}")
    out = dict(opts)
    for k, (lo, hi) in INT_RANGES.items():
        v = out[k]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
            raise SegAnyError("bad_request", f"sa3d option {k!r} must be an integer in {lo}..{hi}, got {v!r}")
        out[k] = int(v)
    for k, (lo, hi) in FLOAT_RANGES.items():
        v = out[k]
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not lo <= v <= hi:
            raise SegAnyError("bad_request", f"sa3d option {k!r} must be a number in [{lo}, {hi}], got {v!r}")
        out[k] = float(v)
    for k, allowed in CHOICES.items():
        if not isinstance(out[k], str) or out[k] not in allowed:
            raise SegAnyError("bad_request", f"sa3d option {k!r} must be one of {list(allowed)}, got {out[k]!r}")
    for k in FLAGS:
        if not isinstance(out[k], (bool, np.bool_)):
            raise SegAnyError("bad_request", f"sa3d option {k!r} must be true or false, got {out[k]!r}")
        out[k] = bool(out[k])
    return out
