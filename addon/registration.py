"""Register / unregister everything, and own the session's runtime, timer and handlers.

Unregister leaves nothing behind: classes, properties, the timer, the handlers, the click tool's viewport
overlays, the worker thread and the backend process all go. The backend also exits by itself when Blender
dies (it watches our pid)."""

from __future__ import annotations

import atexit

import bpy

from . import click_tool, operators, overlay, panels, picking, preferences, properties, runtime
from . import scale as slider

CLASSES = (
    *properties.CLASSES,
    preferences.SEGANY_AP_preferences,
    *operators.CLASSES,
    click_tool.SEGANY_OT_click_tool,
    *panels.CLASSES,
)
TIMER_BUSY = 0.005  # while answers are expected: a click's result waits at most this long for the main thread
TIMER_IDLE = 0.1


def drain() -> float:
    """The timer: run the bridge's queued callbacks on the main thread (tests call this directly)."""
    rt = runtime.current_or_none()
    if rt is None:
        return TIMER_IDLE
    rt.bridge.drain()
    if rt.backend.status == "running" and not rt.backend.alive():
        rt.changed()  # it died (crash, killed): the panel now says so and offers Restart
    busy = rt.bridge.pending() or any(st.status in ("sending", "preparing") for st in rt.objects.values())
    return TIMER_BUSY if busy else TIMER_IDLE


def redraw() -> None:
    """Repaint the viewports and preferences so status and progress show at once."""
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", []):
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "PREFERENCES"):
                area.tag_redraw()


@bpy.app.handlers.persistent
def _on_load(_dummy: object) -> None:
    """A new file means new objects: forget the per-object scene states (the backend cache stays)."""
    rt = runtime.current_or_none()
    if rt is not None:
        rt.objects.clear()
    picking.forget_pickers()
    overlay.remove_all()
    slider.forget_all()


def _on_exit() -> None:
    runtime.uninstall()


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    properties.register()
    rt = runtime.install(runtime.Runtime(preferences.config_from(preferences.get())))
    rt.changed = redraw
    bpy.app.timers.register(drain, first_interval=TIMER_IDLE, persistent=True)
    bpy.app.handlers.load_post.append(_on_load)
    atexit.register(_on_exit)


def unregister() -> None:
    atexit.unregister(_on_exit)
    if _on_load in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_on_load)
    if bpy.app.timers.is_registered(drain):
        bpy.app.timers.unregister(drain)
    runtime.uninstall()
    picking.forget_pickers()
    overlay.remove_all()
    slider.forget_all()
    properties.unregister()
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
