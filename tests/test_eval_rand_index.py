"""The benchmark's Rand Index on hand-made cases, against brute-force pair counting, and on the PSB loader."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from segany.errors import SegAnyError
from segany.eval.data import load_psb_humans
from segany.eval.rand_index import rand_index, rand_index_error

PSB = Path("/work/shared/data/psb")


def brute_force(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> float:
    agree = total = 0.0
    for i, j in combinations(range(len(a)), 2):
        total += w[i] * w[j]
        agree += w[i] * w[j] * ((a[i] == a[j]) == (b[i] == b[j]))
    return agree / total


def test_identical_and_relabelled_segmentations_have_zero_error() -> None:
    a = np.array([0, 0, 1, 1, 2, 5])
    assert rand_index(a, a) == 1.0
    assert rand_index_error(a, [np.array([7, 7, 3, 3, -1, 4])]) == 0.0


def test_one_segment_against_all_distinct_by_hand() -> None:
    # 4 faces: every one of the C(4,2) = 6 pairs is together in one and apart in the other → RI 0.
    assert rand_index(np.zeros(4, dtype=int), np.arange(4)) == 0.0
    # [0,0,1,1] vs one segment: only the 2 pairs inside a segment agree, of 6 → RI 1/3.
    assert rand_index(np.array([0, 0, 1, 1]), np.zeros(4, dtype=int)) == pytest.approx(1 / 3)


def test_weights_change_it_as_computed_by_hand() -> None:
    a, b = np.array([0, 0, 1]), np.array([0, 1, 1])
    # Pairs (0,1) disagree, (0,2) agree (apart in both), (1,2) disagree: unweighted RI = 1/3.
    assert rand_index(a, b) == pytest.approx(1 / 3)
    # Weights 1, 1, 2: pair weights 1, 2, 2 → agreement 2 / 5.
    assert rand_index(a, b, weights=np.array([1.0, 1.0, 2.0])) == pytest.approx(2 / 5)


def test_error_is_the_mean_over_humans() -> None:
    pred = np.array([0, 0, 1, 1])
    humans = [np.array([0, 0, 1, 1]), np.zeros(4, dtype=int)]
    assert rand_index_error(pred, humans) == pytest.approx((0.0 + 2 / 3) / 2)


@pytest.mark.parametrize("seed", range(20))
def test_agrees_with_brute_force_pairs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 30))
    a = rng.integers(0, int(rng.integers(1, 6)), n)
    b = rng.integers(-3, int(rng.integers(-2, 8)), n)
    w = rng.uniform(0.0, 3.0, n) if seed % 2 else np.ones(n)
    assert rand_index(a, b, w) == pytest.approx(brute_force(a, b, w), abs=1e-12)


def test_bad_inputs_are_clear_errors() -> None:
    with pytest.raises(SegAnyError, match="differ in length") as exc:
        rand_index(np.zeros(3, dtype=int), np.zeros(4, dtype=int))
    assert exc.value.code == "invalid_array"
    with pytest.raises(SegAnyError, match="integer"):
        rand_index(np.zeros(3), np.zeros(3, dtype=int))
    with pytest.raises(SegAnyError, match="two faces"):
        rand_index(np.zeros(1, dtype=int), np.zeros(1, dtype=int))
    with pytest.raises(SegAnyError, match="one value per face"):
        rand_index(np.zeros(3, dtype=int), np.zeros(3, dtype=int), weights=np.ones(2))
    with pytest.raises(SegAnyError, match="non-negative"):
        rand_index(np.zeros(3, dtype=int), np.zeros(3, dtype=int), weights=np.array([1.0, np.nan, 1.0]))
    with pytest.raises(SegAnyError, match="human"):
        rand_index_error(np.zeros(3, dtype=int), [])


def test_loads_every_human_segmentation_of_a_psb_shape(tmp_path: Path) -> None:
    seg = tmp_path / "seg" / "7"
    seg.mkdir(parents=True)
    for k, labels in enumerate([[0, 0, 1], [0, 1, 2], [1, 1, 1]] + [[2, 2, 2]] * 8):
        (seg / f"7_{k}.seg").write_text("\n".join(map(str, labels)) + "\n")
    humans = load_psb_humans(tmp_path, "7", n_faces=3)
    assert len(humans) == 11
    assert humans[1].tolist() == [0, 1, 2] and humans[10].tolist() == [2, 2, 2]  # numeric, not "10" < "2"
    with pytest.raises(SegAnyError, match="2 faces") as exc:
        load_psb_humans(tmp_path, "7", n_faces=2)
    assert exc.value.code == "corrupt_file"
    with pytest.raises(SegAnyError) as exc:
        load_psb_humans(tmp_path, "8", n_faces=3)
    assert exc.value.code == "not_found"


@pytest.mark.skipif(not PSB.is_dir(), reason="the shared PSB subset is not on this machine")
def test_humans_on_the_shared_psb_agree_more_with_each_other_than_with_one_segment() -> None:
    import trimesh

    mesh = trimesh.load(PSB / "off" / "1.off", file_type="off", process=False)
    humans = load_psb_humans(PSB, "1", n_faces=len(mesh.faces))
    assert len(humans) >= 2
    between_humans = rand_index_error(humans[0], humans[1:], weights=mesh.area_faces)
    one_segment = rand_index_error(np.zeros(len(mesh.faces), dtype=np.int64), humans, weights=mesh.area_faces)
    assert between_humans < one_segment
