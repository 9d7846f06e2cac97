"""Batches that one failure does not stop: the README's batch script, run as `blender -b --python
sample_batch.py -- OUT A.obj B.obj` would run it (a fresh bpy process with the extension installed from the
built zip into an isolated user directory), and the scripting API's `each` in this process."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import trimesh
from conftest import BACKEND_PYTHON, ROOT, TINY, grid_mesh, run_blender, vertex_only_mesh

SCRIPT = """
import runpy, sys
import bpy
done = bpy.ops.extensions.package_install_files(filepath=ZIP, repo="user_default", enable_on_install=True)
assert done == {"FINISHED"}
sys.argv = ["blender", "-b", "--python", SAMPLE, "--", *ARGS]
try:
    runpy.run_path(SAMPLE, run_name="__main__")
except SystemExit as end:
    print("EXIT", end.code)
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
    trimesh.Trimesh([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [(0, 1, 2)]).export(tmp_path / "tiny.obj")  # no vertex 3
    os.environ["SEGANY_PYTHON"] = BACKEND_PYTHON
    os.environ["SEGANY_CACHE_DIR"] = str(tmp_path / "cache")
    os.environ["SEGANY_OPTIONS"] = json.dumps(TINY)
    try:
        meshes = [str(tmp_path / name) for name in ("a.obj", "tiny.obj", "b.obj")]
        args = [str(tmp_path / "out"), *meshes, "--click", "3"]
        preamble = f"ZIP = {str(zip_path)!r}\nSAMPLE = {str(ROOT / 'blender_tests' / 'sample_batch.py')!r}\n"
        proc = run_blender(preamble + f"ARGS = {args!r}\n" + SCRIPT, timeout=300, user_dir=tmp_path / "user")
    finally:
        for key in ("SEGANY_PYTHON", "SEGANY_CACHE_DIR", "SEGANY_OPTIONS"):
            os.environ.pop(key)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("SEGANY ")]
    assert len(lines) == 3, proc.stdout[-2000:]
    assert "a.obj" in lines[0] and "(prepared)" in lines[0]
    assert "b.obj" in lines[1] and "cache" in lines[1]  # same geometry: the backend's cached work
    assert lines[2].startswith("SEGANY tiny.obj: FAILED") and "out of range" in lines[2]  # and the batch went on
    assert "EXIT 1" in proc.stdout and not (tmp_path / "out" / "tiny.blend").exists()
    with bpy.data.libraries.load(str(tmp_path / "out" / "b.blend")) as (src, dst):
        dst.objects = list(src.objects)
    saved = [ob for ob in dst.objects if ob.type == "MESH"]
    assert saved and "part" in saved[0].vertex_groups and saved[0].segany_segments[0].name == "part"
    for ob in dst.objects:
        bpy.data.objects.remove(ob)
    assert (tmp_path / "out" / "a.blend").is_file()


def test_each_collects_what_fails_per_object_and_goes_on(rt: object, fresh_scene: object) -> None:
    """A batch over the scene's objects where one cannot be segmented the way asked (iSeg on a point scene:
    the backend refuses) and one has no vertices: both are returned, the others are done."""
    import bpy
    from bl_ext.user_default.segany import api, client

    empty = bpy.data.objects.new("empty", bpy.data.meshes.new("empty"))
    bpy.context.scene.collection.objects.link(empty)
    objects = [grid_mesh("first"), vertex_only_mesh(), empty, grid_mesh("last")]

    def work(ob: object) -> int:
        return api.segment(ob, clicks=[(2, 1)], method="iseg", output="attribute", name="part", options=TINY).count

    done, failed = api.each(objects, work)
    assert list(done) == ["first", "last"] and all(n > 0 for n in done.values())
    assert set(failed) == {"points", "empty"}
    assert isinstance(failed["points"], client.RemoteError) and failed["points"].code == "unsupported"
    assert isinstance(failed["empty"], ValueError) and "out of range" in str(failed["empty"])
    assert "part" in bpy.data.objects["last"].data.attributes and len(bpy.data.objects["points"].segany_segments) == 0


def test_sample_batch_script_follows_a_batch_spec(addon: object, tmp_path: Path) -> None:
    """The job spec `segany batch --spec` reads drives the Blender script too: one file for both."""
    import bpy

    from segany.addon_build import build

    spec = {"task": "clicks", "method": "walk", "clicks": [[3, 1], [40, -1]]}
    (tmp_path / "job.json").write_text(json.dumps(spec))
    # what `segany batch --spec` accepts, checked by the backend's interpreter (a bpy venv has no torch)
    check = f"from segany.batch import load_spec; load_spec({str(tmp_path / 'job.json')!r})"
    subprocess.run([BACKEND_PYTHON, "-c", check], check=True, timeout=300)
    trimesh.creation.icosphere(subdivisions=2).export(tmp_path / "ball.obj")
    zip_path = build(tmp_path / "dist")
    os.environ["SEGANY_PYTHON"] = BACKEND_PYTHON
    os.environ["SEGANY_CACHE_DIR"] = str(tmp_path / "cache")
    try:
        args = [str(tmp_path / "out"), str(tmp_path / "ball.obj"), "--spec", str(tmp_path / "job.json")]
        preamble = f"ZIP = {str(zip_path)!r}\nSAMPLE = {str(ROOT / 'blender_tests' / 'sample_batch.py')!r}\n"
        proc = run_blender(preamble + f"ARGS = {args!r}\n" + SCRIPT, timeout=300, user_dir=tmp_path / "user")
    finally:
        for key in ("SEGANY_PYTHON", "SEGANY_CACHE_DIR"):
            os.environ.pop(key)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("SEGANY ")]
    assert lines and "in 'part'" in lines[0] and "EXIT 0" in proc.stdout, proc.stdout[-2000:]
    with bpy.data.libraries.load(str(tmp_path / "out" / "ball.blend")) as (src, dst):
        dst.objects = list(src.objects)
    saved = [ob for ob in dst.objects if ob.type == "MESH"]
    assert saved and "part" in saved[0].vertex_groups and saved[0].segany_segments[0].name == "part"
    for ob in dst.objects:
        bpy.data.objects.remove(ob)
