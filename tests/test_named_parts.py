"""Procedural named-part assets: every face names its part, proportions vary by seed, the files are what
`segany eval --task label` reads (meshes, and splats / points with the same part names)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from segany.cli import app
from segany.engine import Engine
from segany.errors import SegAnyError
from segany.eval.data import iter_shapes
from segany.eval.label import part_names, run_label_eval
from segany.eval.named_parts import CATEGORIES, build, generate_named_parts

VOCABULARY = {
    "table": {"top", "leg", "apron"},
    "chair": {"seat", "back", "leg", "arm"},
    "lamp": {"base", "pole", "shade"},
    "mug": {"body", "handle"},
    "bottle": {"body", "neck", "cap"},
}


@pytest.mark.parametrize("category", list(CATEGORIES))
def test_every_face_names_its_part(category: str) -> None:
    scene, labels, names = build(category, 0)
    assert labels.shape == (len(scene.faces),) and labels.min() == 0 and labels.max() == len(names) - 1
    assert set(names) <= VOCABULARY[category] and len(set(names)) >= 2
    assert np.bincount(labels).min() >= 100  # every part instance has faces enough to carry features
    parts = [np.unique(scene.faces[labels == v]) for v in range(len(names))]
    assert all(len(np.intersect1d(a, b)) == 0 for i, a in enumerate(parts) for b in parts[i + 1 :])  # not welded
    again, other = build(category, 0), build(category, 1)
    np.testing.assert_array_equal(again[0].vertices, scene.vertices)
    assert other[0].vertices.shape != scene.vertices.shape or not np.allclose(other[0].vertices, scene.vertices)


def test_parts_sit_where_their_names_say() -> None:
    """A table's top is above its legs; a bottle's cap above its neck above its body; a lamp's shade on top."""

    def height(category: str, name: str) -> float:
        scene, labels, names = build(category, 3)
        faces = np.isin(labels, [v for v, n in enumerate(names) if n == name])
        return float(scene.vertices[scene.faces[faces]].reshape(-1, 3)[:, 2].mean())

    assert height("table", "top") > height("table", "leg")
    assert height("bottle", "cap") > height("bottle", "neck") > height("bottle", "body")
    assert height("lamp", "shade") > height("lamp", "pole") > height("lamp", "base")
    assert height("chair", "back") > height("chair", "seat") > height("chair", "leg")


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("named")
    generate_named_parts(out, per_category=1, seed=7, kinds=("points",))
    return out


def test_the_files_carry_labels_categories_and_names(assets: Path) -> None:
    for kind in ("meshes", "points"):
        shapes = {s.id: s for s in iter_shapes(assets / kind)}
        assert sorted(shapes) == sorted(f"{c}_7" for c in CATEGORIES)
        names = json.loads((assets / kind / "part_names.json").read_text())
        for shape in shapes.values():
            assert shape.category == shape.id.split("_")[0]
            listed = names[shape.category][shape.id]
            assert part_names(shape.category, shape.id, shape.labels, assets / kind) == listed
            assert shape.labels.max() == len(listed) - 1


def test_the_label_eval_reads_the_names(assets: Path, tmp_path: Path) -> None:
    """With sources that never err, labelling the bottle's points by its names recovers its parts: the names
    the eval reads from the folder are the ones its labels carry."""
    engine = Engine(cache_dir=tmp_path / "cache", device="cpu")
    exact = {"confusion": 0.0, "noise": 0.0}
    try:
        results = run_label_eval(
            "sas", "oracle_text", assets / "points", ["bottle_7"], tmp_path / "out", engine, exact, {"preset": "tiny"}
        )
    finally:
        engine.close()
    (shape,) = results["shapes"]
    assert shape["words"] == ["body", "cap", "neck"] and shape["kind"] == "points"
    assert results["summary"]["fused"]["miou"] > 60.0  # 71 at the tiny preset's 6 views of 48 px; names shuffled: < 40


def test_a_broken_names_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "part_names.json").write_text('{"mug": ["body"]}')
    with pytest.raises(SegAnyError) as err:
        part_names("mug", "mug_0", np.array([0]), tmp_path)
    assert err.value.code == "corrupt_file" and "part_names.json" in err.value.message


def test_cli(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["generate-named-parts", "--out", str(tmp_path), "--per-category", "1", "--kinds", "none"]
    )
    assert res.exit_code == 0, res.output
    assert "meshes: 5 files" in res.output and not (tmp_path / "splats").exists()
    bad = CliRunner().invoke(app, ["generate-named-parts", "--out", str(tmp_path), "--per-category", "0"])
    assert bad.exit_code != 0 and "at least 1" in f"{bad.output}{bad.exception}"
