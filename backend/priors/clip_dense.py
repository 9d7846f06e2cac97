"""Dense CLIP features straight from the vision transformer, in the text space, without masks.

CLIP's patch tokens are trained only through the class token, so taken as they are they barely match
text. ClearCLIP (Lan et al., ECCV 2024) finds three changes to the last block enough to make them match:
query-query attention instead of query-key, no residual connection and no feed-forward; the tokens then
go through the usual final norm and projection into the text space. Weights stay as trained. The input
may be larger than the model's training size (positional embeddings are resized bicubically, as
open_clip does when loading) so the map is finer than the 14×14 grid of ViT-B-16 at 224.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer

from ..errors import SegAnyError


def grid_of(visual: VisionTransformer, size: int) -> int:
    """Patches per side of a square input `size` pixels wide."""
    patch = visual.patch_size[0] if isinstance(visual.patch_size, tuple) else visual.patch_size
    return max(1, size // patch)


def check_plain_vit(visual: torch.nn.Module) -> None:
    """unsupported for towers the ClearCLIP recipe does not fit (timm trunks, attention pooling, no class token)."""
    if not isinstance(visual, VisionTransformer) or visual.attn_pool is not None or visual.final_ln_after_pool:
        raise SegAnyError(
            "unsupported",
            f"dense CLIP features need a plain open_clip ViT image tower, not {type(visual).__name__}; "
            "use the 'clip_crops' prior with this model",
        )


def _positions(visual: VisionTransformer, grid: int) -> torch.Tensor:
    """The positional embedding for a grid × grid input: class position kept, patch positions resized."""
    pos = visual.positional_embedding
    old = round((pos.shape[0] - 1) ** 0.5)
    if old == grid:
        return pos
    img = pos[1:].reshape(1, old, old, -1).permute(0, 3, 1, 2)
    img = F.interpolate(img, size=(grid, grid), mode="bicubic", antialias=True, align_corners=False)
    return torch.cat([pos[:1], img.permute(0, 2, 3, 1).reshape(grid * grid, -1)])


def _self_self_attention(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The last block as ClearCLIP uses it: q-q attention over the normed tokens, out-projected, nothing added."""
    attn = block.attn
    y = block.ln_1(x)
    width, heads = attn.embed_dim, attn.num_heads
    q_w, v_w = attn.in_proj_weight[:width], attn.in_proj_weight[2 * width :]
    q_b, v_b = attn.in_proj_bias[:width], attn.in_proj_bias[2 * width :]
    n, length, _ = y.shape
    q = F.linear(y, q_w, q_b).reshape(n, length, heads, -1).transpose(1, 2)
    v = F.linear(y, v_w, v_b).reshape(n, length, heads, -1).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, q, v).transpose(1, 2).reshape(n, length, width)
    return attn.out_proj(out)


@torch.no_grad()
def dense_tokens(visual: VisionTransformer, batch: torch.Tensor) -> torch.Tensor:
    """Per-patch embeddings (N, g, g, D) in the text space for normalised square images (N, 3, S, S)."""
    check_plain_vit(visual)
    grid = grid_of(visual, batch.shape[-1])
    x = visual.conv1(batch.to(visual.conv1.weight.dtype))
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + _positions(visual, grid).to(x.dtype)
    x = visual.ln_pre(x)
    blocks = visual.transformer.resblocks
    batch_first = getattr(visual.transformer, "batch_first", True)
    x = x if batch_first else x.transpose(0, 1)
    for block in blocks[:-1]:
        x = block(x)
    x = x if batch_first else x.transpose(0, 1)
    x = visual.ln_post(_self_self_attention(blocks[-1], x))
    if visual.proj is not None:
        x = x @ visual.proj
    return x[:, 1:].reshape(x.shape[0], grid, grid, -1)
