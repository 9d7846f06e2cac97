"""The interactive click tool (modal): LMB adds, Shift+LMB removes, Ctrl+Z undoes a click, Enter keeps
the segment, Esc cancels. Navigation passes through. Scores come back in the background and colour the
object live through a colour attribute shown in Solid mode."""

from __future__ import annotations

import bpy

from . import actions, picking, results, runtime
from .click_session import ClickSession

HELP = "LMB add · Shift+LMB remove · Ctrl+Z undo click · Enter keep · Esc cancel"


class SEGANY_OT_click_tool(bpy.types.Operator):
    """Click parts of the active object to select them with the prepared method"""

    bl_idname = "segany.click_tool"
    bl_label = "Click Tool"
    bl_options = {"REGISTER", "UNDO", "BLOCKING"}  # noqa: RUF012 (Blender reads a set)

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        obj = context.active_object
        return (
            context.area is not None
            and context.area.type == "VIEW_3D"
            and obj is not None
            and obj.type in ("MESH", "POINTCLOUD")
        )

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        obj = context.active_object
        rt = runtime.current()
        st = rt.state(actions.object_key(obj))
        if st.status != "prepared":
            self.report({"WARNING"}, "Press Prepare first (the method needs its per-object work)")
            return {"CANCELLED"}
        if obj.mode != "OBJECT":
            bpy.ops.object.mode_set(mode="OBJECT")
        self.obj_name = obj.name
        self.color = actions.next_color(obj)
        self.picker = picking.cached_picker(obj, actions.object_key(obj), st.scene_id, context.scene.segany.pick_radius)
        shading = context.space_data.shading
        self.saved_shading = (shading.type, shading.color_type)
        shading.type = "SOLID"  # colour attributes show in Solid mode; restored on exit
        shading.color_type = "VERTEX"
        data = obj.data
        self.session = ClickSession(
            rt,
            actions.object_key(obj),
            show=lambda scores, thr: results.show_preview(data, scores, thr, self.color),
            clear=lambda: results.clear_preview(data),
        )
        context.window_manager.modal_handler_add(self)
        context.workspace.status_text_set(HELP)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        context.area.header_text_set(self._header())
        xy = (event.mouse_region_x, event.mouse_region_y)
        outcome = self.session.on_event(
            event.type,
            event.value,
            event.shift,
            event.ctrl or event.oskey,
            lambda: self.picker.pick_region(context.region, context.region_data, xy),
        )
        if outcome == "pass":
            return {"PASS_THROUGH"}
        if outcome in ("accept", "cancel"):
            return self._finish(context, keep=outcome == "accept")
        return {"RUNNING_MODAL"}

    def _header(self) -> str:
        s = self.session
        text = f"SegAny: {len(s.clicks)} clicks, {s.selected} selected"
        if s.error:
            text += f" — {s.error}"
        return f"{text}    ({HELP})"

    def _finish(self, context: bpy.types.Context, keep: bool) -> set[str]:
        obj = bpy.data.objects.get(self.obj_name)
        shading = context.space_data.shading
        shading.type, shading.color_type = self.saved_shading
        context.area.header_text_set(None)
        context.workspace.status_text_set(None)
        if obj is None:
            return {"CANCELLED"}
        try:
            made = actions.finish_click(obj, self.session, context.scene.segany, self.color, keep)
        except (ValueError, RuntimeError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"} if made is not None else {"CANCELLED"}
