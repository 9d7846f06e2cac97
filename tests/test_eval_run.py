"""run_eval end to end: real files in the PSB layout, the baseline, and a perfect-scorer fixture."""

from __future__ import annotations

import json

import pytest
from eval_shapes import PerfectEngine, split_box, tower_on_slab, write_psb

from segany.errors import SegAnyError
from segany.eval import run_eval
from segany.eval.run import options_for

SUMMARY_KEYS = {"miou@1", "miou@3", "miou@5", "noc@80", "noc@85", "noc@90", "seconds_per_click", "prepare_seconds"}


def test_baseline_run_writes_results_report_and_plot(tmp_path) -> None:
    data = write_psb(tmp_path / "psb", [tower_on_slab(), split_box(2)])
    (data / "categories.json").write_text(json.dumps({"tower": "block"}))
    seen = []
    results = run_eval("baseline", None, data, ["tower"], 3, tmp_path / "out", progress=lambda f, m: seen.append(f))
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert on_disk["summary"] == results["summary"]
    assert set(on_disk) >= {"schema", "summary", "categories", "shapes", "config"}
    assert list(on_disk["summary"]) == ["baseline"] and set(on_disk["summary"]["baseline"]) >= SUMMARY_KEYS
    assert on_disk["categories"]["block"]["baseline"]["targets"] == 2
    (shape,) = on_disk["shapes"]
    assert shape["id"] == "tower" and shape["category"] == "block" and shape["kind"] == "mesh"
    assert shape["n_vertices"] == 1600 and shape["n_faces"] == 3196
    runs = shape["methods"]["baseline"]["targets"]
    assert [len(r["iou"]) for r in runs] == [3, 3] and all(len(r["clicks"]) >= 1 for r in runs)
    assert runs[0]["clicks"][0][1] == 1
    cfg = on_disk["config"]
    assert cfg["clicks"] == 3 and cfg["method"] == "baseline" and cfg["data"] == str(data.resolve())
    assert {"date", "versions", "protocol"} <= set(cfg)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| baseline |" in report and "block / baseline" in report
    png = (tmp_path / "out" / "iou_vs_clicks.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert seen[-1] == 1.0


def test_perfect_scorer_through_the_engine_calls_gives_100_percent_and_one_click(tmp_path) -> None:
    data = write_psb(tmp_path / "psb", [split_box(3)])
    engine = PerfectEngine()
    results = run_eval("perfect", "oracle", data, None, 4, tmp_path / "out", engine=engine)
    assert list(results["summary"]) == ["perfect", "baseline"]
    perfect = results["summary"]["perfect"]
    assert perfect["miou@1"] == 100.0 and perfect["miou@5"] == 100.0
    assert perfect["noc@80"] == perfect["noc@85"] == perfect["noc@90"] == 1.0
    assert results["summary"]["baseline"]["miou@1"] < 100.0
    assert engine.prepared == [("perfect", "s0", "oracle")] and engine.scenes == {}  # dropped after use
    runs = results["shapes"][0]["methods"]["perfect"]["targets"]
    assert all(len(r["clicks"]) == 1 and r["iou"] == [1.0] * 4 for r in runs)
    assert "perfect" in (tmp_path / "out" / "report.md").read_text()


def test_bad_requests_are_actionable(tmp_path) -> None:
    data = write_psb(tmp_path / "psb", [split_box(1)])
    with pytest.raises(SegAnyError) as err:
        run_eval("baseline", None, data, ["nope"], 3, tmp_path / "out")
    assert err.value.code == "not_found" and "box" in err.value.message
    with pytest.raises(SegAnyError) as err:
        run_eval("baseline", None, tmp_path / "missing", None, 3, tmp_path / "out")
    assert err.value.code == "not_found"
    with pytest.raises(SegAnyError) as err:
        run_eval("baseline", None, data, None, 0, tmp_path / "out")
    assert err.value.code == "bad_request"


def test_method_and_query_options_reach_prepare_every_query_and_the_config(tmp_path) -> None:
    data = write_psb(tmp_path / "psb", [split_box(2)])
    engine = PerfectEngine()
    results = run_eval(
        "perfect",
        "oracle",
        data,
        None,
        2,
        tmp_path / "out",
        engine=engine,
        method_options={"decoder": "full"},
        query_options={"refine": False},
    )
    assert engine.query_keys == {"clicks", "refine"} and engine.options == [{"decoder": "full"}]
    assert results["config"]["query_options"] == {"refine": False}
    assert results["config"]["method_options"] == {"decoder": "full"}


def test_several_methods_run_in_one_pass_and_a_method_of_another_scene_kind_is_skipped(tmp_path) -> None:
    """The real Engine and methods: `walk` works on meshes, `sa3d` does not, so sa3d is skipped and said so."""
    data = write_psb(tmp_path / "psb", [tower_on_slab()])
    results = run_eval("walk,walk@again,sa3d", "geometric", data, None, 2, tmp_path / "out")
    assert list(results["summary"]) == ["walk", "walk@again", "baseline"]
    assert results["config"]["methods"] == ["walk", "walk@again", "sa3d"]
    (shape,) = results["shapes"]
    assert set(shape["methods"]) == {"walk", "walk@again", "baseline"} and "splats" in shape["skipped"]["sa3d"]
    walk, baseline = shape["methods"]["walk"]["targets"], shape["methods"]["baseline"]["targets"]
    assert [r["iou"] for r in walk] == [r["iou"] for r in baseline]  # on a mesh walk answers as the baseline does
    assert [r["iou"] for r in shape["methods"]["walk@again"]["targets"]] == [r["iou"] for r in walk]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| walk |" in report and "`sa3d` skipped on 1 shapes" in report and "tower (mesh)" in report


def test_options_keyed_by_a_method_name_go_to_that_method_and_the_rest_to_every_method() -> None:
    names = ["saga", "iseg"]
    given = {"saga": {"scale": "auto"}, "refine": False}
    assert options_for("saga", given, names) == {"scale": "auto", "refine": False}
    assert options_for("iseg", given, names) == {"refine": False}
    assert options_for("walk", {"refine": False}, ["walk"]) == {"refine": False}  # one method: flat, as before
    with pytest.raises(SegAnyError) as err:
        options_for("saga", {"saga": 3}, names)
    assert err.value.code == "bad_request"


@pytest.mark.parametrize("method", ["saga,,iseg", "saga,saga", "baseline,saga", "@label"])
def test_a_bad_method_list_is_a_bad_request(tmp_path, method: str) -> None:
    data = write_psb(tmp_path / "psb", [split_box(1)])
    with pytest.raises(SegAnyError) as err:
        run_eval(method, "geometric", data, None, 2, tmp_path / "out")
    assert err.value.code == "bad_request" and "commas" in err.value.message
