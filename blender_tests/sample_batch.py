"""Batch-label meshes with SegAny from the command line (the README's sample):

    blender -b --python sample_batch.py -- OUT_DIR MESH.obj [MESH.obj ...] [--click 120 --click -45]
    blender -b --python sample_batch.py -- OUT_DIR MESH.obj [MESH.obj ...] --spec job.json

For each mesh file (OBJ, PLY, STL): import it, segment it from the clicks with iSeg (the backend starts on
first use; its prepared work is cached, so a mesh seen before is not trained again), keep the segment as
the vertex group "part", and save OUT_DIR/<name>.blend. With --spec, the job spec `segany batch --spec`
reads (docs/batch.md) says what to do instead. Either way the add-on's `segany.run_spec` does the work (the
same reader and per-object steps a script inside Blender uses); this file only parses its command line. A
file that fails is reported and the others go on; the exit status is 1 when any failed. The SegAny extension
must be installed; SEGANY_PYTHON (the backend's interpreter), SEGANY_CACHE_DIR and SEGANY_OPTIONS (iSeg
options as JSON, without --spec) override the preferences.
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
if opts.spec is not None:  # the file `segany batch --spec` reads, checked by the add-on before any mesh
    spec = opts.spec
else:
    spec = {
        "task": "clicks",
        "method": "iseg",
        "clicks": segany.parse_clicks(" ".join(opts.click or ["0"])),
        "options": json.loads(os.environ.get("SEGANY_OPTIONS", "{}")),
    }


def said(result: object) -> str:
    """One line on what an object got."""
    if isinstance(result, segany.Segmented):
        return f"{result.count} vertices in 'part' ({result.prepared})"
    if isinstance(result, segany.LabelsDone):
        return f"labelled {', '.join(f'{w}: {result.count(w)}' for w in result.words)}"
    return f"{len(result.colours)} parts in 'segany_part'"


try:
    done, failed = segany.run_spec(opts.meshes, spec, out_dir=str(opts.out_dir))
except ValueError as exc:  # a bad spec: nothing was done
    sys.exit(f"{opts.spec}: {exc}")
for name, result in done.items():
    print(f"SEGANY {name}: {said(result)}")
for name, exc in failed.items():
    print(f"SEGANY {name}: FAILED {exc}")
segany.stop_backend()
sys.exit(1 if failed else 0)
