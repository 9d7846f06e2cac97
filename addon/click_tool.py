"""The interactive click tool (modal): LMB adds, Shift+LMB removes, Ctrl+Z undoes a click, Enter keeps
the segment, Esc cancels; every other event passes to Blender. Scores come back in the background and
show live: on meshes through a colour attribute in Solid mode, on splat and point objects as an overlay."""

from __future__ import annotations

import bpy

from . import actions, overlay, picking, runtime
from . import scale as slider
from .client import BackendUnavailable, RemoteError

HELP = "LMB add · Shift+LMB remove · Ctrl+Z undo click · Enter keep · Esc cancel"
POINTER_BUTTONS = frozenset({"LEFTMOUSE", "RIGHTMOUSE", "MIDDLEMOUSE"})


def _inside(region: object, x: int, y: int) -> bool:
    return region.x <= x < region.x + region.width and region.y <= y < region.y + region.height


def viewport_region(area: object, x: int, y: int) -> object | None:
    """The 3D view's main region under the window position (x, y), or None over anything drawn on top of it
    (the sidebar, header, toolbar; with region overlap they lie over the main region) or outside the area.
    The tool is started from the sidebar, so its own region is not the one to pick in."""
    regions = [r for r in area.regions if r.width > 1 and r.height > 1 and _inside(r, x, y)]
    if any(r.type != "WINDOW" for r in regions):
        return None
    return next(iter(regions), None)


class SEGANY_OT_click_tool(bpy.types.Operator):
    """Click parts of the active object to select them with the prepared method"""

    bl_idname = "segany.click_tool"
    bl_label = "Click Tool"
    bl_options = {"REGISTER", "UNDO", "BLOCKING"}  # noqa: RUF012 (Blender reads a set)

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        settings = getattr(context.scene, "segany", None)
        problem = actions.click_problem(context.active_object, settings.method_choice if settings else "")
        if not problem and (context.area is None or context.area.type != "VIEW_3D"):
            problem = "Start the click tool from a 3D viewport's sidebar"
        if problem:
            cls.poll_message_set(problem)
        return not problem

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        obj = context.active_object
        settings = context.scene.segany
        try:
            st = actions.ready_to_click(obj, settings.method_choice, settings.prior)
        except (ValueError, RuntimeError, RemoteError, BackendUnavailable) as exc:
            self.report({"ERROR"}, runtime.error_text(exc))
            return {"CANCELLED"}
        if obj.mode != "OBJECT":
            bpy.ops.object.mode_set(mode="OBJECT")
        self.obj_name = obj.name
        self.color = actions.next_color(obj)
        self.picker = picking.cached_picker(obj, actions.object_key(obj), st.scene_id, context.scene.segany.pick_radius)
        self.session, self.preview = actions.start_click(obj, self.color)
        self.saved_shading = None
        if not isinstance(self.preview, overlay.PointOverlay):
            shading = context.space_data.shading
            self.saved_shading = (shading.type, shading.color_type)
            shading.type = "SOLID"  # colour attributes show in Solid mode; restored on exit
            shading.color_type = "VERTEX"
        context.window_manager.modal_handler_add(self)
        context.workspace.status_text_set(HELP)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if bpy.data.objects.get(self.obj_name) is None:  # deleted while clicking (a script, a timer)
            return self._finish(context, keep=False)
        context.area.header_text_set(self._header())
        region = viewport_region(context.area, event.mouse_x, event.mouse_y)
        if region is None and event.type in POINTER_BUTTONS:
            return {"PASS_THROUGH"}  # over the sidebar, header or toolbar: the scale slider and buttons work
        xy = (event.mouse_x - region.x, event.mouse_y - region.y) if region is not None else (0, 0)
        outcome = self.session.on_event(
            event.type,
            event.value,
            event.shift,
            event.ctrl or event.oskey,
            lambda: self.picker.pick_region(region, region.data, xy),
        )
        if outcome == "pass":
            return {"PASS_THROUGH"}
        if outcome in ("accept", "cancel"):
            return self._finish(context, keep=outcome == "accept")
        return {"RUNNING_MODAL"}

    def _header(self) -> str:
        s = self.session
        text = f"SegAny: {len(s.clicks)} clicks, {s.selected} selected"
        problem = s.error or self.preview.error
        if problem:
            text += f" — {problem}"
        return f"{text}    ({HELP})"

    def _restore(self, context: bpy.types.Context) -> None:
        """Remove the live preview and give the viewport back its shading, header and status bar."""
        self.preview.close()
        space = context.space_data
        if self.saved_shading is not None and space is not None and space.type == "VIEW_3D":
            space.shading.type, space.shading.color_type = self.saved_shading
        if context.area is not None:
            context.area.header_text_set(None)
        if context.workspace is not None:
            context.workspace.status_text_set(None)

    def cancel(self, context: bpy.types.Context) -> None:
        """Blender ends the tool itself (a file is loaded, the window closes): leave nothing behind."""
        self._restore(context)
        slider.forget(self.session)

    def _finish(self, context: bpy.types.Context, keep: bool) -> set[str]:
        self._restore(context)
        obj = bpy.data.objects.get(self.obj_name)
        if obj is None:
            return {"CANCELLED"}
        try:
            made = actions.finish_click(obj, self.session, context.scene.segany, self.color, keep, self.preview)
        except (ValueError, RuntimeError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"} if made is not None else {"CANCELLED"}
