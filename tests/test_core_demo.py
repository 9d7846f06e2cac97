"""The README's main job (`segany demo`) end to end through the Engine, with small iSeg sizes."""

import json

import numpy as np
from PIL import Image
from plyfile import PlyData

from segany.cli import run_prepare
from segany.demo import run_demo
from segany.engine import Engine

SMALL = {"views": 8, "resolution": 96, "encoder_steps": 200, "click_vertices": 40, "decoder_steps": 150}


def test_demo_writes_a_scored_ply_a_picture_and_a_summary(tmp_path):
    engine = Engine(cache_dir=tmp_path / "cache")
    paths = run_demo(engine, tmp_path / "out", prepare=run_prepare, options=SMALL)
    engine.close()
    vertex = PlyData.read(str(paths["ply"]))["vertex"]
    scores = np.asarray(vertex["score"])
    assert len(scores) > 10_000 and np.isfinite(scores).all() and 0 <= scores.min() <= scores.max() <= 1
    picture = np.asarray(Image.open(paths["png"]))
    assert picture.shape[0] > 100 and picture.shape[1] == 4 * picture.shape[0]
    orange = (picture[..., 0] > 200) & (picture[..., 1] < 150) & (picture[..., 2] < 80)
    summary = json.loads(paths["summary"].read_text())
    assert summary["prepare"]["status"] == "done" and summary["selected_vertices"] == int((scores >= 0.5).sum())
    assert summary["selected_vertices"] > 0 and orange.sum() > 0, "the selection is drawn in the highlight colour"
