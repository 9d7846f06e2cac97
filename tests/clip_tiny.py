"""A tiny open_clip ViT (the classes ViT-B-16 uses, offline, random weights) for tests of the CLIP priors."""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import torch

TINY_NAME = "SegAnyTinyViT"
TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def tiny_checkpoint(root: Path, seed: int = 0) -> Path:
    """Register the tiny architecture with open_clip and save random weights for it under root."""
    (root / f"{TINY_NAME}.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(root)
    torch.manual_seed(seed)
    path = root / f"tiny-{seed}.bin"
    torch.save(open_clip.create_model(TINY_NAME, pretrained=None).state_dict(), path)
    return path
