"""Segment everything in Blender: a prepared object split into parts at one scale, each part written as the
artist chose (a vertex group, a float attribute, an object or a 3DGS PLY each), or all parts in one integer
attribute `segany_part` with a colour attribute holding each part's colour.

Plain functions, as in actions.py: the operator, the scripting API and the tests call them. The backend does
the clustering (its `everything` op); everything here only asks and writes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import bpy
import numpy as np

from . import actions, properties, results, runtime, scene_read, splat_layout
from . import scale as slider
from .client import Parts
from .pending import Pending

PART_ATTRIBUTE = "segany_part"  # the part number per element; -1 where the method knows nothing (no view saw it)
PART_COLOUR = "segany_part_colour"
UNSEEN_COLOUR = (0.5, 0.5, 0.5, 1.0)  # grey: an element in no part
OUTPUTS = tuple(item[0] for item in properties.PART_OUTPUTS)


@dataclass
class PartsDone:
    """What segment everything made: the parts, the scale they were cut at and what was written."""

    labels: np.ndarray  # (N,) int32, part number per element, -1 in no part
    colours: np.ndarray  # (K, 3) float32 in [0, 1]
    scale: float  # Blender units
    output: str
    made: list[Any]  # per part what was written; for "part_attribute" the two attributes

    @property
    def count(self) -> int:
        return len(self.colours)


def output_problem(obj: bpy.types.Object, output: str) -> str:
    """Why obj cannot hold the parts as `output` ('' when it can): checked before anything is written."""
    if output not in OUTPUTS:
        return f"unknown parts output {output!r}; expected one of {OUTPUTS}"
    if output == "vertex_group" and obj.type != "MESH":
        return f"{obj.name!r} is a {obj.type.lower()}: vertex groups exist only on meshes; use 'attribute'"
    if output == "ply" and properties.scene_kind(obj) != "splats":
        return f"{obj.name!r} holds no Gaussian splats, so its parts cannot be 3DGS PLYs; use 'object'"
    return ""


def capable_methods() -> list[str]:
    return [m["name"] for m in properties.method_catalogue() if m.get("segments_everything")]


def method_for(obj: bpy.types.Object, chosen: str = "") -> str:
    """The method to split obj with: the chosen one where it fits and can, else the first that can."""
    kind = properties.scene_kind(obj)
    fits = [name for name in properties.methods_for(kind) if name in capable_methods()]
    if not fits:
        kind_words = properties.KIND_WORDS.get(kind, kind)
        raise ValueError(
            f"no method of this backend splits {kind_words} into parts (those that can: {capable_methods()})"
        )
    return chosen if chosen in fits else fits[0]


def everything_problem(obj: bpy.types.Object | None, chosen: str = "") -> str:
    """Why the Segment Everything button cannot run on obj ('' when it can): what its greyed-out button says."""
    problem = actions.object_problem(obj)
    if problem:
        return problem
    method = properties.resolve_method(chosen, properties.scene_kind(obj))
    if not properties.segments_everything(method):
        able = " or ".join(capable_methods()) or "a method that can (saga)"
        return f"{method or 'No method'} cannot split an object into parts: choose {able}"
    rt = runtime.current_or_none()
    st = rt.objects.get(actions.object_key(obj)) if rt is not None else None
    if st is None or st.status != "prepared" or st.method != method:
        return f"Press Prepare first: {method} splits the object from its prepared features"
    return st.geometry_problem(scene_read.element_count(obj))


def query(obj: bpy.types.Object, scale: float | str, min_cluster_size: int | None, sample: int | None) -> dict:
    """The backend's everything query: the scale in obj's local units (or "auto"), the clustering's bounds."""
    if isinstance(scale, str):
        if scale != "auto":
            raise ValueError(f'scale must be a length > 0 in Blender units or "auto", not {scale!r}')
        out: dict[str, Any] = {"scale": "auto"}
    else:
        if not (float(scale) > 0 and np.isfinite(scale)):
            raise ValueError(f'scale must be a length > 0 in Blender units or "auto", not {scale!r}')
        out = {"scale": float(scale) / slider.world_per_local(obj)}
    if min_cluster_size is not None:
        out["min_cluster_size"] = int(min_cluster_size)
    if sample is not None:
        out["sample"] = int(sample)
    return out


def part_names(name: str, k: int) -> list[str]:
    """name_00, name_01 … (wider when there are more than 100 parts), in the order of the part numbers."""
    width = max(2, len(str(k - 1)))
    return [f"{name}_{i:0{width}d}" for i in range(k)]


def write_parts(
    obj: bpy.types.Object,
    labels: np.ndarray,
    colours: np.ndarray,
    output: str,
    name: str = "part",
    directory: str = "",
) -> list[Any]:
    """Write the parts into obj (or beside it) as `output`; returns what was made, per part."""
    problem = output_problem(obj, output)
    if problem:
        raise ValueError(problem)
    labels = np.asarray(labels, np.int32)
    n = scene_read.element_count(obj)
    if len(labels) != n:
        raise ValueError(f"{len(labels):,} part labels for {n:,} elements of {obj.name!r}: press Prepare again")
    if output == "part_attribute":
        return [
            results.write_int_attribute(obj.data, PART_ATTRIBUTE, labels),
            results.write_label_colours(obj.data, PART_COLOUR, labels, colours, UNSEEN_COLOUR),
        ]
    names = part_names(name, len(colours))
    if output == "ply":
        folder = bpy.path.abspath(directory or "//")
        os.makedirs(folder, exist_ok=True)
        arrays = scene_read.read_object(obj).arrays  # read once for every part
        paths = [os.path.join(folder, f"{part}.ply") for part in names]
        for k, path in enumerate(paths):
            splat_layout.write_ply(path, arrays, labels == k)
        return paths
    made: list[Any] = []
    for k, part in enumerate(names):
        mask = labels == k
        if output == "vertex_group":
            made.append(results.write_vertex_group(obj, part, mask.astype(np.float32), 0.5))
        elif output == "attribute":
            made.append(results.write_float_attribute(obj.data, part, mask.astype(np.float32)))
        else:
            new = results.separate(obj, mask, f"{obj.name}_{part}")
            new.color = (*colours[k].tolist(), 1.0)  # Solid mode's Object colour tells the parts apart
            made.append(new)
    return made


def finish(obj: bpy.types.Object, parts: Parts, output: str, name: str, directory: str) -> PartsDone:
    """Write an answer from the backend; remember the trained range it reports for the slider."""
    slider.remember(actions.object_key(obj), parts.extras)
    used = parts.extras.get("scales")
    scale = float(used[-1]) * slider.world_per_local(obj) if used is not None and len(used) else float("nan")
    made = write_parts(obj, parts.labels, parts.colours, output, name, directory)
    return PartsDone(np.asarray(parts.labels, np.int32), np.asarray(parts.colours, np.float32), scale, output, made)


def request(
    obj: bpy.types.Object, scale: float | str, min_cluster_size: int | None = None, sample: int | None = None
) -> Callable[[], Parts]:
    """The call that asks for the parts of an object already prepared (the UI's Prepare), with the method and
    prior it was prepared with; checked now, run where the caller likes (blocking, or on the bridge)."""
    rt = runtime.current()
    st = rt.state(actions.object_key(obj))
    problem = everything_problem(obj, st.method) if st.method else f"Press Prepare first: {obj.name!r} is not prepared"
    if problem:
        raise ValueError(problem)
    asked = query(obj, scale, min_cluster_size, sample)
    return lambda: rt.backend.ensure().everything(st.method, st.scene_id, asked, prior=st.prior or None)


def segment_everything(
    obj: bpy.types.Object,
    scale: float | str = "auto",
    output: str = "part_attribute",
    name: str = "part",
    directory: str = "//parts",
    method: str | None = None,
    prior: str | None = None,
    options: dict[str, Any] | None = None,
    min_cluster_size: int | None = None,
    sample: int | None = None,
    timeout: float | None = None,
    prior_options: dict[str, Any] | None = None,
) -> PartsDone:
    """Blocking, for scripts: prepare obj (or load it from the cache), split it into parts at `scale` (Blender
    units, or "auto": the method's typical part size) and write them as `output`."""
    problem = output_problem(obj, output)
    if problem:  # before any backend work
        raise ValueError(problem)
    asked = query(obj, scale, min_cluster_size, sample)
    if not runtime.current().methods:
        runtime.current().load_catalogue()  # which methods can is the backend's to say, before any prepare
    method = method or method_for(obj)
    if method not in capable_methods():
        raise ValueError(f"{method} cannot split an object into parts; methods that can: {capable_methods()}")
    st = actions.prepare_blocking(obj, method, prior, options, timeout, prior_options)
    parts = runtime.current().backend.ensure().everything(method, st.scene_id, asked, prior=prior)
    return finish(obj, parts, output, name, directory)


def start(obj: bpy.types.Object, scale: float | str) -> Pending:
    """Ask for the parts without blocking Blender: they land in the returned Pending's answer at a later drain."""
    work = request(obj, scale)
    pending = Pending()
    runtime.current().bridge.run(work, pending.answered, pending.failed)
    return pending
