"""The `clip_crops` language source: CLIP on the geometric prior's mask crops, painted onto the pixels
(a tiny open_clip ViT at random weights: the real classes, offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segany.cameras import cameras_for_scene
from segany.errors import SegAnyError
from segany.priors import PriorContext, get_prior
from segany.priors.clip_crops import ClipCropsPrior, paint
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


def test_paint_weights_each_mask_by_the_cover_of_each_cell() -> None:
    masks = np.zeros((2, 4, 6), dtype=bool)
    masks[0, :, :4] = True  # cells (2×2) 0 and 1 of every row
    masks[1, :, 3:] = True  # half of cell 1, all of cell 2
    emb = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    out = paint(masks, emb, 2)
    assert out.shape == (2, 3, 2)
    np.testing.assert_allclose(out[:, 0], [[1, 0], [1, 0]])
    np.testing.assert_allclose(out[:, 1], np.tile(np.array([1.0, 0.5]) / np.hypot(1, 0.5), (2, 1)), atol=1e-6)
    np.testing.assert_allclose(out[:, 2], [[0, 1], [0, 1]])
    empty = paint(np.zeros((1, 3, 3), dtype=bool), emb[:1], 2)
    assert empty.shape == (2, 2, 2) and not empty.any()  # uncovered cells: no opinion, not a direction


def test_crops_painted_on_their_pixels(checkpoint: Path, views, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # loading must never need the network
    prior = get_prior("clip_crops", clip={"checkpoint": str(checkpoint), "model_name": TINY_NAME}, cell=2)
    assert isinstance(prior, ClipCropsPrior) and {"text", "embed"} <= prior.capabilities
    text = prior.embed_text(["seat", "leg"])
    assert text.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)

    masks = prior.view_masks(views, 0)
    areas = masks.reshape(len(masks), -1).sum(axis=1)
    assert len(masks) >= 2 and (areas >= prior.min_pixels).all()
    assert len(np.unique(masks.reshape(len(masks), -1), axis=0)) == len(masks)  # every crop once

    emb = prior.embed(views)
    assert emb.shape == (2, 30, 40, 32) and emb.dtype == np.float32
    norm = np.linalg.norm(emb, axis=-1)
    assert np.allclose(norm[norm > 0], 1.0, atol=1e-5)
    background = (views.ids[0] < 0).reshape(30, 2, 40, 2).all(axis=(1, 3))
    assert not emb[0][background].any()

    # a cell inside exactly one mask carries that mask's crop embedding
    cover = masks.reshape(len(masks), 30, 2, 40, 2).all(axis=(2, 4))
    touch = masks.reshape(len(masks), 30, 2, 40, 2).any(axis=(2, 4))
    alone = cover & (touch.sum(axis=0) == 1)
    k = int(np.argmax(alone.reshape(len(masks), -1).any(axis=1)))
    assert alone[k].any()
    crop = prior.embed_crops(views, 0, masks[k : k + 1])[0]
    np.testing.assert_allclose(emb[0][alone[k]], np.broadcast_to(crop, (int(alone[k].sum()), 32)), atol=1e-5)


def test_describe_rebuilds_and_refuses_other_weights(checkpoint: Path, tmp_path: Path) -> None:
    ctx = PriorContext(checkpoints={"clip": str(checkpoint)})
    prior = get_prior("clip_crops", ctx, clip={"model_name": TINY_NAME})
    spec = prior.describe()
    assert spec.options["clip"]["model_key"].startswith(f"{TINY_NAME}-") and spec.options["masks"] == "geometric"
    again = get_prior(spec.name, ctx, **spec.options)
    assert again.describe() == spec
    other = tiny_checkpoint(tmp_path, seed=1)
    with pytest.raises(SegAnyError) as err:
        get_prior(spec.name, PriorContext(checkpoints={"clip": str(other)}), **spec.options)
    assert err.value.code == "not_prepared"


def test_bad_settings_are_named(checkpoint: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SEGANY_MODELS", str(tmp_path))  # no fetched model either
    ctx = PriorContext(checkpoints={"clip": str(checkpoint)})
    with pytest.raises(SegAnyError) as err:  # SAM masks without a SAM checkpoint: say where to set one
        get_prior("clip_crops", ctx, clip={"model_name": TINY_NAME}, masks="sam")
    assert err.value.code == "bad_request" and "SEGANY_SAM_CHECKPOINT" in err.value.message
    with pytest.raises(SegAnyError) as err:
        get_prior("clip_crops", ctx, masks="mystery")
    assert err.value.code == "bad_request" and "masks" in err.value.message
    with pytest.raises(SegAnyError) as err:  # no CLIP checkpoint anywhere: say what to fetch
        get_prior("clip_crops", PriorContext(), clip={"model_name": TINY_NAME})
    assert err.value.code == "bad_request" and "segany models fetch clip_vit_b_16" in err.value.message


def test_clip_sources_share_one_model(checkpoint: Path, views) -> None:
    ctx = PriorContext(checkpoints={"clip": str(checkpoint)})
    prior = get_prior("clip_sources", ctx, clip={"model_name": TINY_NAME, "image_size": 64}, cell=2)
    sources = prior.text_sources()
    assert set(sources) == {"clip", "clip_crops"}
    assert sources["clip_crops"].clip is sources["clip"]  # the weights are loaded once
    assert sources["clip"].embed(views).shape == (2, 3, 4, 32)
    assert sources["clip_crops"].embed(views).shape == (2, 30, 40, 32)
    np.testing.assert_array_equal(prior.embed_text(["seat"]), sources["clip_crops"].embed_text(["seat"]))
    spec = prior.describe()
    assert spec.name == "clip_sources" and get_prior(spec.name, ctx, **spec.options).describe() == spec


def test_template_and_words(checkpoint: Path) -> None:
    prior = get_prior("clip", checkpoint=checkpoint, model_name=TINY_NAME)
    same = prior.embed_text(["seat", " seat "])  # the user's spaces do not change the sentence
    np.testing.assert_array_equal(same[0], same[1])
    odd = prior.embed_text(["Rückenlehne", "座面", "x" * 500])  # any script; long words are cut to the context
    assert odd.shape == (3, 32) and np.isfinite(odd).all()
    bare = get_prior("clip", checkpoint=checkpoint, model_name=TINY_NAME, template="{}")
    assert not np.allclose(bare.embed_text(["seat"]), same[:1])
    with pytest.raises(SegAnyError) as err:
        get_prior("clip", checkpoint=checkpoint, model_name=TINY_NAME, template="a photo")
    assert err.value.code == "bad_request" and "template" in err.value.message


def test_a_view_without_masks_has_no_opinion(checkpoint: Path, views) -> None:
    prior = get_prior("clip_crops", clip={"checkpoint": str(checkpoint), "model_name": TINY_NAME}, min_pixels=10**6)
    assert prior.view_masks(views, 0).shape == (0, 60, 80)
    assert not prior.embed(views).any()


def test_masks_smaller_than_the_encoders_grid_are_not_cropped(checkpoint: Path, views) -> None:
    """By default a mask needs a pixel per cell of the encoder's grid (the tiny ViT: 64 px input, 16 px patches,
    16 cells); a number given is kept."""
    clip = {"checkpoint": str(checkpoint), "model_name": TINY_NAME}
    prior = get_prior("clip_crops", clip=clip)
    assert prior.config.min_pixels is None and prior.min_pixels == prior.clip.cells == 16
    areas = prior.view_masks(views, 0).reshape(-1, 60 * 80).sum(axis=1)
    assert areas.min() >= 16
    fewer = get_prior("clip_crops", clip=clip, min_pixels=int(np.median(areas)) + 1)
    assert 0 < len(fewer.view_masks(views, 0)) < len(areas)


def test_crop_embeddings_under_the_cpus_precision_match_float32(checkpoint: Path, views) -> None:
    """Where the CPU has bfloat16 units the image encoder runs under bfloat16 autocast; its crop embeddings
    stay the float32 model's directions (elsewhere they are float32's exactly)."""
    import torch

    from segany.priors.clip import masked_crop

    prior = get_prior("clip_crops", clip={"checkpoint": str(checkpoint), "model_name": TINY_NAME})
    masks = prior.view_masks(views, 0)
    got = prior.embed_crops(views, 0, masks)
    clip = prior.clip
    with torch.no_grad():
        batch = torch.stack([clip.preprocess(masked_crop(views.rgb[0], m)) for m in masks])
        want = torch.nn.functional.normalize(clip.model.encode_image(batch).float(), dim=-1).numpy()
    assert (got * want).sum(axis=1).min() > 0.999
