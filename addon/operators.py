"""Thin operators over actions / runtime. Everything that changes Blender data is undoable."""

from __future__ import annotations

import json

import bpy
from bpy_extras.io_utils import ExportHelper

from . import actions, properties, results, runtime
from .client import BackendUnavailable, RemoteError

_ERRORS = (ValueError, RuntimeError, RemoteError, BackendUnavailable, json.JSONDecodeError)


def _active(context: bpy.types.Context) -> bpy.types.Object | None:
    obj = context.active_object
    return obj if obj is not None and obj.type in ("MESH", "POINTCLOUD") else None


class SEGANY_OT_backend_start(bpy.types.Operator):
    """Start (or reuse) the SegAny backend in the background"""

    bl_idname = "segany.backend_start"
    bl_label = "Start Backend"

    def execute(self, context: bpy.types.Context) -> set[str]:
        runtime.current().connect()
        return {"FINISHED"}


class SEGANY_OT_backend_restart(bpy.types.Operator):
    """Stop the backend and start a fresh one (after a crash or a settings change)"""

    bl_idname = "segany.backend_restart"
    bl_label = "Restart Backend"

    def execute(self, context: bpy.types.Context) -> set[str]:
        runtime.current().restart()
        return {"FINISHED"}


class SEGANY_OT_backend_stop(bpy.types.Operator):
    """Stop the backend process"""

    bl_idname = "segany.backend_stop"
    bl_label = "Stop Backend"

    def execute(self, context: bpy.types.Context) -> set[str]:
        rt = runtime.current()
        rt.bridge.run(rt.backend.stop, lambda _none: rt.changed())  # off the main thread: it may wait seconds
        return {"FINISHED"}


class SEGANY_OT_prepare(bpy.types.Operator):
    """Send the active object to the backend and prepare the method on it (training runs in the background)"""

    bl_idname = "segany.prepare"
    bl_label = "Prepare"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _active(context) is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            actions.start_prepare(_active(context), context.scene.segany)
        except _ERRORS as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


class SEGANY_OT_cancel(bpy.types.Operator):
    """Cancel the running prepare job of the active object"""

    bl_idname = "segany.cancel"
    bl_label = "Cancel"

    def execute(self, context: bpy.types.Context) -> set[str]:
        obj = _active(context)
        if obj is not None:
            runtime.current().cancel(actions.object_key(obj))
        return {"FINISHED"}


class SEGANY_OT_segment(bpy.types.Operator):
    """Segment the active object from explicit clicks (element indices and signs); blocks until done.
    For scripts: bpy.ops.segany.segment(clicks="12 40 -7", output="vertex_group")"""

    bl_idname = "segany.segment"
    bl_label = "Segment From Clicks"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012 (Blender reads a set)

    clicks: bpy.props.StringProperty(
        name="Clicks",
        description='Element indices, "-" in front removes: "12 40 -7" (like `segany segment --click`; -0 removes 0)',
    )
    method: bpy.props.StringProperty(name="Method", default="iseg")
    prior: bpy.props.StringProperty(name="Prior", default="")
    options: bpy.props.StringProperty(name="Options", default="", description="Method options as JSON")
    output: bpy.props.EnumProperty(name="Output", items=properties.OUTPUT_ITEMS, default="vertex_group")
    name: bpy.props.StringProperty(name="Name", default="Segment")
    threshold: bpy.props.FloatProperty(name="Threshold", default=-1.0, description="-1: the method's threshold")
    binary: bpy.props.BoolProperty(name="Binary Weights", default=True)

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _active(context) is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            opts = json.loads(self.options) if self.options.strip() else None
            done = actions.segment(
                _active(context),
                actions.parse_clicks(self.clicks),
                method=self.method,
                prior=self.prior or None,
                output=self.output,
                name=self.name,
                threshold=None if self.threshold < 0 else self.threshold,
                binary=self.binary,
                options=opts,
            )
        except _ERRORS as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"{done.segment}: {done.count} elements selected")
        return {"FINISHED"}


class SEGANY_OT_segment_apply(bpy.types.Operator):
    """Write the active segment into the chosen output (vertex group, attribute, material, ...)"""

    bl_idname = "segany.segment_apply"
    bl_label = "Apply Segment"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012 (Blender reads a set)

    index: bpy.props.IntProperty(name="Segment", default=-1, description="-1: the active segment")
    output: bpy.props.EnumProperty(name="Output", items=properties.OUTPUT_ITEMS, default="vertex_group")
    binary: bpy.props.BoolProperty(name="Binary Weights", default=True)

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        obj = _active(context)
        return obj is not None and len(obj.segany_segments) > 0

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        self.output = context.scene.segany.output
        self.binary = context.scene.segany.binary
        return self.execute(context)

    def execute(self, context: bpy.types.Context) -> set[str]:
        obj = _active(context)
        index = obj.segany_segment_index if self.index < 0 else self.index
        try:
            actions.apply_segment(obj, index, self.output, binary=self.binary)
        except _ERRORS as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


class SEGANY_OT_segment_remove(bpy.types.Operator):
    """Delete the segment and its stored scores (what it was applied to stays)"""

    bl_idname = "segany.segment_remove"
    bl_label = "Delete Segment"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012 (Blender reads a set)

    index: bpy.props.IntProperty(name="Segment", default=-1, description="-1: the active segment")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        obj = _active(context)
        return obj is not None and len(obj.segany_segments) > 0

    def execute(self, context: bpy.types.Context) -> set[str]:
        obj = _active(context)
        properties.remove_segment(obj, obj.segany_segment_index if self.index < 0 else self.index)
        return {"FINISHED"}


class SEGANY_OT_export_ply(bpy.types.Operator, ExportHelper):
    """Export the active segment's Gaussians as a standard 3DGS PLY"""

    bl_idname = "segany.export_ply"
    bl_label = "Export Segment as 3DGS PLY"
    filename_ext = ".ply"

    filter_glob: bpy.props.StringProperty(default="*.ply", options={"HIDDEN"})
    index: bpy.props.IntProperty(name="Segment", default=-1, description="-1: the active segment")
    whole: bpy.props.BoolProperty(name="Whole Object", default=False, description="Export every Gaussian")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _active(context) is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        obj = _active(context)
        try:
            mask = None
            if not self.whole:
                seg = obj.segany_segments[obj.segany_segment_index if self.index < 0 else self.index]
                mask = properties.segment_scores(obj, seg) >= seg.threshold
            n = results.export_splat_ply(obj, self.filepath, mask)
        except (*_ERRORS, IndexError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Wrote {n} Gaussians to {self.filepath}")
        return {"FINISHED"}


class SEGANY_OT_label(bpy.types.Operator):
    """Label the active object from words (open vocabulary); one float attribute per word"""

    bl_idname = "segany.label"
    bl_label = "Label From Words"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012 (Blender reads a set)

    words: bpy.props.StringProperty(name="Words", description="Comma-separated, e.g. chair, lamp")
    method: bpy.props.StringProperty(name="Method", default="sas")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _active(context) is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        words = [w.strip() for w in self.words.split(",") if w.strip()]
        try:
            actions.label(_active(context), words, method=self.method)
        except _ERRORS as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}


CLASSES = (
    SEGANY_OT_backend_start,
    SEGANY_OT_backend_restart,
    SEGANY_OT_backend_stop,
    SEGANY_OT_prepare,
    SEGANY_OT_cancel,
    SEGANY_OT_segment,
    SEGANY_OT_segment_apply,
    SEGANY_OT_segment_remove,
    SEGANY_OT_export_ply,
    SEGANY_OT_label,
)
