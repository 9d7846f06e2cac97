"""The numpy pieces behind the Blender writes, against slow per-element references (no bpy needed)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from segany.addon import selection_math, splat_layout


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 1, width=32), min_size=1, max_size=300), st.floats(0.05, 0.95))
def test_weight_buckets_cover_every_selected_vertex_once_within_one_level(scores: list[float], thr: float) -> None:
    w = selection_math.weights(np.array(scores, np.float32), thr, binary=False)
    seen = np.zeros(len(w), int)
    got = np.zeros(len(w))
    for weight, idx in selection_math.weight_buckets(w):
        seen[idx] += 1
        got[idx] = weight
    assert (seen <= 1).all()
    q = np.rint(w * 255) > 0
    assert (seen[q] == 1).all() and (seen[~q] == 0).all()
    np.testing.assert_allclose(got, w, atol=0.5 / 255 + 1e-6)


def test_face_and_edge_masks_follow_blenders_flush_rules() -> None:
    loop_totals = np.array([3, 4, 3])
    loop_verts = np.array([0, 1, 2, 1, 2, 3, 4, 4, 5, 6])
    vmask = np.array([1, 1, 1, 1, 0, 1, 1], bool)
    np.testing.assert_array_equal(selection_math.face_mask(vmask, loop_totals, loop_verts, "all"), [True, False, False])
    np.testing.assert_array_equal(
        selection_math.face_mask(vmask, loop_totals, loop_verts, "majority"), [True, True, True]
    )
    edges = np.array([0, 1, 3, 4, 5, 6])
    np.testing.assert_array_equal(selection_math.edge_mask(vmask, edges), [True, False, True])


def test_preview_colours_match_a_per_element_reference() -> None:
    rng = np.random.default_rng(0)
    s = rng.random(1000, dtype=np.float32)
    color = (0.9, 0.2, 0.1, 1.0)
    out = selection_math.preview_colors(s, 0.6, color)
    base = np.array(selection_math.NEUTRAL, np.float32)
    for i in range(0, 1000, 37):
        t = 1.0 if s[i] >= 0.6 else 0.5 * s[i]
        np.testing.assert_allclose(out[i], base * (1 - t) + np.array(color, np.float32) * t, atol=1e-6)


def test_splat_layouts_invert_each_other() -> None:
    rng = np.random.default_rng(2)
    n = 100
    arrays = {
        "means": rng.normal(size=(n, 3)).astype(np.float32),
        "quats": rng.normal(size=(n, 4)).astype(np.float32),
        "log_scales": rng.normal(-3, 1, size=(n, 3)).astype(np.float32),
        "logit_opacities": rng.normal(0, 2, size=n).astype(np.float32),
        "sh": rng.normal(size=(n, 16, 3)).astype(np.float32),
    }
    decoded = splat_layout.to_decoded(arrays)
    assert splat_layout.detect(set(decoded)) == "decoded" and len(splat_layout.sh_names(decoded)) == 15
    back = splat_layout.from_decoded(arrays["means"], decoded)
    for k, v in arrays.items():
        np.testing.assert_allclose(back[k], v, rtol=1e-4, atol=1e-4, err_msg=k)
