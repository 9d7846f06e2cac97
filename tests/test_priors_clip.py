"""ClipPrior code paths with random weights in a tiny open_clip ViT (same classes as ViT-B-16, offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

from segany.cameras import cameras_for_scene
from segany.errors import SegAnyError
from segany.priors import PriorContext, get_prior
from segany.priors.clip import ClipPrior, masked_crop
from segany.render import render
from segany.samples import sample_mesh
from tests.clip_tiny import TINY_NAME, tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def views():
    scene = sample_mesh()
    return render(scene, cameras_for_scene(scene, 2, 80, 60)).views


def test_text_crops_and_dense_map(checkpoint: Path, views, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # loading must never need the network
    prior = get_prior("clip", checkpoint=checkpoint, model_name=TINY_NAME, image_size=None)
    assert isinstance(prior, ClipPrior) and prior.capabilities == {"text", "embed"}

    text = prior.embed_text(["chair", "lamp", "chair"])
    assert text.shape == (3, 32) and text.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(text[0], text[2], atol=1e-6)
    assert not np.allclose(text[0], text[1])
    assert prior.embed_text([]).shape == (0, 32)

    fg = views.ids[0] >= 0
    left = fg & (np.arange(80)[None, :] < 40)
    masks = np.stack([fg, left, np.zeros_like(fg)])
    crops = prior.embed_crops(views, 0, masks)
    assert crops.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(crops[:2], axis=1), 1.0, atol=1e-5)
    assert not crops[2].any()
    assert not np.allclose(crops[0], crops[1])

    dense = prior.embed(views)
    assert dense.shape == (2, 3, 4, 32)  # 4×4 patch grid, 60×80 covers 3×4 of it
    np.testing.assert_allclose(np.linalg.norm(dense, axis=-1), 1.0, atol=1e-5)
    assert not prior.model.visual.output_tokens


def test_masked_crop_greys_out_the_rest() -> None:
    rgb = np.ones((40, 50, 3), dtype=np.float32)
    mask = np.zeros((40, 50), dtype=bool)
    mask[10:20, 5:45] = True
    mask[12, 5] = False
    img = np.asarray(masked_crop(rgb, mask))
    assert img.shape[0] == img.shape[1] == 48  # the 40-wide box plus 10% each side, padded square
    assert (img == 255).all(axis=-1).sum() == mask.sum()
    assert (img == 128).all(axis=-1).sum() == 48 * 48 - mask.sum()


def test_clip_describes_itself_and_refuses_other_weights(checkpoint: Path, tmp_path: Path) -> None:
    ctx = PriorContext(checkpoints={"clip": str(checkpoint)})
    prior = get_prior("clip", ctx, model_name=TINY_NAME)
    spec = prior.describe()
    assert spec.options["checkpoint"] is None and spec.options["model_key"].startswith(f"{TINY_NAME}-")
    again = get_prior(spec.name, ctx, **spec.options)
    assert again.describe() == spec
    np.testing.assert_array_equal(again.embed_text(["chair"]), prior.embed_text(["chair"]))
    torch.manual_seed(1)
    other = tmp_path / "other.bin"
    torch.save(open_clip.create_model(TINY_NAME, pretrained=None).state_dict(), other)
    with pytest.raises(SegAnyError) as err:
        get_prior(spec.name, PriorContext(checkpoints={"clip": str(other)}), **spec.options)
    assert err.value.code == "not_prepared" and "CLIP model" in err.value.message


def test_bad_checkpoints(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(SegAnyError) as err:
        get_prior("clip", checkpoint=tmp_path / "none.bin")
    assert err.value.code == "not_found"
    with pytest.raises(SegAnyError) as err:
        get_prior("clip", checkpoint=checkpoint, model_name="ViT-Q-99")
    assert err.value.code == "bad_request"
    junk = tmp_path / "junk.bin"
    torch.save({"something": torch.zeros(2)}, junk)
    with pytest.raises(SegAnyError) as err:
        get_prior("clip", checkpoint=junk, model_name=TINY_NAME)
    assert err.value.code == "corrupt_file"
