"""A `segany calibrate` table from a Blender script: `segany.label(obj, words, calibration=...)` sends it with
the query (its file or its JSON), a missing or broken file is named before anything runs, and a table that
does not fit the scene's sources comes back as the backend's bad_request with the object unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_addon_label import WORDS, box_and_ball_name, catalogue  # noqa: F401  (fixtures)


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
