"""The README's main job, `segany demo`, run as a user runs it: the CLI in a subprocess, its default options."""

import json
import subprocess
import sys

import numpy as np
from PIL import Image
from plyfile import PlyData


def test_the_demo_selects_the_clicked_leg_and_draws_it(tmp_path):
    """One click in the middle of a leg must select that leg (a loose cylinder of the sample stool). The
    default prepare is the one every new user runs; the timeout is only a guard against a hang."""
    out = tmp_path / "out"
    res = subprocess.run(
        [sys.executable, "-m", "segany.cli", "demo", "--out", str(out), "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prepare"]["status"] == "done"
    assert summary["vertex_iou_with_leg"] >= 0.9, summary
    scores = np.asarray(PlyData.read(str(out / "result.ply"))["vertex"]["score"])
    assert np.isfinite(scores).all() and 0 <= scores.min() <= scores.max() <= 1
    assert summary["selected_vertices"] == int((scores >= 0.5).sum())
    picture = np.asarray(Image.open(out / "result.png"))
    assert picture.shape[0] > 100 and picture.shape[1] == 4 * picture.shape[0]
    orange = (picture[..., 0] > 200) & (picture[..., 1] < 150) & (picture[..., 2] < 80)
    assert orange.sum() > 0, "the selection is drawn in the highlight colour"
