"""The "SegAny" sidebar tab in the 3D viewport: the main actions (backend, method, prepare, the click tool,
where the segment goes) first, then the segments made so far, then a collapsed Advanced panel."""

from __future__ import annotations

import bpy

from . import actions, labels, preferences, properties, runtime, scene_read
from . import scale as slider

STATUS_TEXT = {
    "not sent": "Not sent to the backend yet",
    "sending": "Sending…",
    "sent": "Sent",
    "preparing": "Preparing",
    "prepared": "Prepared",
    "failed": "Failed",
    "cancelled": "Cancelled",
}


def scene_status(rt: runtime.Runtime, obj: bpy.types.Object) -> tuple[str, str]:
    """(text, icon) describing the object's scene: sent / preparing x% / prepared (from cache) / failed."""
    st = rt.state(actions.object_key(obj))
    text = STATUS_TEXT.get(st.status, st.status)
    if st.status == "preparing":
        text = f"Preparing {st.method}: {st.fraction:.0%} {st.message}"
    elif st.status == "prepared":
        text = f"Prepared {st.method}" + (" (from cache)" if st.from_cache else "")
    elif st.status in ("failed", "cancelled") and st.message:
        text = st.message
    if st.scene_id and st.status not in ("preparing",):
        text += f" · {st.kind} {st.n_elements:,} · {st.scene_id[:8]}"
    icon = {"prepared": "CHECKMARK", "failed": "ERROR", "preparing": "SORTTIME"}.get(st.status, "INFO")
    changed = st.geometry_problem(scene_read.element_count(obj)) if st.status == "prepared" else ""
    if changed:
        text, icon = changed, "ERROR"
    return text, icon


class _Sidebar:
    """Where every SegAny panel lives: the 3D viewport's sidebar, one tab."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "SegAny"


class _ObjectPanel(_Sidebar):
    """A sub-panel of the main one, shown while the active object is one SegAny can work on."""

    bl_parent_id = "SEGANY_PT_main"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return not actions.object_problem(context.active_object)


def _settings_column(layout: bpy.types.UILayout) -> bpy.types.UILayout:
    """A column of settings as Blender's own panels draw them: labels left of the fields, no keyframe dots."""
    layout.use_property_split = True
    layout.use_property_decorate = False
    return layout.column()


def _big_button(layout: bpy.types.UILayout, operator: str, icon: str) -> None:
    """The panel's main action, drawn taller than the settings around it."""
    row = layout.row()
    row.scale_y = 1.4
    row.operator(operator, icon=icon)


class SEGANY_UL_segments(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        row = layout.row(align=True)
        row.prop(item, "color", text="", emboss=True)
        row.prop(item, "name", text="", emboss=False)
        row.label(text=f"{item.count:,}")


class SEGANY_PT_main(_Sidebar, bpy.types.Panel):
    """The main actions: the backend, the method, Prepare, the click tool and where its segment goes."""

    bl_label = "SegAny"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.use_property_split = True
        layout.use_property_decorate = False
        rt = runtime.current_or_none()
        prefs = preferences.get()
        text, icon = preferences.status_line(rt, prefs)
        box = layout.box()
        box.label(text=text, icon=icon)
        if preferences.restart_pending(rt, prefs):
            box.label(text=preferences.RESTART_NOTE, icon="INFO")
        row = box.row(align=True)
        if rt is None or rt.backend.status in ("stopped", "error"):
            row.operator("segany.backend_start", icon="PLAY")
        if rt is not None and rt.backend.status in ("dead", "error", "running"):
            row.operator("segany.backend_restart", icon="FILE_REFRESH")
        if rt is not None and rt.backend.status != "running" and preferences.config_from(prefs).problem():
            row.operator("segany.open_preferences", icon="PREFERENCES")
        obj = context.active_object
        if rt is None or obj is None or obj.type not in ("MESH", "POINTCLOUD"):
            layout.label(text="Select a mesh, splat or point-cloud object")
            return
        settings = context.scene.segany
        col = layout.column()
        col.prop(settings, "method")
        text, icon = scene_status(rt, obj)
        col.label(text=text, icon=icon)
        st = rt.state(actions.object_key(obj))
        if st.status == "preparing":
            row = col.row(align=True)
            if hasattr(row, "progress"):
                row.progress(factor=st.fraction, type="BAR", text=f"{st.fraction:.0%}")
            row.operator("segany.cancel", icon="CANCEL")
        elif properties.needs_prepare(properties.resolve_method(settings.method_choice, properties.scene_kind(obj))):
            col.operator("segany.prepare", icon="PLAY")
        else:  # the click tool sends the object itself; Prepare only does the first click's work ahead
            col.operator("segany.prepare", text="Prepare (optional)", icon="PLAY")
        _big_button(col, "segany.click_tool", "RESTRICT_SELECT_OFF")
        if properties.takes_scale(properties.resolve_method(settings.method_choice, properties.scene_kind(obj))):
            draw_scale(col, context.scene, obj)
        col.separator()
        col.prop(settings, "output")
        col.prop(settings, "output_name")


def draw_scale(col: bpy.types.UILayout, scene: bpy.types.Scene, obj: bpy.types.Object) -> None:
    """The scale slider (greyed while Auto chooses) and, once the backend has said them, the sizes the object
    was trained at and the size Auto chose."""
    settings = scene.segany
    col.prop(settings, "scale_auto")
    sub = col.column()
    sub.active = not settings.scale_auto
    sub.prop(settings, "scale")  # a dragged length field steps by the value's own unit (mm, cm, m): any size
    span = slider.trained_range(obj)
    if span is not None:
        col.label(text=f"Trained sizes {slider.length_text(scene, span[0])} – {slider.length_text(scene, span[1])}")
    chosen = slider.used_scale(obj) if settings.scale_auto else None
    if chosen is not None:
        col.label(text=f"Auto chose {slider.length_text(scene, chosen)}")


class SEGANY_PT_segments(_ObjectPanel, bpy.types.Panel):
    bl_label = "Segments"

    def draw(self, context: bpy.types.Context) -> None:
        obj = context.active_object
        layout = self.layout
        row = layout.row()
        row.template_list("SEGANY_UL_segments", "", obj, "segany_segments", obj, "segany_segment_index", rows=4)
        side = row.column(align=True)
        side.operator("segany.segment_remove", icon="REMOVE", text="")
        buttons = layout.row(align=True)
        buttons.operator("segany.segment_apply", icon="CHECKMARK")
        if properties.scene_kind(obj) == "splats":
            buttons.operator("segany.export_ply", icon="EXPORT", text="Export PLY")


class SEGANY_PT_parts(_ObjectPanel, bpy.types.Panel):
    """Segment everything: the whole object split into parts at the scale, for methods that can (saga)."""

    bl_label = "Segment Everything"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not super().poll(context):
            return False
        chosen, kind = context.scene.segany.method_choice, properties.scene_kind(context.active_object)
        return properties.segments_everything(properties.resolve_method(chosen, kind))

    def draw(self, context: bpy.types.Context) -> None:
        settings = context.scene.segany
        col = _settings_column(self.layout)
        col.prop(settings, "parts_output")
        col.prop(settings, "parts_name")
        if settings.parts_output == "ply":
            col.prop(settings, "parts_directory")
        _big_button(col, "segany.everything", "MOD_EXPLODE")


class SEGANY_PT_labels(_ObjectPanel, bpy.types.Panel):
    """Label from words (SAS): the words, Other, an optional calibration table, the button; where the CLIP weights
    come from; the legend."""

    bl_label = "Label From Words"
    bl_options = {"DEFAULT_CLOSED"}  # noqa: RUF012 (Blender reads a set)

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        settings = context.scene.segany
        col = layout.column()
        col.prop(settings, "label_words", text="")
        col.prop(settings, "label_other")
        measured = _settings_column(layout)
        measured.prop(settings, "label_calibration")
        if labels.calibration_problem(settings.label_calibration):
            measured.label(text="Calibration file not found", icon="ERROR")
        col = layout.column()
        _big_button(col, "segany.label", "SORTALPHA")
        if not preferences.get().clip_checkpoint:
            for i, line in enumerate(labels.CLIP_HINT):
                col.label(text=line, icon="INFO" if i == 0 else "BLANK1")
        words, _colours = labels.legend(context.active_object)
        if words:
            kind = properties.scene_kind(context.active_object)
            box = layout.box()
            box.label(text=f"Labels in {labels.LABEL_ATTRIBUTE}:")
            for k, word in enumerate(words):
                box.label(text=f"{k}  {word}", icon="GROUP_VERTEX" if kind == "mesh" else "DOT")


class SEGANY_PT_advanced(_ObjectPanel, bpy.types.Panel):
    """What most uses leave alone: the 2D prior, method options, weights, threshold and pick radius."""

    bl_label = "Advanced"
    bl_options = {"DEFAULT_CLOSED"}  # noqa: RUF012 (Blender reads a set)

    def draw(self, context: bpy.types.Context) -> None:
        settings = context.scene.segany
        col = _settings_column(self.layout)
        col.prop(settings, "prior")
        col.prop(settings, "options")
        col.prop(settings, "binary")
        col.prop(settings, "use_threshold")
        sub = col.column()
        sub.active = settings.use_threshold
        sub.prop(settings, "threshold", slider=True)
        col.prop(settings, "pick_radius")


CLASSES = (
    SEGANY_UL_segments,
    SEGANY_PT_main,
    SEGANY_PT_segments,
    SEGANY_PT_parts,
    SEGANY_PT_labels,
    SEGANY_PT_advanced,
)
