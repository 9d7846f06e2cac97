"""Batches that one failure does not stop: the README's batch script, run as `blender -b --python
sample_batch.py -- OUT A.obj B.obj` would run it (a fresh bpy process with the extension installed from the
built zip into an isolated user directory), and the scripting API's `each` and `run_spec` in this process; the
add-on's reader of the `segany batch` job spec against the backend's."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
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


SPECS = [  # (spec, what it checks); both readers must take or refuse each alike
    ({"task": "clicks", "clicks": [[1, 1], [2, -1]]}, "clicks"),
    (
        {
            "task": "clicks",
            "clicks": [[1, 1]],
            "method": "walk",
            "prior": None,
            "options": {"preset": "tiny"},
            "prior_options": {},
            "retries": 0,
            "allow_references": True,
        },
        "every field",
    ),
    ({"task": "everything", "scale": 0.2}, "a scale"),
    ({"task": "everything", "scale": "auto"}, "auto scale"),
    ({"task": "label", "words": ["seat", "leg"]}, "words"),
    ({"task": "clicks", "clicks": [[1, 1]], "options": None, "method": None}, "nulls where allowed"),
    ({"task": "everything", "scale": "auto", "words": ["x"], "clicks": [[0, -1]]}, "other tasks' fields"),
    ({}, "clicks by default, without clicks"),
    ({"task": "cut", "clicks": [[1, 1]]}, "unknown task"),
    ({"task": None, "clicks": [[1, 1]]}, "null task"),
    ({"task": "clicks", "clicks": [[1, 2]]}, "sign 2"),
    ({"task": "clicks", "clicks": [[-1, 1]]}, "negative element"),
    ({"task": "clicks", "clicks": [[1, 1, 1]]}, "a triple"),
    ({"task": "clicks", "clicks": [[1.5, 1]]}, "a float element"),
    ({"task": "clicks", "clicks": [[True, 1]]}, "a boolean element"),
    ({"task": "clicks", "clicks": [[i, 1] for i in range(65)]}, "65 clicks"),
    ({"task": "clicks", "clicks": [[1, 1]], "colour": 1}, "unknown field"),
    ({"task": "clicks", "clicks": [[1, 1]], "prior_options": "x"}, "prior_options not an object"),
    ({"task": "clicks", "clicks": [[1, 1]], "retries": 11}, "retries too many"),
    ({"task": "clicks", "clicks": [[1, 1]], "retries": True}, "retries a boolean"),
    ({"task": "clicks", "clicks": [[1, 1]], "retries": None}, "retries null"),
    ({"task": "clicks", "clicks": [[1, 1]], "allow_references": 1}, "allow_references a number"),
    ({"task": "clicks", "clicks": [[1, 1]], "method": "m" * 5000}, "a method name too long"),
    ({"task": "everything"}, "no scale"),
    ({"task": "everything", "scale": 0}, "scale 0"),
    ({"task": "everything", "scale": -1}, "negative scale"),
    ({"task": "everything", "scale": "huge"}, "a scale word"),
    ({"task": "everything", "scale": True}, "a boolean scale"),
    ({"task": "label", "words": [" "]}, "blank words"),
    ({"task": "label", "words": "seat"}, "words as text"),
    ({"task": "label", "words": [3]}, "a number for a word"),
    ({"task": "label", "words": ["w"] * 65}, "65 words"),
    (["task", "clicks"], "not an object"),
]


def test_the_addon_reads_a_batch_spec_as_segany_batch_does(addon: object, tmp_path: Path) -> None:
    """The add-on cannot import the backend's reader (no torch in Blender's Python), so it has its own: both
    must take and refuse the same specs, or one file would not drive both batches."""
    from bl_ext.user_default.segany import batch

    (tmp_path / "specs.json").write_text(json.dumps([s for s, _ in SPECS]))
    check = f"""
import json
from segany.batch import parse_spec
from segany.errors import SegAnyError
for spec in json.loads(open({str(tmp_path / "specs.json")!r}).read()):
    try:
        parse_spec(spec)
        print("ok")
    except SegAnyError as exc:
        print("refused", exc.code)
"""
    proc = subprocess.run([BACKEND_PYTHON, "-c", check], capture_output=True, text=True, check=True, timeout=300)
    backend = proc.stdout.split("\n")[: len(SPECS)]
    assert set(backend) == {"ok", "refused bad_request"}, proc.stdout  # user mistakes: bad_request, never internal
    for (spec, what), verdict in zip(SPECS, backend, strict=True):
        try:
            batch.read_spec(spec)
            addon_verdict = "ok"
        except ValueError:
            addon_verdict = "refused bad_request"
        assert addon_verdict == verdict, what


def test_run_spec_writes_each_object_and_saves_a_blend_each(rt: object, fresh_scene: object, tmp_path: Path) -> None:
    """`run_spec` runs the job spec's clicks on each object through the add-on's own segment: a mesh gets the
    vertex group `part`, a point object the attribute `part`, each saved as a .blend; an object the clicks do
    not fit is recorded and the batch goes on."""
    import bpy
    from bl_ext.user_default.segany import api

    points = bpy.data.objects.new("points", bpy.data.meshes.new("points"))  # face-less: sent as a point scene
    points.data.from_pydata([(i % 10, i // 10, (i % 7) * 0.1) for i in range(100)], [], [])
    bpy.context.scene.collection.objects.link(points)
    objects = [grid_mesh("first"), points, grid_mesh("small", x=2, y=2), grid_mesh("last")]
    spec = {"task": "clicks", "method": "walk", "clicks": [[3, 1], [40, -1]]}
    done, failed = api.run_spec(objects, spec, out_dir=str(tmp_path / "out"))
    assert list(done) == ["first", "points", "last"] and list(failed) == ["small"]
    assert isinstance(failed["small"], ValueError) and "out of range" in str(failed["small"])
    sizes = {n: len(bpy.data.objects[n].data.vertices) for n in done}
    assert all(0 < d.count < sizes[n] for n, d in done.items())  # a part: not nothing, not everything
    assert "part" in bpy.data.objects["first"].vertex_groups and "part" in bpy.data.objects["last"].vertex_groups
    assert "part" in bpy.data.objects["points"].data.attributes
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["first.blend", "last.blend", "points.blend"]
    with bpy.data.libraries.load(str(tmp_path / "out" / "last.blend")) as (src, dst):
        dst.objects = [n for n in src.objects if n == "last"]
    (saved,) = dst.objects
    assert "part" in saved.vertex_groups and saved.segany_segments[0].name == "part"
    bpy.data.objects.remove(saved)


@pytest.mark.parametrize("task", ["clicks", "everything"])
def test_run_spec_sends_prior_options_to_the_backend(rt: object, fresh_scene: object, task: str) -> None:
    """prior_options reach the backend's prepare: one it does not know is refused there, per object."""
    from bl_ext.user_default.segany import api, client

    spec = {"task": task, "clicks": [[3, 1]], "scale": "auto", "prior_options": {"no_such_option": 1}}
    spec["method"] = "walk" if task == "clicks" else "saga"
    done, failed = api.run_spec([grid_mesh("first")], spec)
    assert not done and isinstance(failed["first"], client.RemoteError) and failed["first"].code == "bad_request"
    assert "no_such_option" in str(failed["first"])


def test_run_spec_refuses_a_bad_spec_before_any_object(rt: object, fresh_scene: object) -> None:
    import bpy
    from bl_ext.user_default.segany import api

    with pytest.raises(ValueError, match="needs clicks"):
        api.run_spec([grid_mesh("first")], {"task": "clicks"})
    assert "part" not in bpy.data.objects["first"].vertex_groups
