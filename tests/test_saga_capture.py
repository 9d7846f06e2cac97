"""SAGA's capture streams views through the render stage a few at a time: the pixels it keeps must not depend
on how many views a render call draws (mask ids count on across calls, pixels keep view order), beyond the
float rounding of a batched rasterisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sa3d_scenes import splat_blobs

from segany.methods.saga import pixels as capture
from segany.priors import get_prior


def _capture(scene, views: int):  # type: ignore[no-untyped-def]
    return capture.capture_pixels(scene, get_prior("geometric"), views, 48, 4, 45.0, 0, "cpu", lambda f, m: None)


def test_pixels_are_the_same_whether_views_render_together_or_one_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene, _ = splat_blobs(tmp_path)
    together = _capture(scene, 5)
    monkeypatch.setattr(capture, "ELEMENT_VIEWS", scene.n_elements)  # one view per render call
    calls = []
    real_render = capture.render
    monkeypatch.setattr(capture, "render", lambda s, cams, **kw: calls.append(len(cams)) or real_render(s, cams, **kw))
    apart = _capture(scene, 5)
    assert calls == [1] * 5
    for name in ("ids", "mask_ids", "starts"):
        np.testing.assert_array_equal(getattr(apart, name), getattr(together, name), err_msg=name)
    for name in ("weights", "mask_scales", "scales"):  # a batch of views rasterises with other rounding
        np.testing.assert_allclose(getattr(apart, name), getattr(together, name), rtol=1e-4, err_msg=name)
    assert len(np.unique(together.scales)) > 5  # several masks per view, numbered across all views
