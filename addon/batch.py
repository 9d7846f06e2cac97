"""The job spec `segany batch` reads (docs/batch.md), run on Blender objects or scene files one at a time, each
written back as vertex groups / attributes and, when asked, saved as a .blend: so one spec drives a batch of
PLYs on a process pool or Ray and a batch of .blend files in Blender.

The add-on cannot import the backend's reader (segany.batch.spec needs the backend's options parser, numpy and
the package's scene types, none of which ship in the extension), so this is a second reader of the one schema;
blender_tests/test_addon_batch.py checks that both accept and refuse the same specs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import bpy

from . import actions, labels
from . import everything as parts

TASKS = ("clicks", "everything", "label")
MAX_CLICKS = 64  # the backend's queries.MAX_CLICKS
MAX_WORDS = 64  # the backend's batch.spec.MAX_WORDS
MAX_RETRIES = 10
MAX_TEXT = 4096  # the backend's options.MAX_TEXT: a name or word longer is a mistake
DEFAULTS: dict[str, Any] = {"task": "clicks", "method": None, "prior": None, "clicks": [], "scale": None, "words": [],
                            "allow_references": False, "retries": 2, "options": {}, "prior_options": {}}  # fmt: skip
IMPORTERS = {".obj": "obj_import", ".ply": "ply_import", ".stl": "stl_import"}  # bpy.ops.wm.<importer>


def read_spec(given: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """A job spec (its JSON object, or the path of its file) with every field checked and defaults filled in;
    ValueError naming the field otherwise. `allow_references` and `retries` are the pool's and Ray's: read
    and checked here, used there."""
    if isinstance(given, (str, Path)):
        try:
            given = json.loads(Path(given).read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"the batch spec {given} is not JSON: {exc}") from exc
    if not isinstance(given, Mapping):
        raise ValueError(f"a batch spec must be a JSON object, got {type(given).__name__}")
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"batch spec: unknown fields {unknown}; known: {sorted(DEFAULTS)}")
    spec = {**DEFAULTS, **given}
    for key in ("options", "prior_options"):
        spec[key] = spec[key] or {}  # null or empty: none, as the backend's reader takes it
        if not isinstance(spec[key], Mapping):
            raise ValueError(f"batch spec '{key}' must be a JSON object, got {spec[key]!r}")
    if spec["task"] not in TASKS:
        raise ValueError(f"batch spec 'task' must be one of {list(TASKS)}, got {spec['task']!r}")
    for key in ("method", "prior"):
        if spec[key] is not None and not _text(spec[key]):
            raise ValueError(f"batch spec '{key}' must be a name of at most {MAX_TEXT} characters, got {spec[key]!r}")
    if type(spec["allow_references"]) is not bool:
        raise ValueError(f"batch spec 'allow_references' must be true or false, got {spec['allow_references']!r}")
    if type(spec["retries"]) is not int or not 0 <= spec["retries"] <= MAX_RETRIES:
        raise ValueError(f"batch spec 'retries' must be a whole number in 0..{MAX_RETRIES}, got {spec['retries']!r}")
    spec["clicks"] = _clicks(spec["clicks"])
    spec["words"] = _words(spec["words"])
    scale = spec["scale"]
    number = isinstance(scale, (int, float)) and not isinstance(scale, bool) and math.isfinite(scale)
    if scale is not None and not (_text(scale) or (number and scale >= 0)):
        raise ValueError(f"batch spec 'scale' must be a number >= 0 or \"auto\", got {scale!r}")
    if spec["task"] == "clicks" and not spec["clicks"]:
        raise ValueError("batch spec: task 'clicks' needs clicks, e.g. [[120, 1], [45, -1]]")
    if spec["task"] == "everything" and not (scale == "auto" or (number and scale > 0)):
        raise ValueError(
            f"batch spec: task 'everything' needs a scale above 0 in scene units or \"auto\", got {scale!r}"
        )
    if spec["task"] == "label" and not [w for w in spec["words"] if w.strip()]:
        raise ValueError('batch spec: task \'label\' needs words, e.g. ["chair leg", "seat"]')
    return spec


def _clicks(given: Any) -> list[tuple[int, int]]:
    """[[element, ±1], ...], at most MAX_CLICKS."""
    if not isinstance(given, (list, tuple)) or len(given) > MAX_CLICKS:  # tuples: a Python caller's (parse_clicks)
        raise ValueError(f"batch spec 'clicks' must be a list of at most {MAX_CLICKS} [element, sign] pairs")
    out = []
    for i, c in enumerate(given):
        ints = isinstance(c, (list, tuple)) and all(type(v) is int for v in c)
        if not ints or len(c) != 2 or c[0] < 0 or c[1] not in (1, -1):
            raise ValueError(f"batch spec: click {i} must be [element >= 0, +1 or -1], got {c!r}")
        out.append((c[0], c[1]))
    return out


def _text(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= MAX_TEXT


def _words(given: Any) -> list[str]:
    if not isinstance(given, (list, tuple)) or len(given) > MAX_WORDS or not all(_text(w) for w in given):
        raise ValueError(f"batch spec 'words' must be a list of at most {MAX_WORDS} strings, got {given!r}")
    return list(given)


def run_one(obj: bpy.types.Object, spec: dict[str, Any]) -> Any:
    """One object through the spec's task: clicks → the segment `part` (a vertex group on a mesh, a float
    attribute on splats and points); label → `segany_label` and a layer per word; everything → the INT
    attribute `segany_part` and its colours. Returns what the add-on's segment / label / everything return."""
    method, prior, popts = spec["method"], spec["prior"], spec["prior_options"] or None
    options = spec["options"] or None
    if spec["task"] == "clicks":
        output = "vertex_group" if obj.type == "MESH" and len(obj.data.polygons) else "attribute"
        return actions.segment(obj, spec["clicks"], method, prior, output, "part", options=options,
                               prior_options=popts)  # fmt: skip
    if spec["task"] == "label":
        return labels.label(obj, spec["words"], False, method or "sas", prior, options, None, popts)
    return parts.segment_everything(obj, spec["scale"], "part_attribute", method=method, prior=prior, options=options,
                                    prior_options=popts)  # fmt: skip


def import_file(path: Path) -> bpy.types.Object:
    """Empty the scene and import one scene file (OBJ, PLY or STL, Blender's importers); the mesh it made."""
    importer = IMPORTERS.get(path.suffix.lower())
    if importer is None:
        raise ValueError(f"{path.name}: this batch imports {sorted(IMPORTERS)}; import other files yourself and "
                         "pass their objects")  # fmt: skip
    if not path.is_file():
        raise OSError(f"no scene file {path}")
    for ob in list(bpy.data.objects):
        bpy.data.objects.remove(ob)
    getattr(bpy.ops.wm, importer)(filepath=str(path))
    obj = next((o for o in bpy.context.selected_objects if o.type == "MESH"), None)
    if obj is None:
        raise ValueError(f"{path.name} holds no mesh")
    return obj


def worker(spec: Mapping[str, Any] | str | Path, out_dir: str | Path | None = None) -> Callable[[Any], Any]:
    """The per-item work of a batch (for `api.each`): an item is a Blender object, or a scene file imported into
    an emptied scene; with out_dir, its scene is then saved as out_dir/<name>.blend (a copy: the open file keeps
    its path). The spec is checked here, so a bad one fails before any item."""
    checked = read_spec(spec)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    def work(item: bpy.types.Object | str | Path) -> Any:
        obj = item if isinstance(item, bpy.types.Object) else import_file(Path(item))
        done = run_one(obj, checked)
        if out is not None:
            stem = obj.name if isinstance(item, bpy.types.Object) else Path(item).stem
            bpy.ops.wm.save_as_mainfile(filepath=str(out / f"{stem}.blend"), copy=True)
        return done

    return work
