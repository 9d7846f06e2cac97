"""The scale slider: the size of the part a click selects, for methods whose query takes a `scale` (saga).

The slider holds a length in Blender units, which the panel shows in the scene's units (metres by default).
The backend measured its scales in the object's LOCAL coordinates, the ones the add-on sends, so a value is
divided by the object's size per local unit on the way out and multiplied on the way back.

Dragging re-asks the backend through each live click session's own query path with its current clicks. The
bridge sends only the newest queued query of an object and the session shows only the newest answer, so a
fast drag keeps at most one query in flight and nothing waits on Blender's main thread.
"""

from __future__ import annotations

import math
from typing import Any

import bpy

from .click_session import ClickSession

_SESSIONS: dict[int, ClickSession] = {}  # the live click sessions by object key: what a slider step re-asks
_RANGES: dict[int, tuple[float, float]] = {}  # trained scale range (local units) by object key, once an answer said it


def world_per_local(obj: bpy.types.Object) -> float:
    """Blender units per local unit of obj: the geometric mean of its scale, exact for a uniform scale (a
    non-uniformly scaled object has no single size per unit; the mean is the volume-preserving choice)."""
    sx, sy, sz = (abs(v) for v in obj.matrix_world.to_scale())
    size = (sx * sy * sz) ** (1.0 / 3.0)
    return size if math.isfinite(size) and size > 0 else 1.0


def query_scale(obj: bpy.types.Object, settings: bpy.types.PropertyGroup) -> float | str:
    """The query's `scale` for obj: "auto", or the slider's length in obj's local units."""
    return "auto" if settings.scale_auto else float(settings.scale) / world_per_local(obj)


def track(session: ClickSession) -> None:
    """A click session started: slider steps now re-ask it."""
    _SESSIONS[session.key] = session


def forget(session: ClickSession) -> None:
    """A click session ended (kept, cancelled or ended by Blender)."""
    if _SESSIONS.get(session.key) is session:
        del _SESSIONS[session.key]


def live(key: int) -> ClickSession | None:
    return _SESSIONS.get(key)


def remember(key: int, extras: dict[str, Any]) -> None:
    """Keep the trained scale range an answer reports (`scale_range`, local units): the slider stays in it."""
    found = extras.get("scale_range")
    if found is not None and len(found) == 2 and 0 < float(found[0]) <= float(found[1]):
        _RANGES[key] = (float(found[0]), float(found[1]))


def trained_range(obj: bpy.types.Object | None) -> tuple[float, float] | None:
    """The sizes obj's parts were trained at, in Blender units; None until an answer has said them."""
    if obj is None or obj.session_uid not in _RANGES:
        return None
    lo, hi = _RANGES[obj.session_uid]
    unit = world_per_local(obj)
    return lo * unit, hi * unit


def used_scale(obj: bpy.types.Object | None) -> float | None:
    """The scale the newest answer of obj's click session used (what "auto" chose), in Blender units."""
    session = live(obj.session_uid) if obj is not None else None
    found = session.extras.get("scale") if session is not None else None
    return None if found is None or len(found) == 0 else float(found[0]) * world_per_local(obj)


def refresh_all() -> None:
    for session in list(_SESSIONS.values()):
        session.refresh()


def scale_changed(settings: bpy.types.PropertyGroup, context: bpy.types.Context) -> None:
    """The slider moved: keep it within the active object's trained range, then re-ask the live sessions.
    Setting the clamped value calls this again, which does the re-asking."""
    span = trained_range(getattr(context, "active_object", None))
    if span is not None:
        clamped = min(max(settings.scale, span[0]), span[1])
        if not math.isclose(clamped, settings.scale, rel_tol=1e-6):
            settings.scale = clamped
            return
    if not settings.scale_auto:
        refresh_all()


def auto_changed(settings: bpy.types.PropertyGroup, context: bpy.types.Context) -> None:
    """Auto toggled: re-ask. Turning it off starts the slider where auto was, so the selection stays put."""
    chosen = None if settings.scale_auto else used_scale(getattr(context, "active_object", None))
    if chosen is not None and not math.isclose(chosen, settings.scale, rel_tol=1e-6):
        settings.scale = chosen  # its update re-asks
        return
    refresh_all()


def length_text(scene: bpy.types.Scene, value: float) -> str:
    """A length in Blender units as the scene shows lengths (its unit system and unit scale)."""
    units = scene.unit_settings
    if units.system == "NONE":
        return f"{value:.3g}"
    return bpy.utils.units.to_string(units.system, "LENGTH", value * units.scale_length, precision=3)


def forget_all() -> None:
    """A new file was loaded or the add-on unregistered: no session or object of before is live."""
    _SESSIONS.clear()
    _RANGES.clear()
