"""Thin operators over actions / runtime. Everything that changes Blender data is undoable."""

from __future__ import annotations

import json

import bpy
from bpy_extras.io_utils import ExportHelper

from . import actions, everything, labels, preferences, properties, results, runtime
from .client import BackendUnavailable, RemoteError
from .pending import Pending
from .properties import BLEND_RELATIVE

_ERRORS = (ValueError, RuntimeError, RemoteError, BackendUnavailable, json.JSONDecodeError)
WATCH_INTERVAL = 0.25  # seconds between looks at a background prepare; its end is reported within this


def _active(context: bpy.types.Context) -> bpy.types.Object | None:
    obj = context.active_object
    return obj if obj is not None and obj.type in ("MESH", "POINTCLOUD") else None


def _allowed(cls: type[bpy.types.Operator], problem: str) -> bool:
    """A poll's answer; a refusal carries its reason, which Blender shows on the greyed-out button."""
    if problem:
        cls.poll_message_set(problem)
    return not problem


def segments_problem(obj: bpy.types.Object | None) -> str:
    """Why an operator on the active segment cannot run ('' when it can)."""
    problem = actions.object_problem(obj)
    if not problem and len(obj.segany_segments) == 0:
        problem = "The object has no segments yet: make one with the Click Tool"
    return problem


class _Watching:
    """An operator that watches background work with a timer while Blender stays live (prepare, everything,
    label): `_watch` starts the timer and the modal handler, `cancel` (Blender calls it too) stops the timer."""

    def _watch(self, context: bpy.types.Context) -> set[str]:
        wm = context.window_manager
        self.timer = wm.event_timer_add(WATCH_INTERVAL, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def cancel(self, context: bpy.types.Context) -> None:
        context.window_manager.event_timer_remove(self.timer)


class _AwaitsAnswer(_Watching):
    """A button whose answer arrives in the background (a Pending): the operator's `_write(obj, answer)` runs,
    one undo step, when it does; an error, or the object gone meanwhile, is reported instead."""

    def _await(self, context: bpy.types.Context, obj: bpy.types.Object, pending: Pending) -> set[str]:
        self.pending, self.obj_name = pending, obj.name
        return self._watch(context)

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        self.pending.step()
        if not self.pending.done:
            return {"PASS_THROUGH"}
        self.cancel(context)
        obj = bpy.data.objects.get(self.obj_name)
        if self.pending.error is not None or obj is None:
            self.report({"ERROR"}, runtime.error_text(self.pending.error or ValueError(f"{self.obj_name!r} is gone")))
            return {"CANCELLED"}
        return self._write(obj, self.pending.answer)


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


class SEGANY_OT_open_preferences(bpy.types.Operator):
    """Open SegAny's preferences (Edit > Preferences > Add-ons > SegAny): the backend interpreter, device, cache"""

    bl_idname = "segany.open_preferences"
    bl_label = "Open Preferences"

    def execute(self, context: bpy.types.Context) -> set[str]:
        bpy.ops.preferences.addon_show(module=preferences.PACKAGE)
        return {"FINISHED"}


class SEGANY_OT_backend_stop(bpy.types.Operator):
    """Stop the backend process"""

    bl_idname = "segany.backend_stop"
    bl_label = "Stop Backend"

    def execute(self, context: bpy.types.Context) -> set[str]:
        rt = runtime.current()
        rt.bridge.run(rt.backend.stop, lambda _none: rt.changed())  # off the main thread: it may wait seconds
        return {"FINISHED"}


class SEGANY_OT_prepare(_Watching, bpy.types.Operator):
    """Send the active object to the backend and prepare the method on it (training runs in the background)"""

    bl_idname = "segany.prepare"
    bl_label = "Prepare"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _allowed(cls, actions.prepare_problem(context.active_object))

    def execute(self, context: bpy.types.Context) -> set[str]:
        obj = _active(context)
        try:
            actions.start_prepare(obj, context.scene.segany)
        except _ERRORS as exc:
            self.report({"ERROR"}, runtime.error_text(exc))
            return {"CANCELLED"}
        self.key, self.obj_name = actions.object_key(obj), obj.name
        return {"FINISHED"}

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        """From the panel: start, then watch the background job so its end (an error above all) is reported."""
        started = self.execute(context)
        if started != {"FINISHED"} or context.window is None:
            return started
        return self._watch(context)

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if event.type != "TIMER":
            return {"PASS_THROUGH"}  # the user keeps working while it prepares
        outcome = actions.prepare_report(self.obj_name, runtime.current().state(self.key))
        if outcome is None:
            return {"PASS_THROUGH"}
        self.cancel(context)
        level, text = outcome
        self.report({level}, text)
        return {"FINISHED"} if level == "INFO" else {"CANCELLED"}


class SEGANY_OT_cancel(bpy.types.Operator):
    """Cancel the running prepare job of the active object"""

    bl_idname = "segany.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        obj = _active(context)
        rt = runtime.current_or_none()
        st = rt.objects.get(actions.object_key(obj)) if obj is not None and rt is not None else None
        running = st is not None and st.status in actions.PREPARE_RUNNING
        return _allowed(cls, "" if running else "Nothing is preparing on the active object")

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
    method: bpy.props.StringProperty(
        name="Method", default="", description="Empty: the first that fits the object (iseg on meshes, sa3d on splats)"
    )
    prior: bpy.props.StringProperty(name="Prior", default="")
    options: bpy.props.StringProperty(name="Options", default="", description="Method options as JSON")
    output: bpy.props.EnumProperty(name="Output", items=properties.OUTPUT_ITEMS, default="vertex_group")
    name: bpy.props.StringProperty(name="Name", default="Segment")
    threshold: bpy.props.FloatProperty(name="Threshold", default=-1.0, description="-1: the method's threshold")
    binary: bpy.props.BoolProperty(name="Binary Weights", default=True)

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _allowed(cls, actions.object_problem(context.active_object))

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            opts = json.loads(self.options) if self.options.strip() else None
            done = actions.segment(
                _active(context),
                actions.parse_clicks(self.clicks),
                method=self.method or None,
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
        return _allowed(cls, segments_problem(context.active_object))

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
        return _allowed(cls, segments_problem(context.active_object))

    def execute(self, context: bpy.types.Context) -> set[str]:
        obj = _active(context)
        properties.remove_segment(obj, obj.segany_segment_index if self.index < 0 else self.index)
        return {"FINISHED"}


class SEGANY_OT_export_ply(bpy.types.Operator, ExportHelper):
    """Export the active segment's Gaussians as a standard 3DGS PLY, in the object's local space (its transform
    is not applied, as when the PLY was imported); a path starting with // is relative to the .blend file"""

    bl_idname = "segany.export_ply"
    bl_label = "Export Segment as 3DGS PLY"
    filename_ext = ".ply"

    filepath: bpy.props.StringProperty(
        name="File Path",
        description="Where the PLY goes; // is the folder of the .blend file",
        maxlen=1024,
        subtype="FILE_PATH",
        options=BLEND_RELATIVE,
    )
    filter_glob: bpy.props.StringProperty(default="*.ply", options={"HIDDEN"})
    index: bpy.props.IntProperty(name="Segment", default=-1, description="-1: the active segment")
    whole: bpy.props.BoolProperty(name="Whole Object", default=False, description="Export every Gaussian")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        obj = context.active_object
        problem = actions.object_problem(obj)
        if not problem and properties.scene_kind(obj) != "splats":
            problem = f"{obj.name!r} holds no Gaussian splats (no f_dc_* or radiance:base attributes)"
        return _allowed(cls, problem)

    def execute(self, context: bpy.types.Context) -> set[str]:
        obj = _active(context)
        path = bpy.path.abspath(self.filepath)
        try:
            mask = None
            if not self.whole:
                seg = obj.segany_segments[obj.segany_segment_index if self.index < 0 else self.index]
                mask = properties.segment_scores(obj, seg) >= seg.threshold
            n = results.export_splat_ply(obj, path, mask)
        except (*_ERRORS, IndexError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Wrote {n} Gaussians to {path} in the local space of {obj.name!r}")
        return {"FINISHED"}


class SEGANY_OT_everything(_AwaitsAnswer, bpy.types.Operator):
    """Split the active object into parts at the Scale (or Auto) from its prepared features, and write each
    part as chosen: a vertex group, attribute, object or 3DGS PLY each, or one part attribute with colours"""

    bl_idname = "segany.everything"
    bl_label = "Segment Everything"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012 (Blender reads a set)

    output: bpy.props.EnumProperty(name="Parts As", items=properties.PART_OUTPUTS, default="part_attribute")
    name: bpy.props.StringProperty(name="Name", default="part", description="Prefix of each part's output")
    directory: bpy.props.StringProperty(
        name="Folder", default="//parts", subtype="DIR_PATH", options=BLEND_RELATIVE, description="For 3DGS PLYs"
    )
    scale: bpy.props.FloatProperty(
        name="Scale", default=0.0, min=0.0, subtype="DISTANCE", unit="LENGTH",
        description="Size of the parts; 0: the panel's Scale, or Auto when it is on",
    )  # fmt: skip

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        settings = getattr(context.scene, "segany", None)
        chosen = settings.method_choice if settings is not None else ""
        return _allowed(cls, everything.everything_problem(context.active_object, chosen))

    def _scale(self, context: bpy.types.Context) -> float | str:
        settings = context.scene.segany
        if self.scale > 0:
            return self.scale
        return "auto" if settings.scale_auto else settings.scale

    def _write(self, obj: bpy.types.Object, parts: everything.Parts) -> set[str]:
        try:
            done = everything.finish(obj, parts, self.output, self.name, self.directory)
        except (*_ERRORS, OSError) as exc:
            self.report({"ERROR"}, runtime.error_text(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"{obj.name}: {done.count} parts written as {self.output}")
        return {"FINISHED"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        """Blocking (scripts, the redo panel): ask and write."""
        obj = _active(context)
        try:
            problem = everything.output_problem(obj, self.output)
            if problem:
                raise ValueError(problem)
            parts = everything.request(obj, self._scale(context))()
        except _ERRORS as exc:
            self.report({"ERROR"}, runtime.error_text(exc))
            return {"CANCELLED"}
        return self._write(obj, parts)

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        """From the panel: the panel's choices; the clustering runs in the background while Blender stays live,
        and its parts are written (one undo step) when they arrive."""
        settings = context.scene.segany
        self.output, self.name, self.directory = settings.parts_output, settings.parts_name, settings.parts_directory
        if context.window is None:
            return self.execute(context)
        obj = _active(context)
        try:
            problem = everything.output_problem(obj, self.output)
            if problem:
                raise ValueError(problem)
            pending = everything.start(obj, self._scale(context))
        except _ERRORS as exc:
            self.report({"ERROR"}, runtime.error_text(exc))
            return {"CANCELLED"}
        return self._await(context, obj, pending)


class SEGANY_OT_label(_AwaitsAnswer, bpy.types.Operator):
    """Label the active object from words (open vocabulary, SAS): an integer attribute with a colour per word,
    and per word a vertex group (meshes) or a float attribute (splats, points)"""

    bl_idname = "segany.label"
    bl_label = "Label From Words"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012 (Blender reads a set)

    words: bpy.props.StringProperty(name="Words", description='Separated by commas, e.g. "seat, leg, back"')
    other: bpy.props.BoolProperty(name="Other", description="Leave what matches no word unlabelled (-1)")
    calibration: bpy.props.StringProperty(
        name="Calibration",
        subtype="FILE_PATH",
        options=BLEND_RELATIVE,
        description="A capability table from `segany calibrate` (optional)",
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _allowed(cls, labels.label_problem(context.active_object))

    def _write(self, obj: bpy.types.Object, sel: labels.Selection) -> set[str]:
        try:
            done = labels.write_labels(obj, labels.split_words(self.words), sel)
        except _ERRORS as exc:
            self.report({"ERROR"}, runtime.error_text(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"{obj.name}: {done.summary()}")
        return {"FINISHED"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        """Blocking (scripts, the redo panel): ask an object prepared for labels, else prepare first; write."""
        obj = _active(context)
        try:
            words = labels.split_words(self.words)
            if labels.prepared_for_labels(obj) is not None:
                done = labels.relabel(obj, words, self.other, self.calibration)
            else:
                prior, options = labels.chosen(context.scene.segany)
                done = labels.label(obj, words, self.other, prior=prior, options=options, calibration=self.calibration)
        except _ERRORS as exc:
            self.report({"ERROR"}, runtime.error_text(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"{obj.name}: {done.summary()}")
        return {"FINISHED"}

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        """From the panel: its words; the prepare (when needed) and the query run in the background while
        Blender stays live, and the labels are written (one undo step) when they arrive."""
        settings = context.scene.segany
        self.words, self.other = settings.label_words, settings.label_other
        self.calibration = settings.label_calibration
        if context.window is None:
            return self.execute(context)
        obj = _active(context)
        try:
            prior, options = labels.chosen(settings)
            words = labels.split_words(self.words)
            pending = labels.start(obj, words, self.other, prior, options, self.calibration)
        except _ERRORS as exc:
            self.report({"ERROR"}, runtime.error_text(exc))
            return {"CANCELLED"}
        return self._await(context, obj, pending)


CLASSES = (
    SEGANY_OT_backend_start,
    SEGANY_OT_backend_restart,
    SEGANY_OT_open_preferences,
    SEGANY_OT_backend_stop,
    SEGANY_OT_prepare,
    SEGANY_OT_cancel,
    SEGANY_OT_segment,
    SEGANY_OT_segment_apply,
    SEGANY_OT_segment_remove,
    SEGANY_OT_export_ply,
    SEGANY_OT_everything,
    SEGANY_OT_label,
)
