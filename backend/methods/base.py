"""The one interface every method provides: prepare once per scene, then answer queries fast."""

from __future__ import annotations

import threading
import weakref
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import torch

from ..errors import SegAnyError
from ..jobs import JobContext
from ..options import Options
from ..priors import Prior
from ..scene import Scene
from .queries import ClickQuery


@dataclass
class State:
    """What prepare leaves behind: tensors (saved as safetensors) plus JSON-able metadata."""

    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    # the prior a method with `queries_prior` prompts at query time: never saved, the engine rebuilds it
    # from the description it records in meta (segany.priors.PriorSpec)
    prior: Prior | None = field(default=None, repr=False, compare=False)


@dataclass
class Selection:
    """A score per element (vertex, Gaussian, point) and the threshold the method proposes."""

    scores: np.ndarray  # (N,) float32
    threshold: float = 0.5
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def mask(self) -> np.ndarray:
        return self.scores >= self.threshold


@dataclass
class Parts:
    """Segment everything's answer: a part per element and a colour per part."""

    labels: np.ndarray  # (N,) int32 in 0..K-1, largest part first; -1 (UNSEEN) for an element no view showed
    colours: np.ndarray  # (K, 3) float32 in [0, 1], row k is part k's colour
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. "levels" (L, N) int32, coarse first


UNSEEN = -1  # the part label of an element the method knows nothing about

T = TypeVar("T")


class PerState(Generic[T]):
    """What a method rebuilds from a State (decoders, unpacked views), kept while that State object lives.

    Keyed by the object, checked through a weak reference, bounded LRU: repeated queries on one state skip
    the rebuild, and a state the engine dropped is never answered from a stale entry.
    """

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[int, tuple[weakref.ref, T]] = OrderedDict()

    def get(self, state: State, build: Callable[[], T]) -> T:
        key = id(state)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0]() is state:
                self._items.move_to_end(key)
                return hit[1]
        value = build()
        with self._lock:
            self._items[key] = (weakref.ref(state), value)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


class Method(ABC):
    """Subclasses set `name`, `scene_kinds`, `default_prior`, `Options` and `Query`, and implement prepare /
    query."""

    name: ClassVar[str] = ""
    scene_kinds: ClassVar[tuple[str, ...]] = ()
    default_prior: ClassVar[str] = "geometric"
    needs_prepare: ClassVar[bool] = True
    state_format: ClassVar[str | None] = None  # meta["format"] of the states this version writes
    queries_prior: ClassVar[bool] = False  # query() prompts state.prior: the engine rebuilds it for a cached state
    Options: ClassVar[type[Options]] = Options  # its typed options and presets; the engine parses them
    Query: ClassVar[type] = ClickQuery  # its typed query (clicks, or sas's words); `query` parses it first

    def check_state(self, scene: Scene, state: State) -> None:
        """Refuse (not_prepared, saying to prepare again) a state this version did not write, or wrote for a
        scene of another kind or size: its tensors would index other elements. Needs meta n_elements and
        scene_kind, which a method that uses this records at prepare."""
        meta = state.meta
        if not self.is_current(state):
            raise SegAnyError(
                "not_prepared", f"this state is not a current {self.name} state ({meta.get('format')!r}); prepare again"
            )
        n, kind = int(meta.get("n_elements", -1)), meta.get("scene_kind")
        if n != scene.n_elements or kind != scene.kind:
            raise SegAnyError(
                "not_prepared",
                f"the {self.name} state was prepared for {n} {kind} elements but the scene has "
                f"{scene.n_elements} {scene.kind}; prepare again",
            )

    def is_current(self, state: State) -> bool:
        """Whether this version of the method reads `state`: a cache entry written by another is prepared again."""
        return self.state_format is None or state.meta.get("format") == self.state_format

    @abstractmethod
    def prepare(self, scene: Scene, prior: Prior, options: Any, ctx: JobContext) -> State:
        """The per-scene work (training, lifting); report progress and honour cancel through ctx. `options`
        is an instance of the method's `Options`, already checked."""

    @abstractmethod
    def query(self, scene: Scene, state: State, query: dict[str, Any]) -> Selection:
        """Stateless: the same query on the same state gives the same selection."""

    @property
    def segments_everything(self) -> bool:
        """Whether the method splits a whole scene into parts: it does when it overrides `everything` (the
        engine lists this for the add-on), so the flag cannot disagree with the code."""
        return type(self).everything is not Method.everything

    def everything(self, scene: Scene, state: State, query: dict[str, Any]) -> Parts:
        """Split the whole scene into parts; a method that can overrides this."""
        raise _cannot_segment_everything(self)


def check_everything(method: Method) -> None:
    """Refuse a method that cannot segment everything, naming those that can: callers check before any
    prepare or state lookup, so the answer is not "prepare first" for something no prepare would allow."""
    if not method.segments_everything:
        raise _cannot_segment_everything(method)


def _cannot_segment_everything(method: Method) -> SegAnyError:
    from . import get_method, method_names  # the registry imports this module

    able = [n for n in method_names() if get_method(n).segments_everything]
    return SegAnyError("bad_request", f"{method.name} cannot segment everything; methods that can: {able}")
