"""One conversion of engine values to JSON-able data (records, replies, reports)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def jsonable(obj: Any) -> Any:
    """numpy scalars → numbers, paths → strings, arrays → a description (never their contents)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return {"array": str(obj.dtype), "shape": list(obj.shape)}
    if isinstance(obj, Path):
        return str(obj)
    return obj
