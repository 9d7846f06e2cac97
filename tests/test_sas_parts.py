"""SAS's pieces on hand-made inputs: the fusion rule, the capability estimate, superpoints, the oracle sources."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segany.cameras import cameras_for_scene
from segany.methods.sas.capability import agreement
from segany.methods.sas.fusion import average, fuse
from segany.methods.sas.lift import RegionVotes, lift_source
from segany.methods.sas.superpoints import segment_graph, smooth
from segany.priors import get_prior
from segany.priors.oracle_text import word_code
from segany.render import render
from segany.scene import MeshScene


def test_fusion_follows_sas_rule() -> None:
    """Two sources, two words: A says word 1, B says word 0 at the element. A's weight is its capability
    for both candidates (0.2 + 0.1), B's (0.9 + 0.8); normalised and sharpened at T = 0.05, B dominates."""
    a = torch.tensor([[0.2, 0.9]])
    b = torch.tensor([[0.8, 0.3]])
    cap = torch.tensor([[0.1, 0.2], [0.9, 0.8]])
    seen = [torch.tensor([True]), torch.tensor([True])]
    fused = fuse([a, b], seen, cap, n_words=2, temperature=0.05)
    wa, wb = 0.3 / 2.0, 1.7 / 2.0
    soft = torch.softmax(torch.tensor([wa, wb]) / 0.05, dim=0)
    torch.testing.assert_close(fused, soft[0] * a + soft[1] * b)
    assert fused.argmax().item() == 0
    # a high temperature is the plain average
    torch.testing.assert_close(fuse([a, b], seen, cap, 2, 1e6), average([a, b], seen))


def test_fusion_skips_a_source_that_did_not_see_the_element() -> None:
    a, b = torch.tensor([[0.9, 0.1], [0.0, 0.0]]), torch.tensor([[0.1, 0.9], [0.2, 0.7]])
    cap = torch.tensor([[0.1, 0.1], [1.0, 1.0]])  # B is better everywhere
    seen = [torch.tensor([True, False]), torch.tensor([True, True])]
    fused = fuse([a, b], seen, cap, 2, 0.05)
    torch.testing.assert_close(fused[1], b[1])  # only B saw element 1
    nobody = fuse([a, b], [torch.tensor([False, False])] * 2, cap, 2, 0.05)
    assert torch.equal(nobody, torch.zeros_like(nobody))
    torch.testing.assert_close(average([a, b], seen)[1], b[1])


def test_capability_is_iou_of_view_labels_with_consensus() -> None:
    # three sampled elements, each credited by two regions of weight 1; regions say words [0, 1, 0, 0, 1, 1]
    votes = RegionVotes(
        element=np.array([0, 0, 1, 1, 2, 2], dtype=np.int32),
        region=np.arange(6, dtype=np.int32),
        weight=np.ones(6, dtype=np.float32),
        embeddings=np.zeros((6, 2), dtype=np.float32),
    )
    said = np.array([0, 1, 0, 0, 1, 1])
    consensus = np.array([0, 0, 1])
    cap = agreement(votes, consensus, said, 2)
    # word 0: said on credits {0, 2, 3}, consensus on credits {0, 1, 2, 3}: IoU 3/4; word 1: {1, 4, 5} vs {4, 5}
    np.testing.assert_allclose(cap, [3 / 4, 2 / 3])
    unseen = agreement(votes, np.array([-1, -1, -1]), said, 3)
    np.testing.assert_allclose(unseen, [0.0, 0.0, 0.0])


def test_superpoints_follow_weak_edges_and_smooth_within() -> None:
    """Two chains of 20 nodes joined by one weak edge split there; smoothing averages within each."""
    chain = [(i, i + 1) for i in range(19)]
    edges = np.array(chain + [(a + 20, b + 20) for a, b in chain] + [(19, 20)])
    affinity = np.r_[np.ones(38), 1e-3]
    labels = segment_graph(40, edges, affinity, target=20)
    assert len(np.unique(labels[:20])) == 1 and len(np.unique(labels[20:])) == 1 and labels[0] != labels[39]
    scores = torch.arange(40, dtype=torch.float32)[:, None]
    out = smooth(scores, torch.as_tensor(labels), torch.ones(40))
    torch.testing.assert_close(out[:20, 0], torch.full((20,), 9.5))
    torch.testing.assert_close(out[20:, 0], torch.full((20,), 29.5))


def test_oracle_sources_have_complementary_weaknesses(stool: MeshScene) -> None:
    names = ["seat", "back", "leg", "leg", "leg", "leg", "ring"]  # sorted: back, leg, ring, seat
    prior = get_prior("oracle_text", labels=stool.face_parts, names=names, confusion=1.0, noise=0.0)
    sources = prior.text_sources()
    assert list(sources) == ["oracle_a", "oracle_b"]
    views = render(stool, cameras_for_scene(stool, 2, 48, 48)).views
    part = np.where(views.ids >= 0, stool.face_parts[np.maximum(views.ids, 0)], -1)
    code = {w: word_code(w, 64) for w in ("back", "leg", "ring", "seat")}
    a, b = sources["oracle_a"].embed(views), sources["oracle_b"].embed(views)
    # A is weak on back and ring (it swaps them), B on leg and seat (likewise); each is right on the other's share
    np.testing.assert_allclose(a[part == 1], np.broadcast_to(code["ring"], a[part == 1].shape), atol=1e-6)
    np.testing.assert_allclose(a[part == 0], np.broadcast_to(code["seat"], a[part == 0].shape), atol=1e-6)
    np.testing.assert_allclose(b[part == 0], np.broadcast_to(code["leg"], b[part == 0].shape), atol=1e-6)
    np.testing.assert_allclose(b[part == 6], np.broadcast_to(code["ring"], b[part == 6].shape), atol=1e-6)
    assert (a[part < 0] == 0).all()  # background: no opinion
    np.testing.assert_allclose(prior.embed_text(["seat"])[0], code["seat"])


def test_registration_weights_each_view_by_blend_weight(stool: MeshScene) -> None:
    """With a noiseless oracle every vertex of the seat lifts to the seat's code exactly, and a vertex
    that no view shows lifts to nothing."""
    names = ["seat", "back", "leg", "leg", "leg", "leg", "ring"]
    prior = get_prior("oracle_text", labels=stool.face_parts, names=names, confusion=0.0, noise=0.0, source=0)
    renders = render(stool, cameras_for_scene(stool, 4, 48, 48), contributors=3)
    sample = np.arange(stool.n_elements)
    lifted = lift_source(prior, renders, stool.n_elements, sample, dims=64, progress=lambda f, m: None)
    seat_only = np.setdiff1d(np.unique(stool.faces[stool.face_parts == 0]), stool.faces[stool.face_parts != 0])
    seen_seat = seat_only[lifted.seen[seat_only]]
    assert len(seen_seat) > 10
    got = lifted.features[seen_seat] @ lifted.basis
    np.testing.assert_allclose(got, np.broadcast_to(word_code("seat", 64), got.shape), atol=1e-4)
    shown = np.unique(renders.contrib_ids[renders.contrib_ids >= 0])
    assert not lifted.seen[np.setdiff1d(np.arange(stool.n_elements), shown)].any()


@pytest.mark.parametrize("dims", [8, 64])
def test_compression_keeps_the_scores(stool: MeshScene, dims: int) -> None:
    """Few components keep the cosine with text of what was lifted when the text's words were seen."""
    names = ["seat", "back", "leg", "leg", "leg", "leg", "ring"]
    prior = get_prior("oracle_text", labels=stool.face_parts, names=names, confusion=0.0, noise=0.0, source=0)
    renders = render(stool, cameras_for_scene(stool, 4, 48, 48), contributors=3)
    lifted = lift_source(prior, renders, stool.n_elements, np.arange(10), dims=dims, progress=lambda f, m: None)
    assert lifted.features.shape[1] == min(dims, 64)
    text = prior.embed_text(["seat", "leg"]) @ lifted.basis.T
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    seat_only = np.setdiff1d(np.unique(stool.faces[stool.face_parts == 0]), stool.faces[stool.face_parts != 0])
    seen = seat_only[lifted.seen[seat_only]]
    assert ((lifted.features[seen] @ text.T).argmax(axis=1) == 0).all()
