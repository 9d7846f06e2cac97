"""Metrics and target selection on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from segany.eval.metrics import iou, mean_curve, noc, summarize
from segany.eval.targets import select_targets


def test_iou_is_area_weighted() -> None:
    gt = np.array([True, True, False, False])
    pred = np.array([True, False, True, False])
    assert iou(gt, pred, np.ones(4)) == pytest.approx(1 / 3)
    # the shared face is large, the two wrong ones are small: IoU follows the area, not the count
    assert iou(gt, pred, np.array([8.0, 1.0, 1.0, 5.0])) == pytest.approx(0.8)
    assert iou(gt, gt, np.array([8.0, 1.0, 1.0, 5.0])) == 1.0
    assert iou(gt, ~gt, np.ones(4)) == 0.0
    empty = np.zeros(4, dtype=bool)
    assert iou(empty, empty, np.ones(4)) == 1.0


def test_noc_first_click_reaching_threshold_and_cap() -> None:
    curve = [0.5, 0.79, 0.8, 0.86, 0.84, 0.95]
    assert noc(curve, 80, cap=20) == 3
    assert noc(curve, 85, cap=20) == 4
    assert noc(curve, 90, cap=20) == 6
    assert noc([0.1, 0.2, 0.3], 90, cap=20) == 20  # never reached: the cap, not the curve length
    assert noc([0.9], 90, cap=20) == 1


def test_summary_of_curves() -> None:
    curves = [[1.0, 1.0, 1.0, 1.0, 1.0], [0.0, 0.5, 0.6, 0.85, 0.9]]
    s = summarize(curves, cap=5)
    assert s["miou@1"] == pytest.approx(50.0)
    assert s["miou@3"] == pytest.approx(80.0)
    assert s["miou@5"] == pytest.approx(95.0)
    assert s["noc@80"] == pytest.approx((1 + 4) / 2)
    assert s["noc@90"] == pytest.approx((1 + 5) / 2)
    assert summarize([[0.2, 0.3]], cap=2)["miou@5"] == pytest.approx(30.0)  # budget < 5 keeps the last IoU
    assert mean_curve(curves) == pytest.approx([50.0, 75.0, 80.0, 92.5, 95.0])


def test_targets_two_percent_largest_first_at_most_eight() -> None:
    labels = np.repeat(np.arange(12), 1)
    weights = np.array([30, 1, 20, 5, 5, 4, 3, 3, 3, 3, 2.5, 1.5], dtype=float)  # total 81
    targets = select_targets(labels, weights)
    assert [t.label for t in targets] == [0, 2, 3, 4, 5, 6, 7, 8]  # 10 qualify; ties by label; cap 8
    assert targets[0].fraction == pytest.approx(30 / 81)
    assert all(t.fraction >= 0.02 for t in targets)
    assert 1 not in [t.label for t in targets] and 11 not in [t.label for t in targets]  # < 2 %
    assert targets[1].mask.tolist() == (labels == 2).tolist()
