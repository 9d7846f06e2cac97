"""What the operators, the click tool and the scripting API do, as plain functions on Blender data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import bpy
import numpy as np

from . import overlay, properties, results, runtime, scene_read, selection_math
from . import scale as slider
from .click_session import ClickSession
from .client import RemoteError

PREPARE_RUNNING = ("sending", "sent", "preparing")  # object states while a prepare is under way


def object_key(obj: bpy.types.Object) -> int:
    """Runtime key of an object: stable while Blender runs, survives renames."""
    return obj.session_uid


def next_color(obj: bpy.types.Object) -> tuple[float, float, float, float]:
    return selection_math.segment_color(len(obj.segany_segments))


def parse_clicks(text: str) -> list[tuple[int, int]]:
    """ "12 40 -7" or "12,+40,-7" → [(12, 1), (40, 1), (7, -1)]; the sign is read from the text, so "-0"
    removes element 0 (the same convention as `segany segment --click`)."""
    out = []
    for token in text.replace(",", " ").split():
        try:
            index = abs(int(token))
        except ValueError:
            raise ValueError(f"click {token!r} is not an element index like 12 or -7") from None
        out.append((index, -1 if token.startswith("-") else 1))
    return out


def unique_name(obj: bpy.types.Object, name: str) -> str:
    """name, or name.001, .002 … so a new segment never overwrites an earlier one's outputs."""
    taken = {s.name for s in obj.segany_segments}
    if name not in taken:
        return name
    k = 1
    while f"{name}.{k:03d}" in taken:
        k += 1
    return f"{name}.{k:03d}"


def object_problem(obj: bpy.types.Object | None) -> str:
    """Why SegAny cannot work on obj ('' when it can): what a greyed-out button says."""
    if obj is None:
        return "Select a mesh, splat or point-cloud object"
    if obj.type not in ("MESH", "POINTCLOUD"):
        return f"{obj.name!r} is a {obj.type.lower()}: select a mesh, splat or point-cloud object"
    return ""


def method_for(obj: bpy.types.Object, chosen: str = "") -> str:
    """The method to run on obj: the chosen one where it fits obj's kind, else the first that does."""
    kind = properties.scene_kind(obj)
    method = properties.resolve_method(chosen, kind)
    if not method:
        names = ", ".join(m["name"] for m in properties.method_catalogue())
        raise ValueError(f"no method works on {properties.KIND_WORDS.get(kind, kind)}; the backend has: {names}")
    return method


def prepare_problem(obj: bpy.types.Object | None) -> str:
    """Why Prepare cannot start on obj ('' when it can)."""
    problem = object_problem(obj)
    if problem:
        return problem
    kind = properties.scene_kind(obj)
    if not properties.methods_for(kind):
        return f"No method of this backend works on {properties.KIND_WORDS.get(kind, kind)}"
    rt = runtime.current_or_none()
    st = rt.objects.get(object_key(obj)) if rt is not None else None
    if st is not None and st.status in PREPARE_RUNNING:
        return "Already preparing: wait for it or press Cancel"
    return ""


def click_problem(obj: bpy.types.Object | None, chosen: str = "") -> str:
    """Why the click tool cannot start on obj ('' when it can). An object not prepared can still be clicked
    with a chosen method that needs no per-object work (walk): the tool sends it when it starts."""
    problem = object_problem(obj)
    if problem:
        return problem
    rt = runtime.current_or_none()
    st = rt.objects.get(object_key(obj)) if rt is not None else None
    if st is not None and st.status == "prepared":
        return st.geometry_problem(scene_read.element_count(obj))
    method = properties.resolve_method(chosen, properties.scene_kind(obj))
    if method and not properties.needs_prepare(method):
        return ""
    return "Press Prepare first: the method needs its per-object work"


def ready_to_click(obj: bpy.types.Object, chosen: str = "", prior: str = "") -> runtime.ObjectState:
    """The object's state for a click session: as prepared, or — for a chosen method that needs no prepare —
    sent now (again if it was edited) and set to that method, so the first click answers."""
    rt = runtime.current()
    st = rt.state(object_key(obj))
    if st.status == "prepared" and not st.geometry_problem(scene_read.element_count(obj)):
        return st
    method = method_for(obj, chosen)
    if properties.needs_prepare(method):
        raise ValueError("Press Prepare first: the method needs its per-object work")
    rt.send_sync(object_key(obj), scene_read.read_object(obj))
    st.method, st.prior = method, prior
    return st


def prepare_report(obj_name: str, st: runtime.ObjectState) -> tuple[str, str] | None:
    """How a prepare that runs in the background ended, as (report level, text) for the Info log and the
    status bar; None while it still runs. The sidebar line alone is too easy to miss, and is clipped."""
    if st.status in PREPARE_RUNNING:
        return None
    if st.status == "prepared":
        return "INFO", f"{obj_name}: prepared {st.method}" + (" (from cache)" if st.from_cache else "")
    if st.status == "failed":
        return "ERROR", f"{obj_name}: prepare {st.method} failed: {st.message}"
    if st.status == "cancelled":
        return "WARNING", f"{obj_name}: prepare {st.method} cancelled"
    return "WARNING", f"{obj_name}: prepare {st.method} stopped (the backend restarted)"


def start_prepare(obj: bpy.types.Object, settings: properties.SegAnySettings) -> None:
    """Read the object, send it and start the prepare job in the background (UI path) with the chosen
    method where it fits the object's kind, else the first that does (what the Method field shows)."""
    rt = runtime.current()
    method = method_for(obj, settings.method_choice)
    options = properties.option_dict(settings)
    scene = scene_read.read_object(obj)
    rt.prepare(object_key(obj), scene, method, settings.prior or None, options)


def prepare_blocking(
    obj: bpy.types.Object,
    method: str | None = None,
    prior: str | None = None,
    options: dict[str, Any] | None = None,
    timeout: float | None = None,
    prior_options: dict[str, Any] | None = None,
) -> runtime.ObjectState:
    """Send the object and run (or load from cache) the method's prepare (None: the first method that fits
    the object's kind); returns the object's state. `prior_options` go over the preferences' checkpoint."""
    rt = runtime.current()
    if not rt.methods:
        rt.load_catalogue()  # a script before the panel's connect: what the methods take is the backend's to say
    method = method or method_for(obj)
    key = object_key(obj)
    scene = scene_read.read_object(obj)
    sid = rt.send_sync(key, scene)
    st = rt.state(key)
    st.method, st.prior, st.status = method, prior or "", "preparing"
    client = rt.backend.ensure()
    try:
        popts = {**rt.backend.config.prior_options(prior), **(prior_options or {})}
        result = client.submit(method, sid, prior=prior, options=options, prior_options=popts).result(timeout)
    except RemoteError as exc:
        st.status, st.message = "failed", runtime.error_text(exc)
        raise
    st.status, st.fraction, st.message = "prepared", 1.0, str(result.get("message", "prepared"))
    st.from_cache = "cache" in st.message
    return st


@dataclass
class Segmented:
    """What `segment` made: the scores, the threshold used, and the Blender data written."""

    scores: np.ndarray
    threshold: float
    segment: str
    made: Any = None
    prepared: str = ""  # how the method's per-object work was had: "prepared" or "loaded from cache"

    @property
    def mask(self) -> np.ndarray:
        return self.scores >= self.threshold

    @property
    def count(self) -> int:
        return int(self.mask.sum())


def accept(
    obj: bpy.types.Object,
    scores: np.ndarray,
    threshold: float,
    output: str,
    name: str,
    color: tuple[float, ...] | None = None,
    binary: bool = True,
    method: str = "",
    clicks: list | None = None,
) -> Segmented:
    """Keep a selection as a segment (scores attribute + list entry) and write it in the chosen output."""
    results.check_output(obj, output)  # before the segment is stored: a refused output changes nothing
    color = color or next_color(obj)
    name = unique_name(obj, name)
    seg = properties.add_segment(obj, name, scores, threshold, color, method, clicks)
    made = results.apply(obj, scores, threshold, output, name, color, binary)
    return Segmented(np.asarray(scores, np.float32), threshold, seg.name, made)


Preview = results.AttributePreview | overlay.PointOverlay


def live_preview(obj: bpy.types.Object, color: tuple[float, ...]) -> Preview:
    """How the click tool shows the selection while clicking: a colour attribute on meshes with faces; a
    viewport overlay on splat and point objects, where Solid mode shows no colour attribute."""
    if obj.type == "MESH" and len(obj.data.polygons) > 0:
        return results.AttributePreview(obj, color)
    return overlay.PointOverlay(obj, color)


def start_click(obj: bpy.types.Object, color: tuple[float, ...]) -> tuple[ClickSession, Preview]:
    """Begin a click-tool session on a prepared object: its live preview and the session that feeds it."""
    preview = live_preview(obj, color)
    name, key = obj.name, object_key(obj)

    def now() -> bpy.types.Object | None:  # looked up each time: a Blender object is never held across events
        found = bpy.data.objects.get(name)
        return found if found is not None and object_key(found) == key else None

    def count() -> int:
        found = now()
        return scene_read.element_count(found) if found is not None else 0

    def extra() -> dict[str, Any]:
        """The slider's scale, for a method whose query takes one (read when each query is sent)."""
        found = now()
        if found is None or not properties.takes_scale(runtime.current().state(key).method):
            return {}
        return {"scale": slider.query_scale(found, bpy.context.scene.segany)}

    def show(scores: np.ndarray, threshold: float) -> None:
        slider.remember(key, session.extras)
        preview.show(scores, threshold)

    session = ClickSession(runtime.current(), key, show=show, clear=preview.clear, count=count, extra=extra)
    slider.track(session)
    return session, preview


def finish_click(
    obj: bpy.types.Object,
    session: ClickSession,
    settings: properties.SegAnySettings,
    color: tuple[float, ...],
    keep: bool,
    preview: Preview,
) -> Segmented | None:
    """End a click-tool session (Enter keeps, Esc cancels): the live preview goes either way; kept scores
    become a segment in the chosen output, or a float attribute where the object cannot hold that output."""
    preview.close()
    slider.forget(session)
    if not keep:
        return None
    problem = runtime.current().state(object_key(obj)).geometry_problem(scene_read.element_count(obj))
    if problem:
        raise ValueError(problem)
    if session.scores is None:
        return None
    threshold = settings.threshold if settings.use_threshold else session.threshold
    output = settings.output if results.supports(obj, settings.output) else "attribute"
    method = runtime.current().state(object_key(obj)).method
    clicks = [list(c) for c in session.clicks]
    return accept(obj, session.scores, threshold, output, settings.output_name, color, settings.binary, method, clicks)


def segment(
    obj: bpy.types.Object,
    clicks: list[tuple[int, int]],
    method: str | None = None,
    prior: str | None = None,
    output: str = "vertex_group",
    name: str = "Segment",
    threshold: float | None = None,
    binary: bool = True,
    options: dict[str, Any] | None = None,
    timeout: float | None = None,
    prior_options: dict[str, Any] | None = None,
) -> Segmented:
    """Blocking click → selection → Blender data, for scripts and the explicit operator (method None: the
    first that fits the object's kind)."""
    if not clicks:
        raise ValueError("give at least one click: [(element_index, +1 or -1), ...]")
    n = len(obj.data.vertices) if obj.type == "MESH" else len(getattr(obj.data, "points", []))
    bad = [c for c in clicks if not (0 <= int(c[0]) < n) or int(c[1]) not in (-1, 1)]
    if bad:
        raise ValueError(f"clicks {bad} are out of range: indices in 0..{n - 1}, signs +1 or -1")
    method = method or method_for(obj)
    st = prepare_blocking(obj, method, prior, options, timeout, prior_options)
    rt = runtime.current()
    plain = [[int(i), int(s)] for i, s in clicks]
    sel = rt.backend.ensure().query(method, st.scene_id, {"clicks": plain}, prior=prior)
    thr = float(sel.threshold if threshold is None else threshold)
    scores = np.asarray(sel.scores, np.float32)
    done = accept(obj, scores, thr, output, name, binary=binary, method=method, clicks=plain)
    done.prepared = st.message
    return done


def apply_segment(obj: bpy.types.Object, index: int, output: str, name: str | None = None, binary: bool = True) -> Any:
    """Write an existing segment in another output form (from its stored scores)."""
    seg = obj.segany_segments[index]
    scores = properties.segment_scores(obj, seg)
    return results.apply(obj, scores, seg.threshold, output, name or seg.name, tuple(seg.color), binary)
