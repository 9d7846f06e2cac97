"""The one query parser: clicks and a method's extras, bounded and refused before any work."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segany.errors import SegAnyError
from segany.methods import State, get_method
from segany.methods.iseg.options import ISegQuery
from segany.methods.queries import MAX_CLICKS, parse_query, query_keys
from segany.methods.sa3d.options import SA3DQuery
from segany.methods.walk.options import WalkQuery
from segany.samples import sample_mesh
from segany.scene import PointScene


@pytest.fixture(scope="module")
def mesh():
    return sample_mesh(max_edge=0.3)


@pytest.fixture(scope="module")
def points():
    return PointScene(xyz=np.random.default_rng(0).random((50, 3)).astype(np.float32))


def _refused(cls: type, query: object, scene) -> str:
    with pytest.raises(SegAnyError) as err:
        parse_query(cls, query, scene)
    assert err.value.code == "bad_request"
    return err.value.message


def test_clicks_become_elements_and_signs(mesh):
    q = parse_query(ISegQuery, {"clicks": [[3, 1], [np.int64(7), -1], [5.0, 1.0]]}, mesh)
    assert q.elements.dtype == torch.int64 and q.positive.dtype == torch.bool
    assert q.clicks() == [(3, 1), (7, -1), (5, 1)] and q.refine == "auto"
    arr = parse_query(WalkQuery, {"clicks": np.array([[3, 1], [7, -1]], dtype=np.int32)}, mesh)
    assert arr.clicks() == [(3, 1), (7, -1)]
    assert parse_query(WalkQuery, {"clicks": []}, mesh).clicks() == []


def test_iseg_refine_takes_auto_true_or_false_only(mesh):
    for refine in ("auto", True, False):
        got = parse_query(ISegQuery, {"clicks": [[0, 1]], "refine": refine}, mesh).refine
        assert got == refine and type(got) is type(refine)
    for refine in (1, 0, "yes", None, np.array([True, False]), np.ones((1000, 1000))):
        assert "refine" in _refused(ISegQuery, {"clicks": [[0, 1]], "refine": refine}, mesh)
    assert "'refine'" in _refused(WalkQuery, {"clicks": [[0, 1]], "refine": True}, mesh), "walk has no refine"


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ({"click": [[0, 1]]}, ["unknown", "'click'", '{"clicks": [[vertex, sign], ...]']),
        ({}, ['{"clicks"']),
        ([[0, 1]], ['{"clicks"']),
        ({"clicks": "0 1"}, ["list of [vertex, sign] pairs"]),
        ({"clicks": [[0, 1], [2]]}, ["click 1", "[2]"]),
        ({"clicks": [[0, 1, 1]]}, ["click 0"]),
        ({"clicks": [["0", 1]]}, ["click 0", "numbers"]),
        ({"clicks": [[True, 1]]}, ["click 0", "numbers"]),
        ({"clicks": [[0, 1], [1.5, 1]]}, ["click 1", "1.5", "vertex index"]),
        ({"clicks": [[-1, 1]]}, ["click 0", "-1"]),
        ({"clicks": [[float("nan"), 1]]}, ["click 0", "nan"]),
        ({"clicks": [[10**9, 1]]}, ["click 0", "1e+09", "0.."]),
        ({"clicks": [[0, 1], [0, 2]]}, ["click 1", "sign", "2"]),
        ({"clicks": [[0, 0]]}, ["click 0", "sign"]),
        ({"clicks": np.zeros((2, 3))}, ["(C, 2) array", "(2, 3)"]),
        ({"clicks": np.array(3.0)}, ["(C, 2) array", "()"]),
        ({"clicks": np.zeros(100_000)}, ["(C, 2) array", "(100000,)"]),
        ({"clicks": np.array([["a", "b"]])}, ["(C, 2) array"]),
    ],
)
def test_mistakes_are_bad_requests_naming_the_first_bad_click(mesh, query, words):
    message = _refused(ISegQuery, query, mesh)
    for word in words:
        assert word in message, (word, message)


def test_the_click_count_is_checked_before_any_click_is_read(mesh, points):
    assert (
        len(parse_query(SA3DQuery, {"clicks": [[i % 50, 1] for i in range(MAX_CLICKS)]}, points).clicks()) == MAX_CLICKS
    )
    garbage = [object()] * (MAX_CLICKS + 1)  # never looked at: the count alone refuses it
    assert f"at most {MAX_CLICKS} clicks, got {MAX_CLICKS + 1}" in _refused(ISegQuery, {"clicks": garbage}, mesh)
    bulk = np.zeros((100_000, 2))
    message = _refused(WalkQuery, {"clicks": bulk}, mesh)
    assert "100000" in message and len(message) < 200, "a bulk input is quoted by its length only"
    assert len(_refused(ISegQuery, {"clicks": [[0, 1]], **{f"k{i}": 1 for i in range(10_000)}}, mesh)) < 1_000


def test_the_element_is_named_by_the_scene_kind(points):
    assert "point index in 0..49" in _refused(SA3DQuery, {"clicks": [[50, 1]]}, points)


@pytest.mark.parametrize("name", ["iseg", "sa3d", "walk"])
def test_every_method_parses_its_query_before_reading_its_state(mesh, points, name):
    """The states hold only what each method checks first (sizes, format), no tensors: a query that got
    past the parser would fail on the missing tensors, not with a bad_request about the clicks."""
    scene = points if name == "sa3d" else mesh
    meta = {"n_vertices": scene.n_elements, "n_elements": scene.n_elements, "scene_kind": scene.kind}
    meta["format"] = get_method(name).state_format
    state = State(tensors={}, meta=meta)
    method = get_method(name)
    with pytest.raises(SegAnyError) as err:
        method.query(scene, state, {"clicks": [[0, 1]] * (MAX_CLICKS + 1)})
    assert err.value.code == "bad_request" and f"at most {MAX_CLICKS}" in err.value.message
    with pytest.raises(SegAnyError) as err:
        method.query(scene, state, {"clicks": [[0, 1]], "bogus": 1})
    assert err.value.code == "bad_request" and "'bogus'" in err.value.message


def test_query_keys_name_what_a_query_takes_besides_the_clicks():
    """The engine lists them per method; the add-on shows the scale slider where `scale` is one."""
    assert query_keys(ISegQuery) == ["refine"] and query_keys(SA3DQuery) == [] and query_keys(WalkQuery) == []
    assert query_keys(get_method("saga").Query) == ["scale"]
