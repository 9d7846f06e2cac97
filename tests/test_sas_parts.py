"""SAS's pieces on hand-made inputs: the capability estimate, the 3D step, the oracle sources (the fusion rule:
test_sas_query.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segany.cameras import cameras_for_scene
from segany.kernels.labels import Neighbours, label_elements
from segany.methods.sas.capability import agreement
from segany.methods.sas.lift import RegionVotes, lift_source
from segany.methods.sas.spreading import element_graph, spreading
from segany.priors import get_prior
from segany.priors.oracle_text import word_code
from segany.render import render
from segany.scene import MeshScene


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


def _two_chains() -> tuple[torch.Tensor, torch.Tensor]:
    """Two chains of 20 elements joined by one weak edge (19, 20), as a concave crease makes it."""
    chain = [(i, i + 1) for i in range(19)]
    edges = torch.tensor(chain + [(a + 20, b + 20) for a, b in chain] + [(19, 20)], dtype=torch.int32)
    return edges, torch.cat([torch.ones(38), torch.tensor([1e-3])])


def _step_labels(scores: np.ndarray, op: Neighbours) -> np.ndarray:
    """The label query with the 3D step on hand-made scores (N, 2) of two words: features that are the scores
    (exact in fp16) against identity texts, a third column, the negative, at -1."""
    rows = np.concatenate([scores, -np.ones((len(scores), 1))], axis=1).astype(np.float16).view(np.int16)
    eye = np.eye(3, dtype=np.float32)[None]
    return label_elements(
        np.ascontiguousarray(rows), np.ones(len(rows), np.uint8), eye, 2, mode="source", spread=op
    ).labels


def test_spreading_mends_a_barely_seen_element_and_stops_at_a_weak_edge() -> None:
    """Word 0 on the first chain, word 1 on the second; element 5, barely seen, says word 1, element 30,
    seen as well as the rest, says word 1 too (right). Spreading turns 5 to word 0 and leaves every other label,
    and the chains barely mix across the weak edge."""
    edges, affinity = _two_chains()
    scores = np.zeros((40, 2))
    scores[:20, 0], scores[20:, 1] = 1.0, 1.0
    scores[5] = [0.0, 1.0]
    coverage = torch.ones(40)
    coverage[5] = 0.05
    op = spreading(edges, affinity, coverage)
    np.testing.assert_array_equal(_step_labels(scores, op), np.repeat([0, 1], 20))
    row = slice(op.indptr[19], op.indptr[20])
    p = dict(zip(op.indices[row].tolist(), op.weights[row], strict=True))
    assert p[20] < 1e-3 < p[18]
    # an element seen twice as well as the others keeps its own word where its neighbours disagree
    coverage[5] = 2.0
    assert _step_labels(scores, spreading(edges, affinity, coverage))[5] == 1


def test_spreading_fills_the_unseen_and_keeps_the_isolated() -> None:
    """An element no view saw (coverage 0) takes its neighbours' word; one without neighbours keeps its own."""
    edges = torch.tensor([[0, 1], [1, 2]], dtype=torch.int32)
    scores = np.array([[1.0, 0.0], [0.0, 0.25], [1.0, 0.0], [0.25, 0.75]])
    op = spreading(edges, torch.ones(2), torch.tensor([1.0, 0.0, 1.0, 0.5]))
    np.testing.assert_allclose(op.own, [1 / (1 + 2.5 / 3), 0.0, 1 / (1 + 2.5 / 3), 1.0], rtol=1e-6)  # mean seen 2.5/3
    np.testing.assert_array_equal(_step_labels(scores, op), [0, 0, 0, 1])


def test_spreading_operator_is_the_row_normalised_affinity_and_the_own_share() -> None:
    """The operator against its formula written densely, on a random graph with unseen and isolated elements:
    S = a S0 + (1 - a) P S0, P the row-normalised affinities, a = c / (c + mean c of the seen); 1 where isolated."""
    rng = np.random.default_rng(1)
    n = 60
    pairs = rng.integers(0, n - 5, (150, 2))  # the last 5 elements have no link
    pairs = np.unique(np.sort(pairs[pairs[:, 0] != pairs[:, 1]], axis=1), axis=0)
    weights = rng.uniform(0.01, 1.0, len(pairs))
    coverage = np.where(rng.random(n) < 0.2, 0.0, rng.uniform(0.1, 2.0, n))
    affinity = np.zeros((n, n))
    affinity[pairs[:, 0], pairs[:, 1]] = affinity[pairs[:, 1], pairs[:, 0]] = weights
    degree = affinity.sum(axis=1)
    own = np.where(degree > 0, coverage / (coverage + coverage[coverage > 0].mean()), 1.0)
    op = spreading(torch.as_tensor(pairs.astype(np.int32)), torch.as_tensor(weights.astype(np.float32)),
                   torch.as_tensor(coverage.astype(np.float32)))  # fmt: skip
    p = np.zeros((n, n))
    p[np.repeat(np.arange(n), np.diff(op.indptr)), op.indices] = op.weights
    np.testing.assert_allclose(p, affinity / np.maximum(degree, 1e-30)[:, None], rtol=1e-6)
    np.testing.assert_allclose(op.own, own, rtol=1e-6)
    assert (op.own[-5:] == 1.0).all()


def _valley(depth: float) -> MeshScene:
    """A 9 × 5 grid folded along u = 0 into a V of the given depth, normals up: concave along the fold."""
    u, y = np.meshgrid(np.linspace(-1, 1, 9), np.linspace(0, 1, 5), indexing="ij")
    vertices = np.stack([u, y, depth * np.abs(u)], axis=-1).reshape(-1, 3)
    idx = np.arange(45).reshape(9, 5)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    return MeshScene(vertices, np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)]))


def test_element_graph_links_mesh_vertices_weaker_across_a_concave_crease() -> None:
    """The walk's concave-crease weights carry over to the vertex graph: folded into a valley, the links
    between the two sides are far weaker than the same links on the flat sheet, and than links within a side."""
    flat_edges, flat = element_graph(_valley(0.0))
    edges, folded = element_graph(_valley(1.0))
    assert edges.dtype == np.int32 and folded.dtype == np.float32 and (edges[:, 0] < edges[:, 1]).all()
    np.testing.assert_array_equal(edges, flat_edges)
    side = np.sign(_valley(0.0).vertices[:, 0])
    across = side[edges[:, 0]] * side[edges[:, 1]] < 0
    within = (side[edges[:, 0]] == side[edges[:, 1]]) & (np.abs(_valley(0.0).vertices[edges, 0]) > 0.3).all(axis=1)
    assert across.any() and within.any()
    assert (folded[across] < 0.5 * flat[across]).all()
    assert folded[across].max() < 0.5 * np.median(folded[within])


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
