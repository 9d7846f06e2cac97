"""The add-on's SAGA figures on the real donut (docs/methods/saga.md, "In Blender"): what the Blender data holds
after a click at the smallest, middle and largest trained scale of the slider, and after Segment everything
(part_attribute), rendered by segany.picture. The tests' tiny preset: this CPU is shared by many.

    .venv/bin/python blender_tests/saga_addon_figures.py OUT_DIR
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image


def main(out: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import conftest

    assert conftest.USER_DIR.is_dir()  # conftest set the isolated Blender user directory, which bpy reads on import
    import bpy

    out.mkdir(parents=True, exist_ok=True)
    conftest.enable_addon()
    prefs = bpy.context.preferences.addons[conftest.PKG].preferences
    prefs.python_path = conftest.BACKEND_PYTHON
    prefs.device = "CPU"
    prefs.cache_dir = str(out / "cache")
    from bl_ext.user_default.segany import actions, api, everything, runtime, scale, scene_read

    from segany.picture import recolored, render_grid, selection_colors
    from segany.scene import SplatScene

    for ob in list(bpy.data.objects):
        bpy.data.objects.remove(ob)
    ob = conftest.raw_donut()
    t0 = time.perf_counter()
    st = api.prepare(ob, "saga", options={"preset": "tiny"})  # the tests' preset: this CPU is shared
    print("prepare", round(time.perf_counter() - t0, 1), "s", st.message)
    arrays = scene_read.read_object(ob).arrays
    scene = SplatScene(arrays["means"], arrays["quats"], arrays["log_scales"], arrays["logit_opacities"], arrays["sh"])
    rt = runtime.current()
    settings = bpy.context.scene.segany
    settings.method_choice = "saga"
    bpy.context.view_layer.objects.active = ob
    session, preview = actions.start_click(ob, (1, 0.45, 0.05, 1))

    def settle() -> None:  # every query in flight answered and shown (the timer's drain)
        assert rt.bridge.wait_idle(120)
        conftest.drain_until(lambda: not rt.bridge.pending(), timeout=120)

    settings.scale_auto = True
    session.add(int(np.argmax(arrays["means"][:, 2])))
    settle()
    lo, hi = scale.trained_range(ob)
    print("trained range", lo, hi, "auto chose", scale.used_scale(ob), "selected", session.selected)
    settings.scale_auto = False
    tiles = []
    for value in np.geomspace(lo, hi, 3):
        settings.scale = float(value)
        settle()
        print("scale", value, "selected", session.selected, "of", len(session.scores))
        picture = recolored(scene, selection_colors(session.scores, session.threshold))
        path = render_grid(picture, out / "tmp.png", 2, 240)
        tiles.append(np.asarray(Image.open(path)))
    Image.fromarray(np.concatenate(tiles, axis=0)).save(out / "saga_addon_slider.png")
    actions.finish_click(ob, session, settings, (1, 0.45, 0.05, 1), False, preview)
    t0 = time.perf_counter()
    done = api.everything(ob, scale="auto", output="part_attribute", method="saga")
    print("everything", round(time.perf_counter() - t0, 1), "s", done.count, "parts at", done.scale)
    colours = scene_read.read_attribute(ob.data, everything.PART_COLOUR)[:, :3]  # what Blender now holds
    render_grid(recolored(scene, colours.astype(np.float32)), out / "saga_addon_everything.png", 4, 240)
    (out / "tmp.png").unlink()
    api.stop_backend()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
