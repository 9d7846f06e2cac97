"""SamPrior with the real vit_b architecture and random weights: shapes, coordinates, refinement, caches.

Random weights make the masks meaningless, so nothing here judges mask quality; the image encoder runs
exactly once in this file (about 16 s on a 2-core CPU) and every other call must hit a cache.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from segment_anything import sam_model_registry

from segany.cameras import cameras_for_scene
from segany.errors import SegAnyError
from segany.priors import PriorContext, get_prior
from segany.priors.sam import SamPrior, detect_model_type
from segany.render import render
from segany.samples import sample_mesh

W, H = 80, 60  # not square: exercises ResizeLongestSide and the crop of the embedding grid


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sam") / "random_vit_b.pth"
    torch.save(sam_model_registry["vit_b"](checkpoint=None).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def views():
    scene = sample_mesh()
    return render(scene, cameras_for_scene(scene, 1, W, H)).views


class Counter:
    """Wraps a module's forward to count calls and keep their keyword arguments."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls: list[dict] = []
        inner = module.forward

        def forward(*args, **kwargs):
            self.calls.append(kwargs)
            return inner(*args, **kwargs)

        module.forward = forward


def test_sam_end_to_end_with_one_encoder_run(checkpoint: Path, views, tmp_path: Path) -> None:
    prior = get_prior("sam", PriorContext(cache_dir=tmp_path), checkpoint=checkpoint)
    assert isinstance(prior, SamPrior) and prior.model_type == "vit_b"
    encoder = Counter(prior.model.image_encoder)
    prompts = Counter(prior.model.prompt_encoder)

    click = np.array([[40.5, 30.5]])  # centre of pixel (40, 30)
    res = prior.prompt(views, 0, click, np.array([1]))
    assert len(encoder.calls) == 1
    assert res.masks.shape == (3, H, W) and res.masks.dtype == bool
    assert res.scores.shape == (3,) and res.logits.shape == (3, 256, 256)
    areas = res.masks.sum(axis=(1, 2))
    assert list(areas) == sorted(areas)

    # coordinates: SAM adds half a pixel in its 1024-long frame, which must land on our pixel centre
    points = prompts.calls[-1]["points"][0]
    scale = 1024 / max(W, H)
    np.testing.assert_allclose(points[0, 0].numpy() + 0.5, click[0] * scale, atol=1e-4)

    again = prior.prompt(views, 0, np.array([[40.5, 30.5], [10.5, 5.5]]), np.array([1, 0]), prev=res.logits[2])
    assert again.masks.shape == (3, H, W)
    from_mask = prior.prompt(views, 0, click, np.array([1]), prev=res.masks[1])
    assert from_mask.masks.shape == (3, H, W)
    masks_in = prompts.calls[-1]["masks"]
    assert masks_in is not None and masks_in.shape == (1, 1, 256, 256)
    with pytest.raises(SegAnyError):
        prior.prompt(views, 0, click, np.array([1]), prev=np.zeros((7, 7)))

    emb = prior.embed(views)
    assert emb.shape == (1, 48, 64, 256)  # 60×80 covers 48×64 cells of the 64² grid
    np.testing.assert_allclose(np.linalg.norm(emb, axis=-1), 1.0, atol=1e-4)

    prior.auto_options = {"points_per_side": 2, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    levels = prior.auto_masks(views, 0)
    assert len(levels) == 3 and all(m.shape[1:] == (H, W) for m in levels)
    assert len(encoder.calls) == 1  # prompts, refinement, embeddings, automatic masks: one encoder run

    cached = list((tmp_path / "sam").rglob("*.safetensors"))
    assert len(cached) == 1
    prior._memory.clear()  # as after a restart: only the disk cache is left
    np.testing.assert_array_equal(prior.embed(views), emb)
    assert len(encoder.calls) == 1


def test_sam_describes_itself_and_refuses_another_model(checkpoint: Path, tmp_path: Path) -> None:
    """The description holds the options and the model's identity, never the machine's checkpoint path or
    device: rebuilt with a context whose checkpoint holds another model, it is refused (prepare again)."""
    ctx = PriorContext(cache_dir=tmp_path, checkpoints={"sam": str(checkpoint)})
    prior = get_prior("sam", ctx, memory_views=4)
    spec = prior.describe()
    assert spec.options["checkpoint"] is None and spec.options["memory_views"] == 4
    assert spec.options["model_key"] == prior.model_key and prior.model_key.startswith("vit_b-")
    again = get_prior(spec.name, ctx, **spec.options)
    assert again.describe() == spec and again.cache_dir == prior.cache_dir == tmp_path / "sam" / prior.model_key
    with pytest.raises(SegAnyError) as err:
        get_prior(spec.name, ctx, **{**spec.options, "model_key": "vit_b-00000000000000000000"})
    assert err.value.code == "not_prepared" and "SAM model" in err.value.message


def test_model_type_detection() -> None:
    def fake(width: int, depth: int) -> dict[str, torch.Tensor]:
        state = {"image_encoder.patch_embed.proj.weight": torch.empty(width, 3, 1, 1)}
        state.update({f"image_encoder.blocks.{i}.norm1.weight": torch.empty(1) for i in range(depth)})
        return state

    assert detect_model_type(fake(768, 12)) == "vit_b"
    assert detect_model_type(fake(1024, 24)) == "vit_l"
    assert detect_model_type(fake(1280, 32)) == "vit_h"
    with pytest.raises(SegAnyError, match="unknown SAM encoder"):
        detect_model_type(fake(1024, 12))
    with pytest.raises(SegAnyError, match="not a Segment Anything"):
        detect_model_type({"visual.proj": torch.empty(1)})


def test_a_prior_without_its_checkpoint_says_where_to_set_it() -> None:
    with pytest.raises(SegAnyError) as err:
        get_prior("sam")
    assert err.value.code == "bad_request" and "checkpoint" in err.value.message
    assert "SEGANY_SAM_CHECKPOINT" in err.value.message and "preferences" in err.value.message
    with pytest.raises(SegAnyError) as err:
        get_prior("geometric", colour=True)
    assert err.value.code == "bad_request" and "colour" in err.value.message


def test_bad_checkpoints(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(SegAnyError) as err:
        get_prior("sam", checkpoint=tmp_path / "missing.pth")
    assert err.value.code == "not_found"
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(SegAnyError) as err:
        get_prior("sam", checkpoint=junk)
    assert err.value.code == "corrupt_file"
    with pytest.raises(SegAnyError, match="vit_b model, not vit_h"):
        get_prior("sam", checkpoint=checkpoint, model_type="vit_h")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU: checks SamPrior(device='cuda')")
def test_cuda_matches_cpu_shapes(checkpoint: Path, views, tmp_path: Path) -> None:
    prior = get_prior("sam", PriorContext("cuda", tmp_path), checkpoint=checkpoint)
    res = prior.prompt(views, 0, np.array([[40.5, 30.5]]), np.array([1]))
    assert res.masks.shape == (3, H, W)
    assert prior.embed(views).shape == (1, 48, 64, 256)
    prior.auto_options = {"points_per_side": 2, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    assert len(prior.auto_masks(views, 0)) == 3
