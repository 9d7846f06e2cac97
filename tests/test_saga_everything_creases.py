"""Segment everything's merge across boundaries that are no concave crease (`saga/boundaries.py`).

The surfaces are hand-made height fields: a flat sheet that folds into a valley (a concave crease, normals
up) along x = 0. Three feature clusters cover it: two patches of the flat side (split at x = −0.5, where
nothing bends) and the other side of the valley. The rule must join the flat patches and keep the valley.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh
from budgets import TINY

from segany.engine import Engine
from segany.errors import SegAnyError
from segany.eval.everything import humans_count, run_everything_eval
from segany.methods.base import UNSEEN
from segany.methods.saga import boundaries
from segany.methods.saga.boundaries import Creases, merge_smooth, scene_creases, settle
from segany.methods.saga.everything import parse_everything, segment_everything, settled_apart
from segany.samples import sample_mesh
from segany.scene import MeshScene, PointScene

STEPS = 41  # grid vertices per side over [-1, 1]²


def valley_height(x: np.ndarray, fold: float) -> np.ndarray:
    """Flat for x < 0, rising at slope `fold` for x > 0: a concave crease along x = 0 seen from above (+z);
    a negative fold makes it a convex ridge."""
    return np.where(x > 0, fold * x, 0.0)


def valley_mesh(fold: float = 1.0) -> MeshScene:
    """The valley as a triangulated grid (normals up)."""
    g = np.linspace(-1.0, 1.0, STEPS)
    x, y = np.meshgrid(g, g, indexing="ij")
    vertices = np.stack([x.ravel(), y.ravel(), valley_height(x.ravel(), fold)], axis=1)
    i, j = np.meshgrid(np.arange(STEPS - 1), np.arange(STEPS - 1), indexing="ij")
    a = (i * STEPS + j).ravel()
    b, c, d = a + STEPS, a + 1, a + STEPS + 1
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([c, b, d], 1)])  # counter-clockwise from above
    return MeshScene(vertices=vertices.astype(np.float32), faces=faces.astype(np.int32))


def valley_points(fold: float = 1.0, n: int = 4000, normals: bool = True) -> PointScene:
    """The valley as a scanned point cloud: uniform samples and their true (upward) normals."""
    rng = np.random.default_rng(0)
    xy = rng.uniform(-1.0, 1.0, (n, 2))
    z = valley_height(xy[:, 0], fold)
    up = np.where(xy[:, :1] > 0, np.array([[-fold, 0.0, 1.0]]), np.array([[0.0, 0.0, 1.0]]))
    up /= np.linalg.norm(up, axis=1, keepdims=True)
    xyz = np.column_stack([xy, z]).astype(np.float32)
    return PointScene(xyz=xyz, normals=up.astype(np.float32) if normals else None)


def regions(x: np.ndarray) -> np.ndarray:
    """0: the flat side's far patch, 1: its near patch, 2: the other side of the valley."""
    return np.where(x > 0, 2, np.where(x < -0.5, 0, 1))


def part_count(labels: np.ndarray) -> int:
    return len(np.unique(labels))


@pytest.mark.parametrize("scene", [valley_mesh(), valley_points()], ids=["mesh", "points"])
def test_a_flat_boundary_merges_and_a_valley_does_not(scene: MeshScene | PointScene) -> None:
    x = scene.vertices[:, 0] if isinstance(scene, MeshScene) else scene.xyz[:, 0]
    truth = regions(x)
    merged = merge_smooth(truth, scene_creases(scene))
    assert part_count(merged) == 2
    assert merged[truth == 0][0] == merged[truth == 1][0] != merged[truth == 2][0]


@pytest.mark.parametrize("scene", [valley_mesh(), valley_points()], ids=["mesh", "points"])
def test_a_part_count_merges_the_least_creased_boundary_first(scene: MeshScene | PointScene) -> None:
    x = scene.vertices[:, 0] if isinstance(scene, MeshScene) else scene.xyz[:, 0]
    truth = regions(x)
    creases = scene_creases(scene)
    assert part_count(merge_smooth(truth, creases, parts=3)) == 3  # already that many: nothing merges
    two = merge_smooth(truth, creases, parts=2)
    assert two[truth == 0][0] == two[truth == 1][0] != two[truth == 2][0]
    assert part_count(merge_smooth(truth, creases, parts=1)) == 1  # a count is met whatever the creases


def test_a_part_count_merges_a_small_patch_before_two_halves_that_meet_along_a_long_boundary() -> None:
    """A flat sheet (no crease anywhere): two halves and a small corner patch of the right half. Every
    boundary's share of creased pairs is zero, so only the normalized cut tells them apart: separating the
    patch from its half costs its whole small perimeter against its small area, the halves' long boundary
    much less against theirs. The patch is label 2 and the halves 0 and 1, so a tie would merge the halves."""
    mesh = valley_mesh(fold=0.0)
    x, y = mesh.vertices[:, 0], mesh.vertices[:, 1]
    labels = np.where(x < 0, 0, np.where((x > 0.6) & (y > 0.6), 2, 1))
    two = merge_smooth(labels, scene_creases(mesh), parts=2)
    assert part_count(two) == 2
    assert two[labels == 2][0] == two[labels == 1][0] != two[labels == 0][0]


def test_a_part_count_keeps_a_short_valley_and_merges_a_long_flat_boundary() -> None:
    """The valley's other side is cut into a long flat strip and the rest; the flat side is one part. Asked
    for two parts, the strip's flat boundary merges and the valley, as long, stays: its pairs' affinity
    exp(−crease) is nearly nil."""
    mesh = valley_mesh()
    x = mesh.vertices[:, 0]
    labels = np.where(x <= 0, 0, np.where(x < 0.5, 1, 2))
    two = merge_smooth(labels, scene_creases(mesh), parts=2)
    assert part_count(two) == 2
    assert two[labels == 1][0] == two[labels == 2][0] != two[labels == 0][0]


@pytest.mark.parametrize("offset", [0.15, -0.3], ids=["right", "left"])
@pytest.mark.parametrize("kind", ["mesh", "points"])
def test_settling_moves_a_boundary_onto_the_crease_beside_it(kind: str, offset: float) -> None:
    """Parts split 0.15 right or 0.3 left of the valley (3 or 6 grid columns): settled, the boundary runs
    along the crease (x = 0), give or take one spacing on the points, and stays there (at rest)."""
    scene = valley_mesh() if kind == "mesh" else valley_points()
    x = scene.vertices[:, 0] if kind == "mesh" else scene.xyz[:, 0]
    labels = (x > offset).astype(np.int64)
    labels[0] = UNSEEN  # an unseen element stays unseen and pulls no part
    walk = scene_creases(scene).walk
    settled = settle(labels, walk)
    assert settled[0] == UNSEEN
    rest = np.arange(len(x)) > 0
    near = 0.01 if kind == "mesh" else 0.05  # the points' spacing is about 0.03
    assert np.all(settled[rest & (x < -near)] == 0) and np.all(settled[rest & (x > near)] == 1)
    assert np.array_equal(boundaries._diffused(settled, walk), settled)  # one more round changes nothing


@pytest.mark.parametrize("kind", ["mesh", "points"])
def test_settling_gives_ground_no_crease_divides_to_the_part_that_holds_most_of_it(kind: str) -> None:
    """On the flat sheet a boundary has no crease to rest on: the larger part takes the whole sheet, as the
    automatic merge would. On the valley the flat side (x < 0) is held 30:20 by the part that also holds the
    other side; the smaller part, which no crease bounds, is absorbed, so a settled count may fall."""
    for fold, offset in ((0.0, 0.15), (1.0, -0.6)):
        scene = valley_mesh(fold) if kind == "mesh" else valley_points(fold)
        x = scene.vertices[:, 0] if kind == "mesh" else scene.xyz[:, 0]
        labels = (x > offset).astype(np.int64)
        larger = int(np.argmax(np.bincount(labels)))
        assert np.all(settle(labels, scene_creases(scene).walk) == larger)


@pytest.mark.parametrize("kind", ["mesh", "points"])
def test_a_convex_ridge_holds_a_settled_boundary_on_points_but_not_on_a_mesh(kind: str) -> None:
    """A mesh's face normals tell concave from convex exactly, so a mesh settles on concave creases only (the
    minima rule): the ridge holds nothing and the larger part takes the sheet. A point scene's normals are
    estimates, so it keeps the walk graph's weight (convex bends count a fifth): the ridge holds the boundary."""
    scene = valley_mesh(-1.0) if kind == "mesh" else valley_points(-1.0)
    x = scene.vertices[:, 0] if kind == "mesh" else scene.xyz[:, 0]
    labels = (x > 0.15).astype(np.int64)
    settled = settle(labels, scene_creases(scene).walk)
    if kind == "mesh":
        assert np.all(settled == 0)  # the flat-side part holds 58%
    else:
        assert np.all(settled[x < -0.05] == 0) and np.all(settled[x > 0.05] == 1)


def test_a_sampled_point_scene_carries_no_walk_graph_to_settle_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past MAX_NODES the crease graph holds a sample; a walk on it would settle only the sample, so none is
    built (a smaller cap stands in for 50,000 so the scene stays small)."""
    monkeypatch.setattr(boundaries, "MAX_NODES", 1000)
    creases = scene_creases(valley_points())
    assert len(creases.nodes) == 1000 and creases.walk is None
    assert scene_creases(valley_points(n=900)).walk is not None


def test_parts_on_two_loose_pieces_stop_where_no_boundary_is_left() -> None:
    mesh = valley_mesh(fold=0.0)  # flat
    labels = regions(mesh.vertices[:, 0])
    creases = scene_creases(mesh)
    loose = Creases(creases.nodes, creases.edges[:0], creases.crease[:0])
    assert part_count(merge_smooth(labels, loose, parts=1)) == 3  # no edge between them: nothing to merge
    assert part_count(merge_smooth(labels, creases)) == 1  # the flat sheet is one part


def test_points_without_normals_have_no_creases() -> None:
    assert scene_creases(valley_points(normals=False)) is None


def test_segment_everything_merges_the_flat_patches_of_the_features_clusters() -> None:
    mesh = valley_mesh()
    truth = regions(mesh.vertices[:, 0])
    rng = np.random.default_rng(1)
    features = np.eye(8, dtype=np.float32)[truth] + rng.normal(0, 0.05, (len(truth), 8)).astype(np.float32)
    alone, _ = segment_everything(features, sample=2000, min_cluster_size=20, seed=0)
    assert part_count(alone) == 3  # the features keep the flat patches apart (orthogonal)
    labels, colours = segment_everything(
        features, sample=2000, min_cluster_size=20, seed=0, creases=scene_creases(mesh)
    )
    assert sorted(np.unique(labels).tolist()) == [0, 1] and colours.shape == (2, 3)
    x = mesh.vertices[:, 0]  # the crease's own column (x = 0) may settle on either side
    assert len(np.unique(labels[x < -0.01])) == len(np.unique(labels[x > 0.01])) == 1
    assert labels[x < -0.01][0] != labels[x > 0.01][0]


def test_a_part_count_with_several_scales_is_refused() -> None:
    with pytest.raises(SegAnyError) as err:
        parse_everything({"scales": [0.1, 0.2], "parts": 3}, state=None)
    assert err.value.code == "bad_request" and "parts" in str(err.value)


def test_the_humans_count_is_the_most_common_count_of_their_segmentations() -> None:
    three, four = np.array([0, 1, 2, 2]), np.array([0, 1, 2, 3])
    assert humans_count([three, four, np.array([5, 9, 7, 7])]) == 3  # labels need not be 0..k-1
    assert humans_count([four, three]) == 3  # a tie: the smaller count


def test_the_eval_gives_each_shape_the_humans_count_and_says_so(tmp_path: Path) -> None:
    """The built-in stool in the PSB layout with three human segmentations: its primitives once and its legs
    merged twice, so the humans' count is the merged one's; SAGA (tiny preset) must make at most that many."""
    mesh = sample_mesh()
    data = tmp_path / "psb"
    (data / "off").mkdir(parents=True)
    (data / "seg" / "1").mkdir(parents=True)
    trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).export(data / "off" / "1.off")
    merged = np.minimum(mesh.face_parts, 2).astype(np.int64)
    for k, h in enumerate([mesh.face_parts.astype(np.int64), merged, merged]):
        np.savetxt(data / "seg" / "1" / f"1_{k}.seg", h, fmt="%d")
    engine = Engine(cache_dir=tmp_path / "cache", device="cpu")
    try:
        results = run_everything_eval(
            "saga", None, data, None, tmp_path / "out", engine, method_options=TINY, query_options={"parts": "humans"}
        )
    finally:
        engine.close()
    saga = results["shapes"][0]["methods"]["saga"]
    assert saga["given_parts"] == 3 and 1 <= saga["parts"] <= 3
    assert "Given the humans' part count" in (tmp_path / "out" / "report.md").read_text()


def test_a_settle_that_leaves_one_part_of_several_keeps_the_merged_parts() -> None:
    """On the flat sheet `settle` gives the larger part everything; in segment everything the merge has already
    decided what is one part, so a settle that would leave one part of two leaves the merged labels (a thinned
    splat capture, whose graph steps span the object, would otherwise always come out as one part)."""
    scene = valley_mesh(fold=0.0)
    walk = scene_creases(scene).walk
    labels = (scene.vertices[:, 0] > 0.15).astype(np.int64)
    assert part_count(settle(labels, walk)) == 1
    np.testing.assert_array_equal(settled_apart(labels, walk), labels)
    fold = valley_mesh()  # a valley holds the boundary: the settle stands
    labels = (fold.vertices[:, 0] > 0.15).astype(np.int64)
    creased = scene_creases(fold).walk
    np.testing.assert_array_equal(settled_apart(labels, creased), settle(labels, creased))
