"""Batch-label meshes with SegAny from the command line (the README's sample):

    blender -b --python sample_batch.py -- OUT_DIR MESH.obj [MESH.obj ...] [--click 120 --click -45]
    blender -b --python sample_batch.py -- OUT_DIR MESH.obj [MESH.obj ...] --spec job.json

For each OBJ: import it, segment it from the clicks with iSeg (the backend starts on first use; its
prepared work is cached, so a mesh seen before is not trained again), keep the segment as the vertex
group "part", and save OUT_DIR/<name>.blend. With --spec, the job spec `segany batch --spec` reads
(docs/batch.md) says what to do instead: its task (clicks: the vertex group "part"; label: a float
attribute per word; everything: the int attribute `segany_part` and its colours), method, prior, clicks,
words, scale and options. A file that fails is reported and the others go on; the exit status is 1 when
any failed. The SegAny extension must be installed; SEGANY_PYTHON (the backend's interpreter),
SEGANY_CACHE_DIR and SEGANY_OPTIONS (iSeg options as JSON, without --spec) override the preferences.
"""

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

import addon_utils
import bpy

PKG = "bl_ext.user_default.segany"

args = argparse.ArgumentParser(prog="sample_batch.py")
args.add_argument("out_dir", type=Path)
args.add_argument("meshes", nargs="+", type=Path)
args.add_argument("--click", action="append", default=None, help="vertex index, '-' in front removes")
args.add_argument("--spec", type=Path, default=None, help="a `segany batch` job spec (docs/batch.md)")
opts = args.parse_args(sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else [])

addon_utils.enable(PKG, default_set=True)
prefs = bpy.context.preferences.addons[PKG].preferences
prefs.python_path = os.environ.get("SEGANY_PYTHON", prefs.python_path)
prefs.cache_dir = os.environ.get("SEGANY_CACHE_DIR", prefs.cache_dir)
segany = importlib.import_module(PKG + ".api")  # or: import bl_ext.user_default.segany.api as segany
SPEC_KEYS = {"task", "method", "prior", "clicks", "scale", "words", "options", "prior_options", "allow_references",
             "retries"}  # fmt: skip
if opts.spec is not None:  # the file `segany batch --spec` reads; the backend checks each value as it answers
    spec = json.loads(opts.spec.read_text())
    if set(spec) - SPEC_KEYS or spec.get("prior_options"):
        sys.exit(f"{opts.spec}: this script takes {sorted(SPEC_KEYS - {'prior_options'})}, got {sorted(spec)}")
else:
    clicks = segany.parse_clicks(" ".join(opts.click or ["0"]))
    spec = {
        "task": "clicks",
        "method": "iseg",
        "clicks": clicks,
        "options": json.loads(os.environ.get("SEGANY_OPTIONS", "{}")),
    }
options = spec.get("options") or None


def label_file(path: Path) -> int:
    """Import one OBJ into an empty scene, segment it, save it; returns the selected vertex count."""
    for ob in list(bpy.data.objects):
        bpy.data.objects.remove(ob)
    bpy.ops.wm.obj_import(filepath=str(path))
    obj = next((o for o in bpy.context.selected_objects if o.type == "MESH"), None)
    if obj is None:
        raise ValueError(f"{path} holds no mesh")
    task, method, prior = spec.get("task", "clicks"), spec.get("method"), spec.get("prior")
    if task == "clicks":
        clicks = [tuple(c) for c in spec["clicks"]]
        done = segany.segment(obj, clicks, method, prior, output="vertex_group", name="part", options=options)
        said, count = f"{done.count}/{len(obj.data.vertices)} vertices in 'part' ({done.prepared})", done.count
    elif task == "label":
        words = segany.label(obj, spec["words"], method or "sas", prior, options)
        said, count = f"labelled {sorted(words)}", len(words)
    elif task == "everything":
        parts = segany.everything(
            obj, spec["scale"], output="part_attribute", method=method, prior=prior, options=options
        )
        said, count = f"{len(parts.colours)} parts in 'segany_part'", len(parts.colours)
    else:
        raise ValueError(f"unknown task {task!r}: clicks, label or everything")
    bpy.ops.wm.save_as_mainfile(filepath=str(opts.out_dir / f"{path.stem}.blend"))
    print(f"SEGANY {path.name}: {said}")
    return count


opts.out_dir.mkdir(parents=True, exist_ok=True)
done, failed = segany.each(opts.meshes, label_file)
for name, exc in failed.items():
    print(f"SEGANY {name}: FAILED {exc}")
segany.stop_backend()
sys.exit(1 if failed else 0)
