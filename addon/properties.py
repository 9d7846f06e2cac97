"""Data the add-on keeps in the .blend: the tool settings on the scene and the segments on each object.

A segment's scores live in a float attribute on the object (`segany_score_<n>`), so they are saved with
the file, follow undo, and can be re-applied in any output form later.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import bpy
import numpy as np

from . import results, runtime, splat_layout
from . import scale as slider
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
# Segment everything: each part as its own output, or all parts in one integer attribute with a colour per part.
PART_OUTPUTS = [
    ("part_attribute", "One Part Attribute", "An integer attribute segany_part (-1: unseen) and a colour per part"),
    ("vertex_group", "Vertex Group per Part", "One vertex group per part (meshes)"),
    ("attribute", "Float Attribute per Part", "One float attribute per part, 1 on its elements"),
    ("object", "Object per Part", "One new object per part, in the part's colour"),
    ("ply", "3DGS PLY per Part", "One standard 3DGS PLY file per part in the folder (splats)"),
]
# What the panel offers before the backend has said what it has (its info reply's `method_details`).
FALLBACK_METHODS = (
    {"name": "iseg", "scene_kinds": ["mesh"]},
    {"name": "sa3d", "scene_kinds": ["splats", "points"]},
)
KIND_WORDS = {"mesh": "meshes", "splats": "Gaussian splats", "points": "point clouds"}
# Blender 4.5+ warns about `//` paths unless the property says it takes them; 4.2 has no such option.
BLEND_RELATIVE = (
    {"PATH_SUPPORTS_BLEND_RELATIVE"}
    if "is_path_supports_blend_relative" in bpy.types.Property.bl_rna.properties
    else set()
)
_METHOD_ITEMS: list[tuple[str, str, str, int]] = []  # Blender reads dynamic enum strings after the callback returns


def scene_kind(obj: bpy.types.Object | None) -> str | None:
    """The kind of scene obj is sent as (mesh, splats, points) without reading its arrays; None when SegAny
    cannot use it. The same rules as `scene_read.read_object`."""
    if obj is None or obj.type not in ("MESH", "POINTCLOUD"):
        return None
    if obj.type == "MESH" and len(obj.data.polygons) > 0:
        return "mesh"
    names = {a.name for a in obj.data.attributes if a.domain == "POINT"}
    return "splats" if splat_layout.detect(names) is not None else "points"


def method_catalogue() -> list[dict[str, Any]]:
    """The methods the running backend reported (name, scene_kinds), or the built-in list before it has."""
    rt = runtime.current_or_none()
    return rt.methods if rt is not None and rt.methods else [dict(m) for m in FALLBACK_METHODS]


def methods_for(kind: str | None) -> list[str]:
    """Names of the methods that work on this scene kind; a method whose kinds are unknown fits every kind."""
    return [m["name"] for m in method_catalogue() if kind is None or kind in m.get("scene_kinds", [kind])]


def click_methods_for(kind: str | None) -> list[str]:
    """The methods of `methods_for` a click asks (not those that answer words, like sas); a backend that does
    not say takes clicks."""
    clicks = {m["name"]: bool(m.get("takes_clicks", True)) for m in method_catalogue()}
    return [n for n in methods_for(kind) if clicks.get(n, True)]


def needs_prepare(method: str) -> bool:
    """Whether the method needs its per-object work before a click; a backend that does not say needs it."""
    return next((bool(m.get("needs_prepare", True)) for m in method_catalogue() if m["name"] == method), True)


def takes_scale(method: str) -> bool:
    """Whether the method's query takes a part size (`scale`, e.g. saga): the panel shows the scale slider."""
    return any("scale" in m.get("query_keys", ()) for m in method_catalogue() if m["name"] == method)


def segments_everything(method: str) -> bool:
    """Whether the method splits a whole object into parts (the backend's `segments_everything`)."""
    return any(bool(m.get("segments_everything")) for m in method_catalogue() if m["name"] == method)


def resolve_method(chosen: str, kind: str | None) -> str:
    """The method to use on a scene of this kind: the chosen one where it fits, else the first that does
    ('' when none does)."""
    names = click_methods_for(kind)
    return chosen if chosen in names else (names[0] if names else "")


def _method_number(name: str) -> int:
    """A stable enum value per method name, so a choice survives the list changing between object kinds."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def _active_kind(context: bpy.types.Context | None) -> str | None:
    return scene_kind(getattr(context, "active_object", None)) if context is not None else None


def _method_items(_self: object, context: bpy.types.Context | None) -> list[tuple[str, str, str, int]]:
    kinds = {m["name"]: m.get("scene_kinds") for m in method_catalogue()}
    fits = click_methods_for(_active_kind(context))
    _METHOD_ITEMS[:] = [
        (n, n, "Works on " + ", ".join(KIND_WORDS.get(k, k) for k in kinds[n]) if kinds[n] else n, _method_number(n))
        for n in fits
    ]
    return _METHOD_ITEMS


def _method_get(self: bpy.types.PropertyGroup) -> int:
    """The enum shows the chosen method where it fits the active object, else the first method that does."""
    return _method_number(resolve_method(self.method_choice, _active_kind(bpy.context)))


def _method_set(self: bpy.types.PropertyGroup, value: int) -> None:
    names = [m["name"] for m in method_catalogue()]
    self.method_choice = next((n for n in names if _method_number(n) == value), "")


def _prior_search(_self: object, _context: bpy.types.Context, _edit_text: str) -> list[str]:
    rt = runtime.current_or_none()
    return [p["name"] for p in rt.priors] if rt is not None and rt.priors else ["geometric", "sam"]


class SegAnySettings(bpy.types.PropertyGroup):
    method: bpy.props.EnumProperty(
        name="Method",
        description="How the object is segmented; the list offers the methods that work on its kind",
        items=_method_items,
        get=_method_get,
        set=_method_set,
    )
    method_choice: bpy.props.StringProperty(
        name="Chosen Method", description="The method last picked (empty: the first that fits)", options={"HIDDEN"}
    )
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
    scale: bpy.props.FloatProperty(
        name="Scale",
        description="Size of the part a click selects, in scene units; dragging re-asks the backend with the "
        "current clicks. Kept within the sizes the object was trained on once the backend has said them",
        subtype="DISTANCE",
        unit="LENGTH",
        default=0.1,
        min=1e-6,  # a scale is > 0; the trained range clamps it further once known
        precision=3,
        update=slider.scale_changed,
    )
    scale_auto: bpy.props.BoolProperty(
        name="Auto Scale",
        default=True,
        description="Let the method choose the size at which the selection is most stable (the query's "
        '"scale": "auto"); off: use the Scale slider',
        update=slider.auto_changed,
    )
    parts_output: bpy.props.EnumProperty(name="Parts As", items=PART_OUTPUTS, default="part_attribute")
    parts_name: bpy.props.StringProperty(
        name="Parts Name", default="part", description="Prefix of each part's output: part_00, part_01, …"
    )
    parts_directory: bpy.props.StringProperty(
        name="Folder",
        default="//parts",
        subtype="DIR_PATH",
        description="Where 3DGS PLY parts are written (// is the folder of the .blend file)",
    )
    label_words: bpy.props.StringProperty(
        name="Words", default="", description='What to label the object with, separated by commas: "seat, leg, back"'
    )
    label_other: bpy.props.BoolProperty(
        name="Other", default=False, description="Leave what matches no word unlabelled (-1) instead of the nearest"
    )
    label_calibration: bpy.props.StringProperty(
        name="Calibration",
        default="",
        subtype="FILE_PATH",
        options=BLEND_RELATIVE,
        description="Optional: a capability table from `segany calibrate` (each source's IoU per word, measured on "
        "labelled scenes); its words take their capability from it instead of this scene's estimate",
    )


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
