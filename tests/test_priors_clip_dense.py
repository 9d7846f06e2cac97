"""Dense CLIP maps in the text space (ClearCLIP's last block), on the real ViT-B-16 architecture at random
weights and on a tiny ViT of the same classes; the fetched model is found without any setting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

from segany import models
from segany.cameras import cameras_for_scene
from segany.errors import SegAnyError
from segany.priors import get_prior
from segany.priors.clip_dense import _positions, dense_tokens
from segany.render import render
from segany.samples import sample_mesh
from tests.clip_tiny import TINY_NAME, tiny_checkpoint


@pytest.fixture(scope="module")
def views():
    scene = sample_mesh()
    return render(scene, cameras_for_scene(scene, 2, 80, 60)).views


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("clip"))


def test_vit_b_16_from_the_model_directory(views, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SEGANY_MODELS", str(tmp_path))
    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-16", pretrained=None)
    torch.save(model.state_dict(), models.where("clip_vit_b_16"))
    prior = get_prior("clip", image_size=224)  # no checkpoint set: the fetched file is the one
    assert prior.describe().options["model_key"].startswith("ViT-B-16-")
    dense = prior.embed(views)
    assert dense.shape == (2, 10, 14, 512)  # 14² patches at 224; the 60×80 view covers 10.5 rows of them
    np.testing.assert_allclose(np.linalg.norm(dense, axis=-1), 1.0, atol=1e-4)
    assert dense.std(axis=(0, 1, 2)).mean() > 1e-3  # tokens differ from place to place
    text = prior.embed_text(["a seat", "a leg"])
    assert text.shape == (2, 512)


def test_dense_tokens_follow_clearclip(tiny: Path) -> None:
    """The map equals the last block computed by hand: q-q attention, no residual, no MLP, then ln_post, proj."""
    prior = get_prior("clip", checkpoint=tiny, model_name=TINY_NAME, image_size=64)
    visual = prior.model.visual
    torch.manual_seed(2)
    img = torch.randn(1, 3, 64, 64)
    got = dense_tokens(visual, img)
    with torch.no_grad():
        x = visual._embeds(img)
        for block in visual.transformer.resblocks[:-1]:
            x = block(x)
        last = visual.transformer.resblocks[-1]
        y = last.ln_1(x)
        w, b, d = last.attn.in_proj_weight, last.attn.in_proj_bias, last.attn.embed_dim
        heads = last.attn.num_heads
        q = (y @ w[:d].T + b[:d]).reshape(1, -1, heads, d // heads).transpose(1, 2)
        v = (y @ w[2 * d :].T + b[2 * d :]).reshape(1, -1, heads, d // heads).transpose(1, 2)
        att = torch.softmax(q @ q.transpose(-1, -2) / (d // heads) ** 0.5, dim=-1)
        out = last.attn.out_proj((att @ v).transpose(1, 2).reshape(1, -1, d))
        want = (visual.ln_post(out) @ visual.proj)[:, 1:].reshape(1, 4, 4, -1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    # a larger input gives a finer grid; the positions are resized, the class position kept
    assert dense_tokens(visual, torch.randn(1, 3, 128, 128)).shape == (1, 8, 8, 32)
    pos = _positions(visual, 8)
    assert pos.shape == (65, visual.positional_embedding.shape[1])
    torch.testing.assert_close(pos[0], visual.positional_embedding[0])


def test_dense_map_size_and_padding(tiny: Path, views) -> None:
    prior = get_prior("clip", checkpoint=tiny, model_name=TINY_NAME, image_size=128)
    dense = prior.embed(views)
    assert dense.shape == (2, 6, 8, 32)  # 8² patches; a 60×80 view padded square covers 6×8
    np.testing.assert_allclose(np.linalg.norm(dense, axis=-1), 1.0, atol=1e-5)


def test_wrong_model_for_the_checkpoint(tiny: Path) -> None:
    with pytest.raises(SegAnyError) as err:
        get_prior("clip", checkpoint=tiny, model_name="ViT-B-16")
    assert err.value.code == "corrupt_file" and "ViT-B-16" in err.value.message
