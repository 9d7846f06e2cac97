"""A `segany calibrate` table from a Blender script or the Label panel: `segany.label(obj, words, calibration=...)`
and the panel's Calibration field send it with the query (its file or its JSON), a missing or broken file is
named before anything runs, and a table that does not fit the scene's sources comes back as the backend's
bad_request with the object unchanged."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import BACKEND_PYTHON, TINY, drain_until
from test_addon_label import WORDS, box_and_ball_name, catalogue  # noqa: F401  (fixtures)
from test_addon_panels import draw


def _table(names: list[str], iou: float) -> dict:
    # the model ids the backend gives the fixture's oracles (confusion and noise 0, prior defaults otherwise)
    model = "oracle_text(cell=1, confusion=0.0, embed_dim=64, noise=0.0, seed=0, source={}, sources=2, weakness={})"
    sources = [
        {"name": n, "model": model.format(i, "'order'"), "words": WORDS, "iou": [iou] * len(WORDS)}
        for i, n in enumerate(names)
    ]
    return {"format": "segany-capability/1", "sources": sources, "note": "made by the test"}


def test_a_table_from_a_file_or_as_json_labels_the_object(box_and_ball_name: str, tmp_path: Path) -> None:  # noqa: F811
    import bpy
    from bl_ext.user_default.segany import labels, scene_read

    ob = bpy.data.objects[box_and_ball_name]
    plain = labels.relabel(ob, WORDS)
    path = tmp_path / "capability.json"
    path.write_text(json.dumps(_table(["oracle_a", "oracle_b"], 0.9)))
    from_file = labels.relabel(ob, WORDS, calibration=str(path))
    np.testing.assert_array_equal(from_file.labels, plain.labels)  # both oracles are exact: the same answer
    as_json = labels.relabel(ob, WORDS, calibration=_table(["oracle_a", "oracle_b"], 0.5))
    np.testing.assert_array_equal(as_json.labels, plain.labels)
    np.testing.assert_array_equal(scene_read.read_attribute(ob.data, labels.LABEL_ATTRIBUTE), plain.labels)


def test_tables_that_do_not_fit_change_nothing(box_and_ball_name: str, tmp_path: Path) -> None:  # noqa: F811
    import bpy
    from bl_ext.user_default.segany import api, labels, scene_read

    ob = bpy.data.objects[box_and_ball_name]
    before = scene_read.read_attribute(ob.data, labels.LABEL_ATTRIBUTE).copy()
    with pytest.raises(ValueError, match="does not exist"):
        api.label(ob, WORDS, prior="oracle_text", calibration=str(tmp_path / "missing.json"))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not JSON"):
        labels.relabel(ob, WORDS, calibration=str(tmp_path / "broken.json"))
    with pytest.raises(api.RemoteError) as err:  # the backend's rule: the table's sources are the scene's
        labels.relabel(ob, WORDS, calibration=_table(["clip", "clip_crops"], 0.5))
    assert err.value.code == "bad_request" and "not this scene's" in err.value.message
    np.testing.assert_array_equal(scene_read.read_attribute(ob.data, labels.LABEL_ATTRIBUTE), before)


def _calibrated_on(ob: object, out: Path) -> Path:
    """`segany calibrate` (the real CLI, in the backend's python) on a labelled copy of ob's own geometry: the
    box and the ball named as the fixture names them, the oracles as the fixture's (exact)."""
    from bl_ext.user_default.segany import scene_read

    arrays = scene_read.read_object(ob).arrays
    verts, faces = arrays["vertices"], arrays["faces"]
    data = out / "data"
    (data / "off").mkdir(parents=True)
    (data / "seg" / "1").mkdir(parents=True)
    lines = ["OFF", f"{len(verts)} {len(faces)} 0", *(f"{x:.6f} {y:.6f} {z:.6f}" for x, y, z in verts)]
    (data / "off" / "1.off").write_text("\n".join([*lines, *(f"3 {a} {b} {c}" for a, b, c in faces)]) + "\n")
    ball = verts[faces][:, :, 2].mean(axis=1) > 0.9
    (data / "seg" / "1" / "1_0.seg").write_text("\n".join(str(int(b)) for b in ball) + "\n")
    (data / "categories.json").write_text(json.dumps({"1": "toys"}))
    (data / "part_names.json").write_text(json.dumps({"toys": {"1": WORDS}}))
    table = out / "capability.json"
    cli = [BACKEND_PYTHON, "-m", "segany.cli", "calibrate", str(data), "--prior", "oracle_text", "--out", str(table)]
    cli += ["--prior-options", json.dumps({"confusion": 0.0, "noise": 0.0}), "--options", json.dumps(TINY)]
    cli += ["--cache-dir", str(out / "cache"), "--device", "cpu"]
    res = subprocess.run(cli, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    return table


def _button(ob: object, words: list[str], calibration: str) -> object:
    """What the panel's button starts (its modal wait cannot run headless): the background labelling, waited
    for as the operator's timer does."""
    from bl_ext.user_default.segany import labels

    pending = labels.start(ob, words, False, None, None, calibration)
    drain_until(lambda: (pending.step(), pending.done)[1])
    return pending


def test_the_panel_sends_a_table_segany_calibrate_wrote(box_and_ball_name: str, tmp_path: Path) -> None:  # noqa: F811
    """The panel's Calibration field goes with the query: a table `segany calibrate` measured gives every word
    its capability (the report says so); a table of other sources is the backend's bad_request in the report,
    nothing written; an empty field labels as before."""
    import bpy
    from bl_ext.user_default.segany import labels, panels, runtime, scene_read

    ob = bpy.data.objects[box_and_ball_name]
    bpy.context.view_layer.objects.active = ob
    table = _calibrated_on(ob, tmp_path)
    assert {s["name"] for s in json.loads(table.read_text())["sources"]} == {"oracle_a", "oracle_b"}
    settings = bpy.context.scene.segany
    settings.label_calibration = str(table)
    log = draw(panels.SEGANY_PT_labels, bpy.context)
    assert ("prop", settings, "label_calibration") in log
    assert not [e for e in log if e[0] == "label" and e[2] == "ERROR"]
    pending = _button(ob, WORDS, settings.label_calibration)
    assert pending.error is None and pending.answer.extras["calibrated"].tolist() == [True, True]
    assert bpy.ops.segany.label("EXEC_DEFAULT", words=", ".join(WORDS), calibration=str(table)) == {"FINISHED"}
    done = labels.relabel(ob, WORDS, calibration=settings.label_calibration)
    assert done.calibrated == WORDS and "from the calibration for 2 of 2 words" in done.summary()
    written = scene_read.read_attribute(ob.data, labels.LABEL_ATTRIBUTE).copy()
    np.testing.assert_array_equal(written, done.labels)

    other = tmp_path / "other_sources.json"
    other.write_text(json.dumps(_table(["clip", "clip_crops"], 0.5)))
    pending = _button(ob, ["ball"], str(other))
    said = runtime.error_text(pending.error)
    assert "not this scene's" in said and said.endswith("[bad_request]")
    with pytest.raises(RuntimeError, match=r"not this scene's.*\[bad_request\]"):
        bpy.ops.segany.label("EXEC_DEFAULT", words="ball", calibration=str(other))
    np.testing.assert_array_equal(scene_read.read_attribute(ob.data, labels.LABEL_ATTRIBUTE), written)
    assert labels.legend(ob)[0] == WORDS

    assert not _button(ob, ["ball"], "").answer.extras["calibrated"].any()
    assert bpy.ops.segany.label("EXEC_DEFAULT", words="ball") == {"FINISHED"}
    assert labels.legend(ob)[0] == ["ball"] and not labels.relabel(ob, ["ball"]).calibrated
    settings.label_calibration = ""


@pytest.mark.parametrize(("content", "said"), [(None, "does not exist"), ("{not json", "is not JSON")])
def test_a_missing_or_broken_file_is_named_and_changes_nothing(
    box_and_ball_name: str,  # noqa: F811
    tmp_path: Path,
    content: str | None,
    said: str,
) -> None:
    """The panel marks a path that is not a file before the button is pressed; the button's report names the
    file and what is wrong with it, and the object keeps its labels."""
    import bpy
    from bl_ext.user_default.segany import labels, panels, scene_read

    ob = bpy.data.objects[box_and_ball_name]
    bpy.context.view_layer.objects.active = ob
    before = scene_read.read_attribute(ob.data, labels.LABEL_ATTRIBUTE).copy()
    legend = labels.legend(ob)[0]
    path = tmp_path / "capability.json"
    if content is not None:
        path.write_text(content)
    settings = bpy.context.scene.segany
    settings.label_calibration = str(path)
    marked = [e for e in draw(panels.SEGANY_PT_labels, bpy.context) if e[0] == "label" and e[2] == "ERROR"]
    assert bool(marked) == (content is None)
    with pytest.raises(ValueError, match=f"calibration file .*capability.json {said}"):
        labels.start(ob, ["box"], False, None, None, settings.label_calibration)  # before anything is sent
    with pytest.raises(RuntimeError, match=f"calibration file .*capability.json {said}"):
        bpy.ops.segany.label("EXEC_DEFAULT", words="box", calibration=str(path))
    np.testing.assert_array_equal(scene_read.read_attribute(ob.data, labels.LABEL_ATTRIBUTE), before)
    assert labels.legend(ob)[0] == legend
    settings.label_calibration = ""
