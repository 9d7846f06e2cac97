"""iSeg end to end on the built-in stool (obvious parts) with the oracle prior and tiny sizes (CPU)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from budgets import tiny
from safetensors.torch import load_file, save_file

from segany.errors import SegAnyError
from segany.jobs import JobContext
from segany.methods import get_method
from segany.methods.base import State
from segany.methods.iseg.method import build_scorer
from segany.methods.iseg.options import ISegOptions
from segany.options import parse_options
from segany.priors import get_prior
from segany.samples import sample_mesh
from segany.scene import MeshScene, PointScene

# The CPU preset, shortened: enough training to tell the stool's parts apart, which "tiny" is not.
TRAINED = parse_options(ISegOptions, {
    "views": 8, "resolution": 80, "encoder_steps": 200, "encoder_pixels": 2048, "click_vertices": 40,
    "views_per_click": 2, "second_clicks": 1, "decoder_steps": 150, "decoder_pixels": 256,
})  # fmt: skip


@pytest.fixture(scope="module")
def vertex_part(stool: MeshScene) -> np.ndarray:
    part = np.zeros(len(stool.vertices), dtype=np.int64)
    part[stool.faces.ravel()] = np.repeat(stool.face_parts, 3)
    return part


@pytest.fixture(scope="module")
def prepared(stool: MeshScene):
    method = get_method("iseg")
    prior = get_prior("oracle", labels=stool.face_parts)
    return method, method.prepare(stool, prior, TRAINED, JobContext())


def _centre_vertex(stool: MeshScene, vertex_part: np.ndarray, part: int) -> int:
    """The vertex of a part closest to the part's centroid (a click in its middle)."""
    idx = np.flatnonzero(vertex_part == part)
    pts = stool.vertices[idx]
    return int(idx[np.argmin(np.linalg.norm(pts - pts.mean(axis=0), axis=1))])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.mark.parametrize("part", [0, 1, 2])
def test_a_click_selects_its_part(prepared, stool, vertex_part, part):
    method, state = prepared
    sel = method.query(stool, state, {"clicks": [[_centre_vertex(stool, vertex_part, part), 1]]})
    assert sel.scores.shape == (len(stool.vertices),) and sel.scores.dtype == np.float32
    assert sel.scores.min() >= 0.0 and sel.scores.max() <= 1.0
    gt = vertex_part == part
    assert (sel.mask & gt).sum() > 0.8 * sel.mask.sum()  # what it selects is that part
    assert _iou(sel.mask, gt) > 0.6


def test_negative_click_reduces_the_selection(prepared, stool, vertex_part):
    method, state = prepared
    seat, back = _centre_vertex(stool, vertex_part, 0), _centre_vertex(stool, vertex_part, 1)
    on_back = np.flatnonzero(vertex_part == 1)
    other_back = int(on_back[np.argmax(np.linalg.norm(stool.vertices[on_back] - stool.vertices[back], axis=1))])
    both = method.query(stool, state, {"clicks": [[seat, 1], [back, 1]]})
    assert _iou(both.mask, (vertex_part == 0) | (vertex_part == 1)) > 0.75
    cut = method.query(stool, state, {"clicks": [[seat, 1], [back, 1], [other_back, -1]]})
    assert cut.mask.sum() <= both.mask.sum()
    assert cut.scores[on_back].mean() < both.scores[on_back].mean()


def test_negative_click_on_vertex_zero_and_empty_clicks(prepared, stool):
    method, state = prepared
    only_neg = method.query(stool, state, {"clicks": [[0, -1]]})
    assert only_neg.scores.shape == (len(stool.vertices),) and np.isfinite(only_neg.scores).all()
    mixed = method.query(stool, state, {"clicks": [[5, 1], [0, -1]]})
    assert np.isfinite(mixed.scores).all()
    empty = method.query(stool, state, {"clicks": []})
    assert not empty.mask.any()


def test_state_round_trip_through_safetensors(prepared, stool, tmp_path: Path):
    method, state = prepared
    save_file(state.tensors, tmp_path / "state.safetensors")
    (tmp_path / "meta.json").write_text(json.dumps(state.meta))
    loaded = State(load_file(tmp_path / "state.safetensors"), json.loads((tmp_path / "meta.json").read_text()))
    query = {"clicks": [[11, 1], [700, -1], [1500, 1]]}
    fresh = get_method("iseg")
    assert np.array_equal(fresh.query(stool, loaded, query).scores, method.query(stool, state, query).scores)
    assert "encoder.fourier.matrix" in state.tensors and state.tensors["features"].shape[0] == len(stool.vertices)


@pytest.mark.parametrize(
    "query",
    [
        {"clicks": [[10**6, 1]]},
        {"clicks": [[-1, 1]]},
        {"clicks": [[1.5, 1]]},
        {"clicks": [[3, 2]]},
        {"clicks": [[3, 0]]},
        {"clicks": [[3]]},
        {"clicks": "3,1"},
        {"clicks": None},
        {"click": [[3, 1]]},
        [[3, 1]],
    ],
)
def test_bad_clicks_are_bad_requests(prepared, stool, query):
    method, state = prepared
    with pytest.raises(SegAnyError) as err:
        method.query(stool, state, query)
    assert err.value.code == "bad_request"


def test_query_on_another_mesh_says_not_prepared(prepared):
    method, state = prepared
    other = sample_mesh(max_edge=0.3)
    with pytest.raises(SegAnyError) as err:
        method.query(other, state, {"clicks": [[0, 1]]})
    assert err.value.code == "not_prepared"


def test_cancel_stops_prepare(stool):
    cancel = threading.Event()
    ctx = JobContext(on_progress=lambda f, msg: cancel.set() if "encoder" in msg else None, cancel_event=cancel)
    with pytest.raises(SegAnyError) as err:
        get_method("iseg").prepare(stool, get_prior("oracle", labels=stool.face_parts), TRAINED, ctx)
    assert err.value.code == "cancelled"


def test_bad_options_and_scene_kinds(stool):
    method = get_method("iseg")
    prior = get_prior("oracle", labels=stool.face_parts)
    for opts in ({"bogus": 1}, {"views": 0}, {"decoder": "huge"}, {"sigma": "5"}):
        with pytest.raises(SegAnyError) as err:
            tiny("iseg", **opts)
        assert err.value.code == "bad_request"
    points = PointScene(xyz=np.random.default_rng(0).random((10, 3)))
    with pytest.raises(SegAnyError) as err:
        method.prepare(points, prior, tiny("iseg"), JobContext())
    assert err.value.code == "unsupported"


def test_default_options_follow_the_device(stool):
    cpu, gpu = (parse_options(ISegOptions, preset=device, scene=stool) for device in ("cpu", "cuda"))
    assert cpu.decoder == gpu.decoder == "light"
    assert gpu.views > cpu.views and gpu.decoder_steps > cpu.decoder_steps


def test_one_member_unless_asked(stool, prepared):
    _, single = prepared
    assert single.meta["members"] == 1 and "member1.features" not in single.tensors
    with pytest.raises(SegAnyError) as err:
        tiny("iseg", members=0)
    assert err.value.code == "bad_request"


def test_an_ensemble_answers_with_its_members_mean(stool):
    """Two members (seeds 0 and 1 for the training, the same views): member 0 is the one-member prepare,
    bit for bit, and the clicks' probabilities a query starts from are the members' mean (what the query makes
    of them, click by click, is test_iseg_refine's). Tiny training: these hold for any length."""
    method = get_method("iseg")
    single = method.prepare(stool, get_prior("oracle", labels=stool.face_parts), tiny("iseg"), JobContext())
    pair = method.prepare(stool, get_prior("oracle", labels=stool.face_parts), tiny("iseg", members=2), JobContext())
    assert pair.meta["members"] == 2 and len(pair.meta["samples"]) == 2
    assert torch.equal(pair.tensors["features"], single.tensors["features"])
    assert not torch.equal(pair.tensors["member1.features"], pair.tensors["features"])
    member1 = {k[len("member1.") :]: v for k, v in pair.tensors.items() if k.startswith("member1.")}
    second = State({**single.tensors, **member1}, {**single.meta, "members": 1})
    clicked, positive = torch.tensor([11, 700]), torch.tensor([True, False])
    mean = (build_scorer(single)(clicked, positive) + build_scorer(second)(clicked, positive)) / 2
    torch.testing.assert_close(build_scorer(pair)(clicked, positive), mean, atol=1e-6, rtol=0)


def test_a_prepare_is_a_function_of_its_seed_not_of_the_global_rng(stool):
    """nn.Linear initialises from torch's global RNG; a prepare draws its networks from its own seed."""
    states = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        states.append(get_method("iseg").prepare(stool, get_prior("geometric"), tiny("iseg"), JobContext()))
    assert states[0].tensors.keys() == states[1].tensors.keys()
    assert all(torch.equal(states[0].tensors[k], states[1].tensors[k]) for k in states[0].tensors)
