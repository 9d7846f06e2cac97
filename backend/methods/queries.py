"""The click query every interactive method takes: {"clicks": [[element, sign], ...]}."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import SegAnyError


def parse_clicks(
    query: dict[str, Any], n_elements: int, method: str = "iseg", element: str = "vertex"
) -> tuple[torch.Tensor, torch.Tensor]:
    """{"clicks": [[element, sign], ...]} → elements (C,) long, positive (C,) bool; sign +1 adds, -1 removes.

    Checked strictly (integers in range, signs ±1) so a bad click is a bad_request naming it, not a crash.
    """
    if not isinstance(query, dict) or "clicks" not in query:
        raise SegAnyError(
            "bad_request", f'an {method} query is {{"clicks": [[{element}, sign], ...]}} with sign +1 or -1'
        )
    clicks = query["clicks"]
    if isinstance(clicks, np.ndarray):
        clicks = clicks.tolist()
    shape_msg = f"clicks must be a list of [{element}, sign] pairs, got {clicks!r}"
    if not isinstance(clicks, (list, tuple)) or any(not isinstance(c, (list, tuple)) or len(c) != 2 for c in clicks):
        raise SegAnyError("bad_request", shape_msg)
    try:
        arr = np.asarray(clicks, dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError) as exc:
        raise SegAnyError("bad_request", shape_msg) from exc
    if not np.isfinite(arr).all():
        raise SegAnyError("bad_request", shape_msg)
    elems, signs = arr[:, 0], arr[:, 1]
    bad = (elems != np.round(elems)) | (elems < 0) | (elems >= n_elements)
    if bad.any():
        raise SegAnyError(
            "bad_request",
            f"click {element} {clicks[int(np.argmax(bad))][0]!r} is not a {element} index in 0..{n_elements - 1}",
        )
    if not np.isin(signs, (1, -1)).all():
        raise SegAnyError(
            "bad_request", f"click signs must be +1 (add) or -1 (remove), got {sorted(set(signs) - {1, -1})}"
        )
    return torch.as_tensor(elems.astype(np.int64)), torch.as_tensor(signs > 0)
