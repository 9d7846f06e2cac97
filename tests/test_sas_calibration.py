"""Capability from a labelled calibration set: `segany calibrate`'s table, a label query that carries it, the
fallback to the scene estimate, refusals of tables that do not fit, and the evaluation's rankings."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from eval_shapes import table_with_legs, write_psb
from typer.testing import CliRunner

from segany.cli import app
from segany.engine import Engine
from segany.errors import SegAnyError
from segany.eval.calibration import calibration_table, load_table, table_capability
from segany.eval.data import Shape
from segany.eval.label import leave_one_out, run_calibrate, run_label_eval
from segany.formats import write_mesh_ply
from segany.methods.sas.calibration import FORMAT, model_id
from segany.priors import get_prior
from segany.priors.oracle_text import OracleTextPrior
from segany.scene import MeshScene
from tests.clip_tiny import TINY_NAME, tiny_checkpoint

STOOL_NAMES = ["seat", "back", "leg", "leg", "leg", "leg", "ring"]  # per face_parts value of the sample stool
WORDS = sorted(set(STOOL_NAMES))
TINY = {"preset": "tiny"}


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    eng = Engine(cache_dir=tmp_path_factory.mktemp("sas_calibration_cache"), device="cpu")
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def stool_sid(engine: Engine, stool: MeshScene) -> str:
    sid = engine.add_scene(stool)
    popts = {"labels": stool.face_parts, "names": STOOL_NAMES, "confusion": 0.9, "noise": 0.3}
    engine.prepare("sas", sid, prior="oracle_text", options=TINY, prior_options=popts)
    return sid


def _models(engine: Engine, sid: str) -> dict[str, str]:
    sources = engine.state("sas", sid, "oracle_text").prior.text_sources()
    return {name: model_id(source) for name, source in sources.items()}


def _table(models: dict[str, str], iou: dict[str, dict[str, float]]) -> dict:
    sources = [{"name": n, "model": models[n], "words": list(iou[n]), "iou": list(iou[n].values())} for n in models]
    return {"format": FORMAT, "sources": sources, "note": "made by the test"}


def _query(engine: Engine, sid: str, **keys: object):
    return engine.query("sas", sid, {"words": WORDS, **keys}, prior="oracle_text")


def test_the_table_replaces_the_estimate_and_steers_fusion(engine: Engine, stool_sid: str) -> None:
    """A table saying oracle_a is right about every word and oracle_b about none makes fusion follow oracle_a
    everywhere (its labels, not the estimate's mix); the answer carries the table's numbers."""
    models = _models(engine, stool_sid)
    table = _table(models, {"oracle_a": dict.fromkeys(WORDS, 0.9), "oracle_b": dict.fromkeys(WORDS, 0.1)})
    calibrated = _query(engine, stool_sid, calibration=table)
    np.testing.assert_allclose(calibrated.extras["capability"], [[0.9] * len(WORDS), [0.1] * len(WORDS)])
    assert calibrated.extras["calibrated"].tolist() == [True] * len(WORDS)
    alone = _query(engine, stool_sid, source="oracle_a")
    np.testing.assert_array_equal(calibrated.extras["labels"], alone.extras["labels"])
    estimated = _query(engine, stool_sid)
    assert not estimated.extras["calibrated"].any()
    assert (estimated.extras["labels"] != alone.extras["labels"]).any()  # so the table did change the answer


def test_a_word_the_table_lacks_keeps_the_scene_estimate(engine: Engine, stool_sid: str) -> None:
    models = _models(engine, stool_sid)
    known = [w for w in WORDS if w != "ring"]
    # oracle_b lacks "back" as well: a word takes the table only where every source has it
    iou = {"oracle_a": dict.fromkeys(known, 0.7), "oracle_b": dict.fromkeys([w for w in known if w != "back"], 0.2)}
    sel = _query(engine, stool_sid, calibration=_table(models, iou))
    estimate = _query(engine, stool_sid).extras["capability"]
    measured = [w not in ("ring", "back") for w in WORDS]
    assert sel.extras["calibrated"].tolist() == measured
    for k, word in enumerate(WORDS):
        expected = [0.7, 0.2] if measured[k] else estimate[:, k]
        np.testing.assert_allclose(sel.extras["capability"][:, k], expected, err_msg=word)


def test_words_match_without_case_or_spaces(engine: Engine, stool_sid: str) -> None:
    models = _models(engine, stool_sid)
    iou = {n: {f" {w.upper()} ": 0.5 for w in WORDS} for n in models}
    assert _query(engine, stool_sid, calibration=_table(models, iou)).extras["calibrated"].all()


def _broken(models: dict[str, str], change) -> dict:
    table = _table(models, {n: dict.fromkeys(WORDS, 0.5) for n in models})
    change(table)
    return table


def _set_iou(t: dict, value: float) -> None:
    t["sources"][0]["iou"][0] = value


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda t: t["sources"].pop(), "not this scene's"),
        (lambda t: t["sources"][0].update(name="clip"), "not this scene's"),
        (lambda t: t["sources"][1].update(model=t["sources"][0]["model"]), "measured with"),
        (lambda t: t.update(sources=[]), "no sources"),
        (lambda t: t["sources"].append(copy.deepcopy(t["sources"][0])), "more than once"),
        (lambda t: _set_iou(t, math.nan), "[0, 1]"),
        (lambda t: _set_iou(t, 1.5), "[0, 1]"),
        (lambda t: t["sources"][0]["iou"].pop(), "IoUs"),
        (lambda t: t["sources"][0].update(words=[]), "no words"),
        (lambda t: t["sources"][0]["words"].__setitem__(1, "Back"), "twice"),
        (lambda t: t.update(format="segany-capability/0"), "format"),
        (lambda t: t.update(extra=1), "extra"),
    ],
)
def test_tables_that_do_not_fit_are_refused(engine: Engine, stool_sid: str, change, says: str) -> None:
    table = _broken(_models(engine, stool_sid), change)
    with pytest.raises(SegAnyError) as err:
        _query(engine, stool_sid, calibration=table)
    assert err.value.code == "bad_request" and says in err.value.message, err.value.message


def test_model_id_names_the_model_not_the_scene() -> None:
    def oracle(**config: object) -> OracleTextPrior:
        base = {"labels": np.array([0, 1, 1]), "names": ("seat", "leg"), "source": 0}
        return OracleTextPrior(OracleTextPrior.Config(**{**base, **config}))

    plain = model_id(oracle())
    assert plain == model_id(oracle(labels=np.array([1, 0, 0, 2]), names=("top", "leg", "x")))  # scene data
    assert plain != model_id(oracle(confusion=0.5)) and plain != model_id(oracle(source=1))
    assert plain.startswith("oracle_text(") and "confusion=0.8" in plain and "labels" not in plain


def test_model_id_of_clip_names_the_weights_by_content(tmp_path: Path) -> None:
    """The same weights in another place are the same model; other weights are not."""
    checkpoint = tiny_checkpoint(tmp_path)
    moved = tmp_path / "moved" / "weights.bin"
    moved.parent.mkdir()
    moved.write_bytes(checkpoint.read_bytes())

    def clip(path: Path) -> str:
        return model_id(get_prior("clip", checkpoint=str(path), model_name=TINY_NAME, image_size=None))

    here = clip(checkpoint)
    assert here == clip(moved) and "model_key=" in here and str(tmp_path) not in here
    assert here != clip(tiny_checkpoint(tmp_path, seed=1))


def test_load_table_refuses_bad_files(tmp_path: Path) -> None:
    cases = {"missing.json": (None, "not_found"), "text.json": ("{nope", "corrupt_file")}
    nan = {"format": FORMAT, "sources": [{"name": "a", "model": "m", "words": ["x"], "iou": [float("nan")]}]}
    cases["nan.json"] = (json.dumps(nan), "bad_request")  # Python's json writes NaN; the table refuses it
    cases["list.json"] = ("[]", "bad_request")
    for name, (text, code) in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        with pytest.raises(SegAnyError) as err:
            load_table(tmp_path / name)
        assert err.value.code == code, (name, err.value.message)


def _record(shape_id: str, iou: dict[str, dict[str, float]]) -> dict:
    words = sorted(next(iter(iou.values())))
    return {
        "id": shape_id,
        "words": words,
        "models": {n: f"model {n}" for n in iou},
        "variants": {f"source:{n}": {"iou": v} for n, v in iou.items()},
    }


def test_a_table_averages_each_word_over_the_scenes_that_have_it() -> None:
    shapes = [
        _record("1", {"a": {"leg": 0.2, "top": 0.9}, "b": {"leg": 0.8, "top": 0.5}}),
        _record("2", {"a": {"leg": 0.4, "seat": 0.6}, "b": {"leg": 0.6, "seat": 0.1}}),
    ]
    table = calibration_table(shapes, "note")
    got = table_capability(table, ["leg", "seat", "top", "arm"])
    assert got == {
        "a": {"leg": pytest.approx(0.3), "seat": 0.6, "top": 0.9},
        "b": {"leg": pytest.approx(0.7), "seat": 0.1, "top": 0.5},
    }
    shapes[1]["models"]["a"] = "other weights"
    with pytest.raises(SegAnyError, match="ran as"):
        calibration_table(shapes, "note")
    with pytest.raises(SegAnyError, match="no labelled scenes"):
        calibration_table([], "note")


def test_leave_one_out_ranks_with_the_other_shapes_only() -> None:
    """b is better at "leg" on shapes 1-3 but a is on shape 4: measured on the others, shape 4's ranking is
    wrong (the table never sees shape 4's own truth); "top" exists on one shape only and is not covered."""
    shapes = [
        _record("1", {"a": {"leg": 0.2}, "b": {"leg": 0.8}}),
        _record("2", {"a": {"leg": 0.3}, "b": {"leg": 0.9}}),
        _record("3", {"a": {"leg": 0.2}, "b": {"leg": 0.7}}),
        _record("4", {"a": {"leg": 0.9, "top": 0.9}, "b": {"leg": 0.1, "top": 0.1}}),
    ]
    loo = leave_one_out(shapes)
    assert (loo["agree"], loo["cases"], loo["words_covered"], loo["words"]) == (3, 4, 4, 5)


@pytest.fixture(scope="module")
def table_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shape = table_with_legs()
    return write_psb(tmp_path_factory.mktemp("psb"), [Shape("141", "table", shape.scene, shape.labels, "generated")])


def test_calibrate_then_evaluate_with_the_table(engine: Engine, table_data: Path, tmp_path: Path) -> None:
    """The table `segany calibrate` writes is each source's per-word IoU as the label eval scores it; the
    eval with that table adds fusion by it and ranks the sources by it exactly (same shape, same truth)."""
    cap = tmp_path / "cap.json"
    table = run_calibrate("sas", "oracle_text", table_data, None, cap, engine, method_options=TINY)
    assert load_table(cap) == table and "1 scenes" in table["note"]
    out = tmp_path / "out"
    results = run_label_eval("sas", "oracle_text", table_data, None, out, engine, None, TINY, calibration=cap)
    (shape,) = results["shapes"]
    for source in table["sources"]:
        true = shape["variants"][f"source:{source['name']}"]["iou"]
        np.testing.assert_allclose(source["iou"], [true[w] for w in source["words"]])
    assert "fused:calibrated" in results["summary"]
    given = results["calibration_ranking"]["given"]
    assert given["cases"] >= 1 and given["agree"] == given["cases"]
    assert "from the table ranks them" in (out / "report.md").read_text()


def test_cli_calibrate_and_label(stool: MeshScene, table_data: Path, tmp_path: Path) -> None:
    """`segany calibrate` writes the table; `segany label --calibration` uses it for the words it has and
    says which words were estimated on the scene instead."""
    cli = [sys.executable, "-m", "segany.cli"]
    common = ["--options", json.dumps(TINY), "--cache-dir", str(tmp_path / "c"), "--device", "cpu"]
    cap = tmp_path / "cap.json"
    res = subprocess.run(
        [*cli, "calibrate", str(table_data), "--prior", "oracle_text", "--out", str(cap), *common],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    assert "2 sources × 2 words" in res.stdout and json.loads(cap.read_text())["format"] == FORMAT
    write_mesh_ply(tmp_path / "stool.ply", stool)
    popts = json.dumps({"labels": stool.face_parts.tolist(), "names": STOOL_NAMES})
    args = ["label", str(tmp_path / "stool.ply"), "--words", "leg, seat", "--prior", "oracle_text"]
    args += ["--prior-options", popts, "--calibration", str(cap), "--out", str(tmp_path / "out"), *common]
    res = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    said = " ".join(res.stdout.split())  # rich wraps long lines
    assert "for 1 of 2 words" in said and "estimated on the scene for ['seat']" in said, said


def test_cli_eval_takes_a_table_for_labels_only(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["eval", "--task", "clicks", "--calibration", str(tmp_path / "cap.json")])
    assert res.exit_code != 0 and "--task label" in f"{res.output}{res.exception}"


def test_calibrating_on_unnamed_parts_is_refused(engine: Engine, tmp_path: Path) -> None:
    shape = table_with_legs()
    data = write_psb(tmp_path / "psb", [Shape("900", "synthetic", shape.scene, shape.labels, "generated")])
    with pytest.raises(SegAnyError) as err:
        run_calibrate("sas", "oracle_text", data, None, tmp_path / "cap.json", engine, method_options=TINY)
    assert err.value.code == "bad_request" and "part_names.json" in err.value.message
    assert not (tmp_path / "cap.json").exists()
