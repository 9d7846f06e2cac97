"""SAS's per-element view evidence (capability.view_evidence, lift.py) and the oracle's per-view draws."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segany.cameras import cameras_for_scene
from segany.engine import Engine
from segany.eval.label import word_ious
from segany.methods.sas.capability import view_evidence
from segany.methods.sas.lift import lift_source
from segany.priors import get_prior
from segany.render import render
from segany.scene import MeshScene

NAMES = ["seat", "back", "leg", "leg", "leg", "leg", "ring"]  # sorted: back, leg, ring, seat; A weak on back, ring


def test_evidence_is_mean_agreement_to_the_power_of_the_views() -> None:
    # element 0: two views, the same unit word; 1: two views, orthogonal words half and half; 2: four views,
    # the same split; 3: no view
    e = np.eye(2, dtype=np.float64)
    credits = {0: [(e[0], 1.0), (e[0], 1.0)], 1: [(e[0], 1.0), (e[1], 1.0)], 2: [(e[0], 1.0), (e[1], 1.0)] * 2}
    length, credit, weight, weight_sq = (np.zeros(4) for _ in range(4))
    for i, views in credits.items():
        length[i] = np.linalg.norm(sum(w * v for v, w in views))
        credit[i] = sum(w * np.linalg.norm(v) for v, w in views)
        weight[i] = sum(w for _, w in views)
        weight_sq[i] = sum(w * w for _, w in views)
    got = view_evidence(length, credit, weight, weight_sq)
    assert got.dtype == np.float32
    # r = 1, n = 2; r = 1/√2, n = 2 → 1/2; the same split seen by four views counts more: (1/√2)^4 = 1/4
    np.testing.assert_allclose(got, [1.0, 0.5, 0.25, 0.0], rtol=1e-6)
    # a view that barely touches an element (weight 0.01) hardly adds to n: Kish's effective number
    lone = view_evidence(np.array([np.hypot(1.0, 0.01)]), np.array([1.01]), np.array([1.01]), np.array([1.0001]))
    assert lone[0] > 0.98  # r = 0.990, n = 1.02 (two equal views saying orthogonal words: 0.5)


def test_a_source_is_less_sure_where_it_confuses_a_part(stool: MeshScene) -> None:
    """Oracle A mistakes the back for the ring in about half of the views, B never: on the back A's views
    disagree and its evidence is low, B's is high; on the seat, which neither confuses, both are high."""
    renders = render(stool, cameras_for_scene(stool, 12, 48, 48), contributors=3)
    sample = np.arange(stool.n_elements)
    evidence = []
    for s in range(2):
        prior = get_prior(
            "oracle_text", labels=stool.face_parts, names=NAMES, confusion=0.5, noise=0.1, source=s, sources=2
        )
        lifted = lift_source(prior, renders, stool.n_elements, sample, dims=64, progress=lambda f, m: None)
        evidence.append(lifted.evidence)
        assert ((lifted.evidence >= 0) & (lifted.evidence <= 1)).all()
        assert (lifted.evidence[~lifted.seen] == 0).all()
    only = {
        p: np.setdiff1d(np.unique(stool.faces[stool.face_parts == p]), stool.faces[stool.face_parts != p])
        for p in (0, 1)
    }
    back = only[1][(evidence[0][only[1]] > 0) & (evidence[1][only[1]] > 0)]
    seat = only[0][(evidence[0][only[0]] > 0) & (evidence[1][only[0]] > 0)]
    assert len(back) > 10 and len(seat) > 10
    assert np.median(evidence[0][back]) < 0.5 * np.median(evidence[1][back])
    assert np.median(evidence[0][seat]) > 0.5 and np.median(evidence[1][seat]) > 0.5


def test_oracle_draws_per_view_not_per_batch_position(stool: MeshScene) -> None:
    """A view's confusions and noise are its own: the same view embedded alone or fifth in a batch gives the
    same map (they were seeded by the position in the batch, so views 0, 4, 8, … drew alike)."""
    views = render(stool, cameras_for_scene(stool, 8, 32, 32)).views
    prior = get_prior("oracle_text", labels=stool.face_parts, names=NAMES, confusion=0.5, noise=0.3, source=0)
    together = prior.embed(views)
    for i in (0, 4, 5):
        alone = type(views)(
            views.rgb[i : i + 1], views.depth[i : i + 1], views.normals[i : i + 1], views.ids[i : i + 1],
            views.cameras[i : i + 1], None,
        )  # fmt: skip
        np.testing.assert_array_equal(prior.embed(alone)[0], together[i])
    # and views that are 4 apart do not share their draws: the seat's embedding differs
    seat = [together[i][views.ids[i] >= 0][stool.face_parts[views.ids[i][views.ids[i] >= 0]] == 0] for i in (0, 4)]
    assert len(seat[0]) and len(seat[1])
    assert not np.allclose(seat[0][0], seat[1][0])


def test_view_evidence_mends_what_a_per_word_capability_cannot(stool: MeshScene, tmp_path: Path) -> None:
    """The mug's case on the stool: two names, each oracle weak on one (A takes the frame for the seat in 4 of
    5 views, B the seat for the frame). Every element's candidates are the same two words, so SAS's rule as
    published weighs the sources alike everywhere and one of them is wrong on a whole part; with each source's
    view evidence the one whose views agree at the element wins there. Same capability in both queries."""
    names = ["seat", "frame", "frame", "frame", "frame", "frame", "frame"]  # per face_parts value
    words = sorted(set(names))
    tri = stool.vertices[stool.faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    truth = np.searchsorted(words, np.asarray(names)[stool.face_parts])
    engine = Engine(cache_dir=tmp_path, device="cpu")
    try:
        sid = engine.add_scene(stool)
        popts = {"labels": stool.face_parts, "names": names, "confusion": 0.8, "noise": 0.3}
        engine.prepare("sas", sid, prior="oracle_text", options={"preset": "tiny", "views": 20}, prior_options=popts)
        got, capability = {}, {}
        for name, keys in {
            "a": {"source": "oracle_a"},
            "b": {"source": "oracle_b"},
            "sas": {"fusion": "sas"},
            "ours": {},
        }.items():
            query = {"words": words, "superpoints": False, "relevancy": True, **keys}
            sel = engine.query("sas", sid, query, prior="oracle_text")
            pred = sel.extras["relevancy"][stool.faces].mean(axis=1).argmax(axis=1)
            got[name] = float(word_ious(truth, pred, area, len(words)).mean())
            capability[name] = sel.extras["capability"]
    finally:
        engine.close()
    np.testing.assert_array_equal(capability["sas"], capability["ours"])
    assert got["ours"] > got["sas"] + 0.15, got  # 0.71 against 0.45
    assert got["ours"] > max(got["a"], got["b"]) + 0.15, got
