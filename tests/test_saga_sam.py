"""SAGA trained from SAM's automatic masks (`--prior sam`), SAM's real vit_b architecture at random weights.

Random weights make the masks meaningless, so nothing here judges the answer's quality: what is checked is
that the engine builds the SAM prior from its options, SAGA's prepare takes SAM's three area levels of
masks per view, measures them in scene units and trains on them, and the state answers a click. One view
keeps it to one run of SAM's image encoder (about 16 s on a 2-core CPU).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from budgets import TINY
from sa3d_scenes import centre_element, splat_blobs
from segment_anything import sam_model_registry

from segany.engine import Engine

# thresholds 0: SAM at random weights scores its masks low, and the generator would drop every one
AUTO = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sam") / "random_vit_b.pth"
    torch.save(sam_model_registry["vit_b"](checkpoint=None).state_dict(), path)
    return path


def test_saga_prepares_from_sams_automatic_masks_and_answers(checkpoint: Path, tmp_path: Path) -> None:
    scene, labels = splat_blobs(tmp_path)
    engine = Engine(cache_dir=tmp_path / "cache", device="cpu", checkpoints={"sam": str(checkpoint)})
    try:
        sid = engine.add_scene(scene)
        done = engine.prepare(
            "saga", sid, prior="sam", options={**TINY, "views": 1}, prior_options={"auto_options": AUTO}
        )
        assert done["message"] == "prepared"
        state = engine.state("saga", sid, "sam")
        assert state.meta["masks"] > 0  # SAM's masks were measured (a NaN or empty mask is left out)
        lo, hi = state.meta["scale_range"]
        assert 0 < lo < hi and np.isfinite([lo, hi]).all()
        losses = state.meta["losses"]
        assert np.isfinite([losses["loss_first"], losses["loss_last"]]).all()
        assert torch.isfinite(state.tensors["features"].float()).all()
        click = centre_element(scene.means, labels, 0)
        sel = engine.query("saga", sid, {"clicks": [[click, 1]], "scale": "auto"}, "sam")
        assert sel.scores.shape == (scene.n_elements,) and sel.mask[click]
    finally:
        engine.close()
