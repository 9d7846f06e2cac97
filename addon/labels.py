"""Label an object from words in Blender: one integer attribute `segany_label` (the word's index per element,
-1 for other) with a colour attribute holding each word's colour, and per word a vertex group (meshes; the
elements labelled with it) or a float attribute (splats, points; the word's relevancy, for highlighting),
both named `label_<word>`. The words and colours are kept on the object (`segany_labels`) so the panel can
show the legend and a new labelling removes the previous one's outputs.

Plain functions, as in actions.py: the operator, the scripting API and the tests call them.
"""

from __future__ import annotations

import colorsys
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from . import actions, properties, results, runtime, scene_read
from . import pending as background
from .client import Selection

METHOD = "sas"
LABEL_ATTRIBUTE = "segany_label"
LABEL_COLOUR = "segany_label_colour"
WORD_PREFIX = "label_"
LEGEND = "segany_labels"  # object custom property: JSON {"words": [...], "colours": [[r, g, b], ...]}
OTHER_COLOUR = (0.5, 0.5, 0.5, 1.0)  # grey: an element labelled other
GOLDEN = 0.618033988749895  # the palette of `segany label` and the backend's parts: neighbours differ in hue
CLIP_HINT = (  # the panel's lines while the preferences name no CLIP checkpoint (short: the sidebar is narrow)
    "Labels need CLIP weights:",
    "run `segany models fetch clip_vit_b_16`",
    "with the backend's python, or set",
    "Preferences > CLIP Checkpoint",
)
NAME_BYTES = 63  # Blender cuts longer names, so two long words could share one group


def split_words(text: str) -> list[str]:
    """ "seat, leg , back" → ["seat", "leg", "back"]: commas separate (as in `segany label --words`)."""
    return [w.strip() for w in text.split(",") if w.strip()]


def word_colours(k: int) -> np.ndarray:
    """(k, 3) colours in [0, 1], the same as `segany label` gives the same words."""
    return np.array([colorsys.hsv_to_rgb((i * GOLDEN) % 1.0, 0.65, 0.95) for i in range(k)], np.float32).reshape(k, 3)


def word_output(word: str) -> str:
    return WORD_PREFIX + word


def check_words(words: list[str]) -> None:
    """ValueError for what Blender cannot hold (the backend checks the rest: counts, duplicates)."""
    if not words:
        raise ValueError('type the words to label with, separated by commas, e.g. "seat, leg, back"')
    long = [w for w in words if len(word_output(w).encode("utf-8")) > NAME_BYTES]
    if long:
        raise ValueError(f"{long[0][:20]!r}… is too long for a Blender name ({NAME_BYTES} bytes with 'label_')")


def label_problem(obj: bpy.types.Object | None) -> str:
    """Why Label cannot run on obj ('' when it can): what its greyed-out button says."""
    problem = actions.object_problem(obj)
    if problem:
        return problem
    kind = properties.scene_kind(obj)
    if METHOD not in properties.methods_for(kind):
        return f"This backend cannot label {properties.KIND_WORDS.get(kind, kind)} from words (it has no {METHOD})"
    return ""


def default_prior(method: str) -> str | None:
    """The method's default prior as the backend names it, so the CLIP checkpoint of the preferences goes along."""
    entry = next((m for m in properties.method_catalogue() if m["name"] == method), None)
    return entry.get("default_prior") if entry else None


def chosen(settings: properties.SegAnySettings) -> tuple[str | None, dict[str, Any] | None]:
    """The Advanced panel's prior and options where the chosen method is the labelling one; else the defaults
    (another method's prior and options would not fit it)."""
    if settings.method_choice != METHOD:
        return None, None
    return settings.prior or None, properties.option_dict(settings)


def legend(obj: bpy.types.Object) -> tuple[list[str], np.ndarray]:
    """The words and colours of obj's current labels (empty when it has none)."""
    raw = obj.get(LEGEND)
    if not raw:
        return [], np.zeros((0, 3), np.float32)
    data = json.loads(raw)
    return list(data["words"]), np.asarray(data["colours"], np.float32).reshape(-1, 3)


def _remove_previous(obj: bpy.types.Object) -> None:
    """The per-word outputs of an earlier labelling: words not asked again must not linger."""
    for word in legend(obj)[0]:
        name = word_output(word)
        group = obj.vertex_groups.get(name) if obj.type == "MESH" else None
        if group is not None:
            obj.vertex_groups.remove(group)
        attr = obj.data.attributes.get(name)
        if attr is not None:
            obj.data.attributes.remove(attr)


@dataclass
class LabelsDone:
    """What a labelling made: per element its word (-1 other), per element and word the relevancy, the colours."""

    words: list[str]
    labels: np.ndarray  # (N,) int32
    relevancy: np.ndarray  # (N, W) float32
    colours: np.ndarray  # (W, 3) float32
    made: list[Any]  # the int attribute, the colour attribute, then per word its group or attribute
    calibrated: list[str]  # the words whose capability came from a calibration table (the rest: the scene's)

    def count(self, word: str) -> int:
        return int((self.labels == self.words.index(word)).sum())

    def summary(self) -> str:
        """The operator's report: the count per word and, with a table, which words it measured (a table for
        other words falls back to the scene's estimate without an error, so the user must be told)."""
        counts = ", ".join(f"{w} {self.count(w):,}" for w in self.words)
        if not self.calibrated:
            return f"labelled {counts}"
        measured = f"{len(self.calibrated)} of {len(self.words)} words"
        return f"labelled {counts}; capability from the calibration for {measured}"


def write_labels(obj: bpy.types.Object, words: list[str], sel: Selection) -> LabelsDone:
    """Write the backend's answer into obj: the label and colour attributes, per word a group or attribute."""
    labels = np.asarray(sel.extras["labels"], np.int32)
    relevancy = np.asarray(sel.extras["relevancy"], np.float32).reshape(len(labels), len(words))
    n = scene_read.element_count(obj)
    if len(labels) != n:
        raise ValueError(
            f"{len(labels):,} labels for {n:,} elements of {obj.name!r}: the geometry changed; label again"
        )
    colours = word_colours(len(words))
    _remove_previous(obj)
    made: list[Any] = [
        results.write_int_attribute(obj.data, LABEL_ATTRIBUTE, labels),
        results.write_label_colours(obj.data, LABEL_COLOUR, labels, colours, OTHER_COLOUR),
    ]
    as_groups = properties.scene_kind(obj) == "mesh"  # a splat or point mesh (no faces) takes attributes too
    for k, word in enumerate(words):
        if as_groups:
            made.append(results.write_vertex_group(obj, word_output(word), (labels == k).astype(np.float32), 0.5))
        else:
            made.append(results.write_float_attribute(obj.data, word_output(word), relevancy[:, k]))
    obj[LEGEND] = json.dumps({"words": words, "colours": np.round(colours, 4).tolist()}, ensure_ascii=False)
    calibrated = np.asarray(sel.extras.get("calibrated", np.zeros(len(words), bool)), bool)
    measured = [w for w, c in zip(words, calibrated, strict=True) if c]
    return LabelsDone(words, labels, relevancy, colours, made, measured)


def _query(words: list[str], other: bool, calibration: dict | None = None) -> dict[str, Any]:
    # every word's relevancy: a splat's or point's per-word attribute, and LabelsDone.relevancy for scripts
    query = {"words": list(words), "other": bool(other), "relevancy": True}
    if calibration is not None:
        query["calibration"] = calibration
    return query


def calibration_problem(table: str) -> str:
    """Why a calibration file cannot be read ('' when it can or none is given): the panel shows it under the
    field, before the button is pressed."""
    path = Path(bpy.path.abspath(table)) if table else None
    if path is None or path.is_file():
        return ""
    return f"calibration file {path} does not exist (write one with `segany calibrate`)"


def read_calibration(table: str | dict | None) -> dict | None:
    """A `segany calibrate` table, given as its file (a Blender path: "//" is the .blend's folder) or its JSON;
    None or "" (the panel's empty field): none. The backend checks what is inside (its sources, models, IoUs)."""
    if not table or isinstance(table, dict):
        return table or None
    problem = calibration_problem(str(table))
    if problem:
        raise ValueError(problem)
    path = Path(bpy.path.abspath(str(table)))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"calibration file {path} is not JSON: {exc}") from exc


def label(
    obj: bpy.types.Object,
    words: list[str],
    other: bool = False,
    method: str = METHOD,
    prior: str | None = None,
    options: dict[str, Any] | None = None,
    timeout: float | None = None,
    prior_options: dict[str, Any] | None = None,
    calibration: str | dict | None = None,
) -> LabelsDone:
    """Blocking, for scripts: prepare obj for `method` (or load it from the cache), label it and write it."""
    words = [w.strip() for w in words]
    check_words(words)
    query = _query(words, other, read_calibration(calibration))  # a bad file is named before any prepare
    prior = prior or default_prior(method)
    st = actions.prepare_blocking(obj, method, prior, options, timeout, prior_options)
    sel = runtime.current().backend.ensure().query(method, st.scene_id, query, prior=prior)
    return write_labels(obj, words, sel)


def relabel(
    obj: bpy.types.Object, words: list[str], other: bool = False, calibration: str | dict | None = None
) -> LabelsDone:
    """Blocking: label an object already prepared for labels with other words (no prepare, one query)."""
    words = [w.strip() for w in words]
    check_words(words)
    query = _query(words, other, read_calibration(calibration))
    st = prepared_for_labels(obj)
    if st is None:
        raise ValueError(f"{obj.name!r} is not prepared for labels (or changed since): label it from the panel")
    return write_labels(obj, words, _asker(st, query, st.prior or None)())


def prepared_for_labels(obj: bpy.types.Object) -> runtime.ObjectState | None:
    """obj's state when it is prepared for labelling and unchanged since; None when a prepare must run first."""
    rt = runtime.current_or_none()
    st = rt.objects.get(actions.object_key(obj)) if rt is not None else None
    if st is None or st.status != "prepared" or st.method != METHOD:
        return None
    return None if st.geometry_problem(scene_read.element_count(obj)) else st


class Pending(background.Pending):
    """A labelling running in the background for the button: prepare if needed, then the query (a Selection)."""

    def __init__(self, key: int, query: dict[str, Any], prior: str | None) -> None:
        super().__init__()
        self.key, self.query, self.prior = key, query, prior
        self.asked = False

    def step(self) -> None:
        """Called on the main thread while waiting: once the prepare has ended, ask (once) or take its error."""
        if self.asked or self.done:
            return
        st = runtime.current().state(self.key)
        if st.status in actions.PREPARE_RUNNING:
            return
        if st.status != "prepared":
            self.error = ValueError(st.message or f"prepare {METHOD} {st.status}")
            return
        self.asked = True
        ask = _asker(st, self.query, self.prior)
        runtime.current().bridge.run(ask, self.answered, self.failed)


def _asker(st: runtime.ObjectState, query: dict[str, Any], prior: str | None) -> Callable[[], Selection]:
    rt = runtime.current()
    return lambda: rt.backend.ensure().query(METHOD, st.scene_id, query, prior=prior)


def start(
    obj: bpy.types.Object,
    words: list[str],
    other: bool,
    prior: str | None,
    options: dict[str, Any] | None,
    calibration: str | dict | None = None,
) -> Pending:
    """Label without blocking Blender: prepare in the background unless obj is prepared for it, then ask."""
    words = [w.strip() for w in words]
    check_words(words)
    problem = label_problem(obj)
    if problem:
        raise ValueError(problem)
    query = _query(words, other, read_calibration(calibration))  # a bad file is named before any prepare
    st = prepared_for_labels(obj)
    if st is not None:
        return Pending(actions.object_key(obj), query, st.prior or None)
    prior = prior or default_prior(METHOD)
    pending = Pending(actions.object_key(obj), query, prior)
    runtime.current().prepare(pending.key, scene_read.read_object(obj), METHOD, prior, options)
    return pending
