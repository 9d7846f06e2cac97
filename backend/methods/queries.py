"""The one query parser: {"clicks": [[element, sign], ...]} plus a method's extras, bounded before any work.

A query's limits are checked before anything is converted or computed, so a huge or malformed query costs
the server nothing and is refused with a bad_request naming the first bad item (never the whole input).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from ..errors import SegAnyError
from ..options import checked, listed, shown, typed_fields
from ..scene import Scene

# An artist refines one selection with a handful of clicks (the evaluation's NoC protocol stops at 20);
# past 64 a query is a script's mistake, and every method's cost grows with the clicks (walk: with their square).
MAX_CLICKS = 64
ELEMENT = {"mesh": "vertex", "splats": "Gaussian", "points": "point"}  # what a click names, by scene kind


@dataclass(frozen=True)
class ClickQuery:
    """Clicks on a scene's elements: `elements` (C,) long, `positive` (C,) bool (sign +1 adds, -1 removes).

    A method with query options subclasses this and adds fields made with `segany.options.option`."""

    elements: torch.Tensor
    positive: torch.Tensor
    method: ClassVar[str] = "method"

    def clicks(self) -> list[tuple[int, int]]:
        """The clicks as (element, ±1) pairs, in order."""
        signs = [1 if p else -1 for p in self.positive.tolist()]
        return list(zip(self.elements.tolist(), signs, strict=True))


Q = TypeVar("Q", bound=ClickQuery)


def _extras(cls: type[ClickQuery]) -> list:
    return [(f, kind) for f, kind in typed_fields(cls) if f.name not in ("elements", "positive")]


def query_keys(cls: type[ClickQuery]) -> list[str]:
    """The keys a method's query takes besides the clicks (saga: `scale`), as the engine lists them."""
    return [f.name for f, _ in _extras(cls)]


def _usage(cls: type[ClickQuery], element: str) -> str:
    extras = "".join(
        f', "{f.name}": {"|".join(map(json.dumps, f.metadata["choices"])) or "<" + f.metadata["doc"] + ">"}'
        for f, _ in _extras(cls)
    )  # a field without choices (a number) shows what it takes
    return f'an {cls.method} query is {{"clicks": [[{element}, sign], ...]{extras}}} with sign +1 or -1'


def _array_shape(clicks: np.ndarray, element: str) -> None:
    """A clicks array (from the wire's arrays) is (C, 2) and numeric; checked before its length is read."""
    if clicks.ndim != 2 or clicks.shape[1] != 2 or clicks.dtype.kind not in "iuf":
        raise SegAnyError(
            "bad_request",
            f"clicks must be a (C, 2) array of [{element}, sign] numbers, got {clicks.dtype}{clicks.shape}",
        )


def _pairs(clicks: Any, element: str) -> np.ndarray:
    """The clicks as a (C, 2) float64 array once their count and shape are known to be in bounds."""
    if isinstance(clicks, np.ndarray):
        return clicks.astype(np.float64)
    for i, c in enumerate(clicks):
        if not isinstance(c, (list, tuple)) or len(c) != 2 or not all(_number(x) for x in c):
            raise SegAnyError("bad_request", f"click {i} must be a [{element}, sign] pair of numbers, got {shown(c)}")
    try:
        return np.asarray(clicks, dtype=np.float64).reshape(-1, 2)
    except OverflowError:  # a Python int past float64's range (JSON allows any length): no index or sign either
        raise SegAnyError("bad_request", f"a click holds an integer too large for a {element} index or sign") from None


def _number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def parse_query(cls: type[Q], query: Any, scene: Scene) -> Q:
    """`query` checked against `cls` and `scene`: known keys only, at most MAX_CLICKS clicks, each an
    element index of the scene and a sign ±1, extras within their choices."""
    element = ELEMENT.get(scene.kind, "element")
    if not isinstance(query, dict):
        raise SegAnyError("bad_request", _usage(cls, element))
    extras = _extras(cls)
    unknown = sorted(str(k) for k in set(query) - {"clicks"} - {f.name for f, _ in extras})
    if unknown:
        raise SegAnyError("bad_request", f"unknown {cls.method} query keys {listed(unknown)}; {_usage(cls, element)}")
    if "clicks" not in query:
        raise SegAnyError("bad_request", _usage(cls, element))
    clicks = query["clicks"]
    if not isinstance(clicks, (list, tuple, np.ndarray)):
        raise SegAnyError(
            "bad_request", f"clicks must be a list of [{element}, sign] pairs, got {type(clicks).__name__}"
        )
    if isinstance(clicks, np.ndarray):
        _array_shape(clicks, element)
    if len(clicks) > MAX_CLICKS:
        raise SegAnyError(
            "bad_request", f"a query takes at most {MAX_CLICKS} clicks, got {len(clicks)}; start a new selection"
        )
    arr = _pairs(clicks, element)
    elems, signs = arr[:, 0], arr[:, 1]
    n = scene.n_elements
    bad = ~np.isfinite(elems) | (elems != np.round(elems)) | (elems < 0) | (elems >= n)
    if bad.any():
        i = int(np.argmax(bad))
        raise SegAnyError("bad_request", f"click {i}: {elems[i]:g} is not a {element} index in 0..{n - 1}")
    bad = ~np.isin(signs, (1, -1))
    if bad.any():
        i = int(np.argmax(bad))
        raise SegAnyError("bad_request", f"click {i}: its sign must be +1 (add) or -1 (remove), got {signs[i]:g}")
    values = {
        f.name: checked(f"{cls.method} query key", f.name, f, kind, query.get(f.name, f.default)) for f, kind in extras
    }
    return cls(torch.as_tensor(elems.astype(np.int64)), torch.as_tensor(signs > 0), **values)
