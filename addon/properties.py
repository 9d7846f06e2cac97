"""Data the add-on keeps in the .blend: the tool settings on the scene and the segments on each object.

A segment's scores live in a float attribute on the object (`segany_score_<n>`), so they are saved with
the file, follow undo, and can be re-applied in any output form later.
"""

from __future__ import annotations

import json

import bpy
import numpy as np

from . import results, runtime
from .scene_read import read_attribute

OUTPUT_ITEMS = [
    ("vertex_group", "Vertex Group", "Weights: 1 above the threshold, or the scores"),
    ("attribute", "Float Attribute", "The scores as a float attribute (meshes, splats, points)"),
    ("bool_attribute", "Boolean Attribute", "Selected or not, as a boolean attribute (geometry-nodes selection)"),
    ("selection", "Edit-Mode Selection", "Select the segment's vertices, edges and faces"),
    ("material", "Material Slot", "A new material in the segment's colour on its faces"),
    ("face_set", "Sculpt Face Set", "A new face set with the segment's faces"),
    ("object", "Separate Object", "A new object holding only the segment"),
]
FALLBACK_METHODS = ("iseg", "sa3d")  # offered before the backend has said what it has


def _method_search(_self: object, _context: bpy.types.Context, _edit_text: str) -> list[str]:
    rt = runtime.current_or_none()
    names = [m["name"] for m in rt.methods] if rt is not None and rt.methods else list(FALLBACK_METHODS)
    return names


def _prior_search(_self: object, _context: bpy.types.Context, _edit_text: str) -> list[str]:
    rt = runtime.current_or_none()
    return [p["name"] for p in rt.priors] if rt is not None and rt.priors else ["geometric", "sam"]


class SegAnySettings(bpy.types.PropertyGroup):
    method: bpy.props.StringProperty(name="Method", default="iseg", search=_method_search)
    prior: bpy.props.StringProperty(
        name="Prior", default="", description="2D prior (empty: the method's default)", search=_prior_search
    )
    options: bpy.props.StringProperty(
        name="Options", default="", description='Method options as JSON, e.g. {"views": 12} (empty: defaults)'
    )
    output: bpy.props.EnumProperty(name="Output", items=OUTPUT_ITEMS, default="vertex_group")
    output_name: bpy.props.StringProperty(name="Name", default="Segment")
    binary: bpy.props.BoolProperty(
        name="Binary Weights", default=True, description="Weights 1.0 above the threshold; off: the scores"
    )
    use_threshold: bpy.props.BoolProperty(name="Own Threshold", default=False)
    threshold: bpy.props.FloatProperty(name="Threshold", default=0.5, min=0.0, max=1.0)
    pick_radius: bpy.props.IntProperty(name="Pick Radius", default=12, min=1, max=200, subtype="PIXEL")


def option_dict(settings: SegAnySettings) -> dict:
    """The settings' options parsed from JSON (never evaluated); a clear error when not a JSON object.
    A module function, not a method: Blender 4.2 crashes at exit after unregistering a PropertyGroup
    class that has Python methods."""
    if not settings.options.strip():
        return {}
    value = json.loads(settings.options)
    if not isinstance(value, dict):
        raise ValueError(f'Options must be a JSON object like {{"views": 12}}, not {settings.options!r}')
    return value


class SegAnySegment(bpy.types.PropertyGroup):
    """One segment made on an object; `name` is shown and renamed in the list."""

    color: bpy.props.FloatVectorProperty(
        name="Colour", subtype="COLOR", size=4, min=0.0, max=1.0, default=(1, 0.3, 0.1, 1)
    )
    attribute: bpy.props.StringProperty(name="Scores Attribute")
    threshold: bpy.props.FloatProperty(name="Threshold", default=0.5, min=0.0, max=1.0)
    method: bpy.props.StringProperty(name="Method")
    clicks: bpy.props.StringProperty(name="Clicks", description="JSON list of [element, sign]")
    count: bpy.props.IntProperty(name="Selected Elements")


CLASSES = (SegAnySettings, SegAnySegment)


def register() -> None:
    bpy.types.Scene.segany = bpy.props.PointerProperty(type=SegAnySettings)
    bpy.types.Object.segany_segments = bpy.props.CollectionProperty(type=SegAnySegment)
    bpy.types.Object.segany_segment_index = bpy.props.IntProperty(name="Active Segment", default=0)


def unregister() -> None:
    del bpy.types.Object.segany_segment_index
    del bpy.types.Object.segany_segments
    del bpy.types.Scene.segany


def add_segment(
    obj: bpy.types.Object,
    name: str,
    scores: np.ndarray,
    threshold: float,
    color: tuple[float, ...],
    method: str = "",
    clicks: list | None = None,
) -> SegAnySegment:
    """Store a selection as a segment of obj: its scores attribute plus the list entry."""
    used = {s.attribute for s in obj.segany_segments}
    n = len(obj.segany_segments)
    while f"segany_score_{n}" in used or f"segany_score_{n}" in obj.data.attributes:
        n += 1
    attr = results.write_float_attribute(obj.data, f"segany_score_{n}", scores).name  # a vertex group may hold it
    seg = obj.segany_segments.add()
    seg.name, seg.attribute, seg.threshold, seg.color = name, attr, threshold, color
    seg.method = method
    seg.clicks = json.dumps(clicks or [])
    seg.count = int((scores >= threshold).sum())
    obj.segany_segment_index = len(obj.segany_segments) - 1
    return seg


def segment_scores(obj: bpy.types.Object, seg: SegAnySegment) -> np.ndarray:
    if seg.attribute not in obj.data.attributes:
        raise ValueError(f"the scores of segment {seg.name!r} are gone (attribute {seg.attribute!r} was removed)")
    return read_attribute(obj.data, seg.attribute)


def remove_segment(obj: bpy.types.Object, index: int) -> None:
    seg = obj.segany_segments[index]
    attr = obj.data.attributes.get(seg.attribute)
    if attr is not None:
        obj.data.attributes.remove(attr)
    obj.segany_segments.remove(index)
    obj.segany_segment_index = max(0, min(obj.segany_segment_index, len(obj.segany_segments) - 1))
