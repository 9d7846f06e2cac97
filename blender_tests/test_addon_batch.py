"""The README's batch script, run as `blender -b --python sample_batch.py -- OUT A.obj B.obj` would run it:
a fresh bpy process with the extension installed from the built zip into an isolated user directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import trimesh
from conftest import BACKEND_PYTHON, ISEG_TINY, ROOT, run_blender

SCRIPT = """
import runpy, sys
import bpy
done = bpy.ops.extensions.package_install_files(filepath=ZIP, repo="user_default", enable_on_install=True)
assert done == {"FINISHED"}
sys.argv = ["blender", "-b", "--python", SAMPLE, "--", *ARGS]
runpy.run_path(SAMPLE, run_name="__main__")
"""


def test_sample_batch_script_labels_meshes_and_reuses_cached_work(addon: object, tmp_path: Path) -> None:
    import bpy

    from segany.addon_build import build

    zip_path = build(tmp_path / "dist")
    mesh = trimesh.util.concatenate(
        [trimesh.creation.icosphere(subdivisions=2), trimesh.creation.cylinder(0.3, 1.5).apply_translation((0, 0, -1))]
    )
    for name in ("a.obj", "b.obj"):
        mesh.export(tmp_path / name)
    os.environ["SEGANY_PYTHON"] = BACKEND_PYTHON
    os.environ["SEGANY_CACHE_DIR"] = str(tmp_path / "cache")
    os.environ["SEGANY_OPTIONS"] = json.dumps(ISEG_TINY)
    try:
        args = [str(tmp_path / "out"), str(tmp_path / "a.obj"), str(tmp_path / "b.obj"), "--click", "3"]
        preamble = f"ZIP = {str(zip_path)!r}\nSAMPLE = {str(ROOT / 'blender_tests' / 'sample_batch.py')!r}\n"
        proc = run_blender(preamble + f"ARGS = {args!r}\n" + SCRIPT, timeout=300, user_dir=tmp_path / "user")
    finally:
        for key in ("SEGANY_PYTHON", "SEGANY_CACHE_DIR", "SEGANY_OPTIONS"):
            os.environ.pop(key)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("SEGANY ")]
    assert len(lines) == 2, proc.stdout[-2000:]
    assert "a.obj" in lines[0] and "(prepared)" in lines[0]
    assert "b.obj" in lines[1] and "cache" in lines[1]  # same geometry: the backend's cached work
    with bpy.data.libraries.load(str(tmp_path / "out" / "b.blend")) as (src, dst):
        dst.objects = list(src.objects)
    saved = [ob for ob in dst.objects if ob.type == "MESH"]
    assert saved and "part" in saved[0].vertex_groups and saved[0].segany_segments[0].name == "part"
    for ob in dst.objects:
        bpy.data.objects.remove(ob)
    assert (tmp_path / "out" / "a.blend").is_file()
