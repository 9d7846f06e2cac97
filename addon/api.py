"""SegAny's scripting API inside Blender (batch labelling, `blender -b --python script.py`).

    module = next(n for n in bpy.context.preferences.addons.keys() if n.endswith(".segany"))
    segany = importlib.import_module(module + ".api")   # bl_ext.<repository>.segany: the repository varies

    obj = bpy.data.objects["chair"]
    done = segany.segment(obj, clicks=[(120, +1), (877, -1)], method="iseg", output="vertex_group", name="seat")
    print(done.count, "vertices in", done.segment)

Every call blocks until the backend answers (the backend starts on first use, with the interpreter
set in the preferences). Prepared work is cached by the backend, so a second run on the same geometry
skips the training. Without a method, each object gets the first that fits its kind (iseg on meshes,
sa3d on splats and points). Errors are `ValueError` (bad input), `RemoteError` (the backend refused:
`.code` is stable, e.g. 'not_found' for a method this backend does not have) or `BackendUnavailable`;
`each` runs a batch on, collecting them per object:

    done, failed = segany.each(objects, lambda ob: segany.segment(ob, clicks=[(0, +1)], name="part"))
    for name, exc in failed.items():
        print(name, "failed:", exc)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import bpy

from . import actions, batch, labels, results, runtime
from . import everything as parts
from .actions import Segmented, parse_clicks
from .client import BackendUnavailable, RemoteError
from .everything import PartsDone
from .labels import LabelsDone
from .properties import OUTPUT_ITEMS, segment_scores

OUTPUTS = tuple(item[0] for item in OUTPUT_ITEMS)
PART_OUTPUTS = parts.OUTPUTS
ERRORS = (ValueError, KeyError, IndexError, OSError, RuntimeError, RemoteError, BackendUnavailable)
T = TypeVar("T")


def backend_info() -> dict[str, Any]:
    """Start or reuse the backend and return its info (version, device, methods, priors, cache)."""
    return runtime.current().backend.ensure().info()


def prepare(obj: bpy.types.Object, method: str | None = None, prior: str | None = None, options: dict | None = None,
            timeout: float | None = None) -> runtime.ObjectState:  # fmt: skip
    """Send obj and run the method's per-object preparation (or load it from the cache)."""
    return actions.prepare_blocking(obj, method, prior, options, timeout)


def segment(
    obj: bpy.types.Object,
    clicks: list[tuple[int, int]],
    method: str | None = None,
    prior: str | None = None,
    output: str = "vertex_group",
    name: str = "Segment",
    threshold: float | None = None,
    binary: bool = True,
    options: dict | None = None,
    timeout: float | None = None,
    prior_options: dict | None = None,
) -> Segmented:
    """Clicks [(vertex or point index, +1 add / -1 remove), ...] → a segment written as `output`
    (one of OUTPUTS). Returns scores, threshold, mask, count and what was made."""
    return actions.segment(obj, clicks, method, prior, output, name, threshold, binary, options, timeout, prior_options)


def label(obj: bpy.types.Object, words: list[str], method: str = "sas", prior: str | None = None,
          options: dict | None = None, timeout: float | None = None, other: bool = False,
          prior_options: dict | None = None, calibration: str | dict | None = None) -> LabelsDone:  # fmt: skip
    """Label obj from words (open vocabulary): the INT attribute `segany_label` (the word's index per element,
    -1 other) with the colour attribute `segany_label_colour`, and per word `label_<word>`: a vertex group of
    its vertices (meshes) or a float attribute of its relevancy (splats, points). `other`: elements that match
    no word better than "object" or "stuff" get -1. Needs CLIP weights (`segany models fetch clip_vit_b_16`)
    unless `prior` names another language source (`prior_options` its options, e.g. {"clip": {"model_name":
    "ViT-L-14"}}). `calibration`: a `segany calibrate` table (its file or its JSON) whose measured per-word IoUs
    replace the capability SAS estimates on the scene. Returns words, labels, relevancy (N, W) and colours."""
    return labels.label(obj, words, other, method, prior, options, timeout, prior_options, calibration)


def everything(
    obj: bpy.types.Object,
    scale: float | str = "auto",
    output: str = "part_attribute",
    name: str = "part",
    directory: str = "//parts",
    method: str | None = None,
    prior: str | None = None,
    options: dict | None = None,
    min_cluster_size: int | None = None,
    sample: int | None = None,
    timeout: float | None = None,
    prior_options: dict | None = None,
) -> PartsDone:
    """Split obj into parts at `scale` (a length in Blender units, or "auto") with a method that can (saga;
    None: the first that fits obj). `output` is one of PART_OUTPUTS: "part_attribute" (one INT attribute
    `segany_part`, -1 in no part, and a colour attribute with each part's colour), or per part "vertex_group",
    "attribute", "object" or "ply" (3DGS PLYs in `directory`, splats only). Returns labels, colours, the
    scale used and what was made per part."""
    return parts.segment_everything(
        obj, scale, output, name, directory, method, prior, options, min_cluster_size, sample, timeout, prior_options
    )


def apply(obj: bpy.types.Object, segment_index: int, output: str, name: str | None = None) -> Any:
    """Write an existing segment (from obj.segany_segments) in another output form."""
    return actions.apply_segment(obj, segment_index, output, name)


def export_ply(obj: bpy.types.Object, path: str, segment_index: int | None = None) -> int:
    """Write a splat object's Gaussians (all, or one segment's) as a standard 3DGS PLY in the object's LOCAL
    space (its transform is not applied); `//` paths are relative to the .blend file. Returns the count."""
    mask = None
    if segment_index is not None:
        seg = obj.segany_segments[segment_index]
        mask = segment_scores(obj, seg) >= seg.threshold
    return results.export_splat_ply(obj, bpy.path.abspath(path), mask)


def each(items: Iterable[Any], work: Callable[[Any], T]) -> tuple[dict[str, T], dict[str, Exception]]:
    """Run work(item) for every item (objects, files, ...); one that fails with a SegAny error (bad input,
    the backend refused, the backend died) is recorded under its name and the batch goes on. Returns
    ({name: result}, {name: error}); names are `item.name` (an object's, a Path's) or str(item)."""
    done: dict[str, T] = {}
    failed: dict[str, Exception] = {}
    for item in items:
        name = str(getattr(item, "name", item))
        try:
            done[name] = work(item)
        except ERRORS as exc:
            failed[name] = exc
    return done, failed


def run_spec(
    items: Iterable[Any], spec: dict | str, out_dir: str | None = None
) -> tuple[dict[str, Any], dict[str, Exception]]:
    """Run a `segany batch` job spec (its JSON object or file; docs/batch.md) on objects or scene files (OBJ,
    PLY, STL: imported into an emptied scene), one at a time: clicks → the segment `part`, label → a layer per
    word, everything → `segany_part`; with out_dir, a .blend per item. Failures per item, as `each`."""
    return each(items, batch.worker(spec, out_dir))


def stop_backend() -> None:
    runtime.current().backend.stop()


__all__ = [
    "ERRORS",
    "OUTPUTS",
    "PART_OUTPUTS",
    "BackendUnavailable",
    "LabelsDone",
    "PartsDone",
    "RemoteError",
    "Segmented",
    "apply",
    "backend_info",
    "each",
    "everything",
    "export_ply",
    "label",
    "parse_clicks",
    "prepare",
    "run_spec",
    "segment",
    "stop_backend",
]
