"""The walk method's seeded solve against the direct one: the same walks as `graphwalk.CreaseGraph`, and the
linear system itself against scipy's sparse solver."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from eval_shapes import tower_on_slab
from scipy.sparse.linalg import spsolve

from segany.eval.generate import points_from_mesh
from segany.graphwalk import FIRST_PULL, FOLLOW_PULL, SEED_WEIGHT, CreaseGraph
from segany.methods.walk.graph import knn_edges
from segany.methods.walk.solve import SeededCreaseGraph


def _graphs() -> list[tuple[CreaseGraph, SeededCreaseGraph]]:
    shape = tower_on_slab()
    v, f = shape.scene.vertices, shape.scene.faces
    points, _ = points_from_mesh(shape.scene, shape.labels, 2000, seed=5)
    edges, lengths = knn_edges(points.xyz)
    return [
        (CreaseGraph.for_mesh(v, f), SeededCreaseGraph.for_mesh(v, f)),
        (
            CreaseGraph.for_points(points.xyz, edges, lengths, points.normals),
            SeededCreaseGraph.for_points(points.xyz, edges, lengths, points.normals),
        ),
    ]


@pytest.mark.parametrize("which", [0, 1], ids=["mesh", "points"])
def test_seeded_walks_equal_the_direct_walks(which: int) -> None:
    direct, seeded = _graphs()[which]
    rng = np.random.default_rng(which)
    prior = rng.random(direct.n)
    for clicks in ([(3, 1)], [(3, 1), (40, -1)], [(3, 1), (40, -1), (100, 1), (3, -1)]):
        seed = direct.seeds(clicks)
        np.testing.assert_array_equal(seed, seeded.seeds(clicks))
        for p, gamma in ((0.0, FIRST_PULL), (0.5, FOLLOW_PULL), (prior, FIRST_PULL), (prior, FOLLOW_PULL)):
            np.testing.assert_allclose(seeded.walk(p, seed, gamma), direct.walk(p, seed, gamma), atol=1e-6)
        np.testing.assert_array_equal(seeded.first_region(seed), direct.first_region(seed))
        previous = direct.first_region(direct.seeds(clicks[:1]))
        np.testing.assert_array_equal(seeded.follow(previous, seed), direct.follow(previous, seed))
    no_seed = np.zeros(direct.n, dtype=np.int64)
    expected = direct.walk(prior, no_seed, FIRST_PULL)
    np.testing.assert_allclose(seeded.walk(prior, no_seed, FIRST_PULL), expected, atol=1e-9)


def test_the_factor_solves_the_seeded_system() -> None:
    _, graph = _graphs()[1]
    gamma = FOLLOW_PULL * graph.mean_degree
    beta = SEED_WEIGHT * graph.mean_degree
    factor = graph.factor(FOLLOW_PULL)
    rng = np.random.default_rng(7)
    rhs = rng.random(graph.n)
    nodes = np.array([5, 17, 300, 1999])
    target = np.array([1.0, 1.0, 0.0, 1.0])
    a = (graph.L + sp.identity(graph.n) * gamma).tocsc()
    np.testing.assert_allclose(factor.solve(rhs), spsolve(a, rhs), rtol=1e-9, atol=1e-12)
    seeded_a = a + sp.csc_matrix((np.full(4, beta), (nodes, nodes)), a.shape)
    seeded_rhs = rhs.copy()
    seeded_rhs[nodes] += beta * target
    np.testing.assert_allclose(factor.seeded(rhs, nodes, target, beta), spsolve(seeded_a, seeded_rhs), atol=1e-7)
