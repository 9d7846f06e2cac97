"""Segment everything: HDBSCAN on a subsample, every element to its nearest centroid, scored by the Rand Index."""

from __future__ import annotations

import numpy as np
import pytest

from segany.errors import SegAnyError
from segany.eval.rand_index import rand_index
from segany.methods.saga.everything import UNSEEN, cluster_colours, hierarchy, segment_everything


def blobs(n_per: int, seed: int = 0, dim: int = 16, spread: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated Gaussian clusters around orthogonal directions (SAGA's features compare by cosine)."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(3), n_per)
    centres = np.eye(dim, dtype=np.float32)[:3] * 2.0
    x = centres[truth] + rng.normal(0.0, spread, (len(truth), dim)).astype(np.float32)
    order = rng.permutation(len(truth))
    return x[order], truth[order]


def test_three_separated_clusters_are_recovered_exactly() -> None:
    x, truth = blobs(400)
    labels, colours = segment_everything(x, sample=600, min_cluster_size=20, seed=0)
    assert labels.shape == truth.shape and labels.dtype == np.int64
    assert sorted(np.unique(labels).tolist()) == [0, 1, 2]
    assert rand_index(labels, truth) == 1.0
    assert colours.shape == (3, 3) and len({tuple(c) for c in colours.tolist()}) == 3


@pytest.mark.parametrize("sample", [150, 400, 5000])
def test_subsample_size_does_not_change_the_result(sample: int) -> None:
    x, truth = blobs(400, seed=1)
    labels, _ = segment_everything(x, sample=sample, min_cluster_size=20, seed=3)
    assert rand_index(labels, truth) == 1.0


def test_same_seed_same_labels() -> None:
    x, _ = blobs(300, seed=2, spread=0.4)  # overlapping enough that the subsample matters
    first, _ = segment_everything(x, sample=200, min_cluster_size=10, seed=7)
    again, _ = segment_everything(x, sample=200, min_cluster_size=10, seed=7)
    np.testing.assert_array_equal(first, again)


def test_labels_are_largest_part_first() -> None:
    x, truth = blobs(300, seed=4)
    keep = (truth != 2) | (np.arange(len(truth)) % 3 == 0)  # cluster 2 shrinks to a third
    labels, _ = segment_everything(x[keep], sample=1000, min_cluster_size=20, seed=0)
    counts = np.bincount(labels)
    assert counts.tolist() == sorted(counts.tolist(), reverse=True)
    assert counts[2] == np.sum(truth[keep] == 2) < 300


def test_zero_features_are_unseen_and_the_rest_still_clusters() -> None:
    x, truth = blobs(200, seed=5)
    x[:10] = 0.0
    labels, colours = segment_everything(x, sample=1000, min_cluster_size=20, seed=0)
    assert (labels[:10] == UNSEEN).all() and (labels[10:] >= 0).all()
    assert rand_index(labels[10:], truth[10:]) == 1.0
    assert len(colours) == 3


def test_nothing_to_split_gives_one_part() -> None:
    identical = np.tile(np.array([[0.3, -1.0, 2.0]], dtype=np.float32), (50, 1))
    labels, colours = segment_everything(identical, sample=50, min_cluster_size=5, seed=0)
    assert (labels == 0).all() and colours.shape == (1, 3)
    for n in (3, 5):  # fewer than min_cluster_size, and exactly that many (HDBSCAN calls it all noise)
        few = np.random.default_rng(n).normal(size=(n, 8))
        labels, _ = segment_everything(few, sample=10, min_cluster_size=5, seed=0)
        assert (labels == 0).all()


def test_bad_inputs_are_clear_errors() -> None:
    x, _ = blobs(20)
    x[3, 2] = np.nan
    with pytest.raises(SegAnyError, match="NaN") as exc:
        segment_everything(x, sample=60, min_cluster_size=5, seed=0)
    assert exc.value.code == "invalid_array"
    with pytest.raises(SegAnyError, match="every feature is zero"):
        segment_everything(np.zeros((10, 4)), sample=10, min_cluster_size=5, seed=0)
    for bad in (np.zeros((0, 4)), np.zeros(5), np.array([["a", "b"]])):
        with pytest.raises(SegAnyError) as exc:
            segment_everything(bad, sample=10, min_cluster_size=5, seed=0)
        assert exc.value.code == "invalid_array"
    with pytest.raises(SegAnyError, match="min_cluster_size") as exc:
        segment_everything(blobs(20)[0], sample=10, min_cluster_size=1, seed=0)
    assert exc.value.code == "bad_request"
    with pytest.raises(SegAnyError, match="sample"):
        segment_everything(blobs(20)[0], sample=4, min_cluster_size=5, seed=0)


def test_hierarchy_nests_fine_parts_in_coarse_ones() -> None:
    fine, fine_truth = blobs(150, seed=6)
    coarse = fine.copy()
    coarse[fine_truth < 2, :2] = 1.4  # at the coarse scale parts 0 and 1 share one direction
    coarse_truth = (fine_truth == 2).astype(np.int64)
    levels = hierarchy([coarse, fine], sample=1000, min_cluster_size=20, seed=0)
    assert rand_index(levels[0], coarse_truth) == 1.0
    assert rand_index(levels[1], fine_truth) == 1.0
    for part in np.unique(levels[1]):
        assert len(np.unique(levels[0][levels[1] == part])) == 1


def test_colours_are_distinct_and_in_range() -> None:
    colours = cluster_colours(50)
    assert colours.shape == (50, 3) and colours.min() >= 0.0 and colours.max() <= 1.0
    assert len({tuple(np.round(c, 4)) for c in colours.tolist()}) == 50


def test_many_near_orthogonal_parts_are_all_found() -> None:
    """SAGA trains different parts towards orthogonal features, so k parts span about k − 1 directions: the
    reduction HDBSCAN runs on must keep them all (a fixed 8 components merged 12 such clusters into 10)."""
    rng = np.random.default_rng(6)
    truth = np.repeat(np.arange(12), 200)
    x = np.eye(32, dtype=np.float32)[truth] + rng.normal(0.0, 0.1, (len(truth), 32)).astype(np.float32)
    labels, colours = segment_everything(x, sample=5000, min_cluster_size=20, seed=0)
    assert len(colours) == 12 and rand_index(labels, truth) == 1.0


def test_renumbering_by_size_is_the_same_for_dense_and_sparse_labels() -> None:
    from segany.methods.saga.everything import _by_size

    dense = np.array([3, 3, 0, 7, 7, 7, 0, 3, 3])
    sparse = dense * 10**9  # past the dense path's bound: counted by np.unique
    expected = [0, 0, 2, 1, 1, 1, 2, 0, 0]  # 3 holds four, 7 three, 0 two
    np.testing.assert_array_equal(_by_size(dense), expected)
    np.testing.assert_array_equal(_by_size(sparse), expected)


def test_clusters_a_click_would_join_are_one_part() -> None:
    """HDBSCAN splits two tight clusters whose directions are 37° apart (cosine 0.8): a click on one at this
    scale would select the other (THRESHOLD 0.5), so they are one part; a third at 90° stays apart."""
    rng = np.random.default_rng(8)
    truth = np.repeat(np.arange(3), 300)
    centres = np.zeros((3, 16), dtype=np.float32)
    centres[0, 0], centres[1, :2], centres[2, 2] = 1.0, (0.8, 0.6), 1.0
    x = centres[truth] + rng.normal(0.0, 0.02, (len(truth), 16)).astype(np.float32)
    labels, colours = segment_everything(x, sample=900, min_cluster_size=20, seed=0)
    assert len(colours) == 2 and rand_index(labels, (truth == 2).astype(np.int64)) == 1.0


def test_merging_stops_at_the_click_threshold() -> None:
    """Cosine 0.4 between two tight clusters is below the click threshold: they stay two parts."""
    from segany.methods.saga.everything import _merge_alike

    a = np.array([1.0, 0.0], dtype=np.float32)
    b = np.array([0.4, np.sqrt(1 - 0.16)], dtype=np.float32)
    assert _merge_alike(np.stack([a, b]), np.array([10.0, 10.0])).tolist() == [0, 1]
    c = np.array([0.6, 0.8], dtype=np.float32)  # 0.6 to a: joins it
    assert _merge_alike(np.stack([a, c]), np.array([10.0, 10.0])).tolist() == [0, 0]
