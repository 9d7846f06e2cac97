"""Numpy-only turns of a per-element score array into what Blender data needs (no bpy here, so tests and
benchmarks call it directly)."""

from __future__ import annotations

import colorsys

import numpy as np

WEIGHT_LEVELS = 256
NEUTRAL = (0.62, 0.62, 0.62, 1.0)


def weights(scores: np.ndarray, threshold: float, binary: bool) -> np.ndarray:
    """Vertex-group weights: 1.0 above threshold (binary) or the scores clipped to [0, 1], 0 below threshold."""
    s = np.asarray(scores, np.float32)
    mask = s >= threshold
    if binary:
        return mask.astype(np.float32)
    return np.where(mask, np.clip(s, 0.0, 1.0), 0.0).astype(np.float32)


def weight_buckets(w: np.ndarray, levels: int = WEIGHT_LEVELS) -> list[tuple[float, np.ndarray]]:
    """Group non-zero weights into at most `levels` distinct values so a vertex group is written with
    one `VertexGroup.add` call per level instead of one per vertex (weights keep 1/(levels-1) precision)."""
    w = np.asarray(w, np.float32)
    q = np.rint(np.clip(w, 0.0, 1.0) * (levels - 1)).astype(np.int32)
    nz = np.flatnonzero(q)
    if len(nz) == 0:
        return []
    order = np.argsort(q[nz], kind="stable")
    idx = nz[order]
    vals = q[idx]
    cuts = np.flatnonzero(np.diff(vals)) + 1
    return [(float(g[0]) / (levels - 1), i) for g, i in zip(np.split(vals, cuts), np.split(idx, cuts), strict=True)]


def face_mask(
    vertex_mask: np.ndarray, loop_totals: np.ndarray, loop_verts: np.ndarray, rule: str = "all"
) -> np.ndarray:
    """Faces whose corners are all ('all') or mostly ('majority') in the vertex mask."""
    inside = np.asarray(vertex_mask, bool)[loop_verts].astype(np.int32)
    starts = np.concatenate([[0], np.cumsum(loop_totals)[:-1]]).astype(np.int64)
    counts = np.add.reduceat(inside, starts) if len(starts) else np.zeros(0, np.int32)
    if rule == "all":
        return counts == loop_totals
    return counts * 2 > loop_totals


def edge_mask(vertex_mask: np.ndarray, edge_verts: np.ndarray) -> np.ndarray:
    """Edges with both ends selected (Blender's flush rule in vertex select mode)."""
    m = np.asarray(vertex_mask, bool)
    ev = np.asarray(edge_verts).reshape(-1, 2)
    return m[ev[:, 0]] & m[ev[:, 1]]


def segment_color(i: int) -> tuple[float, float, float, float]:
    """A distinct, saturated colour per segment index (golden-ratio hue steps)."""
    h = (0.03 + i * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 0.95)
    return (r, g, b, 1.0)


def preview_colors(
    scores: np.ndarray, threshold: float, color: tuple[float, ...], base: np.ndarray | None = None
) -> np.ndarray:
    """RGBA per element: the segment colour where selected, faded in by score below threshold, else the base.

    One blend factor per element and one broadcast written in place (no boolean-mask scatter of rows).
    """
    s = np.asarray(scores, np.float32)
    t = np.clip(s, 0.0, 1.0)
    t *= 0.5
    np.putmask(t, s >= threshold, 1.0)
    c = np.asarray((*color[:3], 1.0), np.float32)
    b = np.asarray(NEUTRAL if base is None else base, np.float32)
    out = np.empty((len(s), 4), np.float32)
    np.multiply(t[:, None], c - b, out=out)
    out += b
    return out
