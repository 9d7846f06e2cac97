"""The click tool through its plain functions, with the real backend and SA3D on the real donut splats in
both Blender layouts: viewport events go to `ClickSession.on_event` exactly as the modal operator passes
them, picks project the Gaussians with a real camera's matrices, and Enter / Esc end through
`actions.finish_click`; the session starts through `actions.start_click`, which on splats shows the live
selection as a viewport overlay (its draw handler is real; the gpu drawing itself cannot run headless). The
modal operator itself cannot run headless (no window sends it events); it only forwards events and restores
the viewport, so everything it decides is exercised here."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TINY, camera_view, decoded_pointcloud, drain_until, grid_mesh, raw_donut

W, H = 400, 300


def settle(rt: object) -> None:
    """Let every query in flight answer and reach the main thread (the timer's drain)."""
    assert rt.bridge.wait_idle(60)
    drain_until(lambda: not rt.bridge.pending(), timeout=60)


@pytest.fixture(scope="module", params=["raw", "decoded"])
def splats(request: pytest.FixtureRequest, rt: object) -> tuple[object, object, np.ndarray]:
    """The donut (5.0 mesh or 5.3 point cloud) prepared for SA3D, a camera view and two pick positions."""
    import bpy
    from bl_ext.user_default.segany import api, pick_math, scene_read

    for ob in list(bpy.data.objects):
        bpy.data.objects.remove(ob)
    ob = raw_donut()
    if request.param == "decoded":
        ob = decoded_pointcloud(scene_read.read_object(ob).arrays, "donut53")
    assert api.prepare(ob, "sa3d", options=TINY).status == "prepared"
    persp = camera_view((0.0, -0.45, 0.2), (1.23, 0.0, 0.0), W, H)  # the donut fills the view
    xy, depth = pick_math.project(scene_read.positions(ob.data), np.array(persp @ ob.matrix_world), W, H)
    centre = np.flatnonzero(np.abs(xy[:, 0] - W / 2) + np.abs(xy[:, 1] - H / 2) < 40)
    side = np.flatnonzero(np.abs(xy[:, 0] - W / 2) > 80)
    spots = np.array([xy[centre[np.argmin(depth[centre])]], xy[side[np.argmin(depth[side])]]])
    return ob, persp, spots


def _session(ob: object, color: tuple[float, ...] = (0.1, 0.9, 0.2, 1.0)) -> tuple[object, object]:
    """A click session as the tool starts it: on splats the live selection is a viewport overlay."""
    from bl_ext.user_default.segany import actions, overlay

    session, preview = actions.start_click(ob, color)
    assert isinstance(preview, overlay.PointOverlay) and overlay.active() == [preview]
    return session, preview


def assert_overlay_shows(preview: object, session: object, ob: object) -> None:
    """The overlay holds the selected Gaussians in world space, and no colour attribute was written."""
    from bl_ext.user_default.segany import results

    selected = np.flatnonzero(session.scores >= session.threshold)
    assert len(preview.coords) == len(selected) > 0  # the donut is far below the overlay's cap
    m = np.array(ob.matrix_world)
    local = ob.data.attributes["position"].data
    expected = np.array([local[i].vector for i in selected[:50]]) @ m[:3, :3].T + m[:3, 3]
    np.testing.assert_allclose(preview.coords[:50], expected, atol=1e-5)
    assert results.PREVIEW_ATTRIBUTE not in ob.data.color_attributes


def test_clicks_shift_clicks_undo_and_navigation(rt: object, splats: tuple) -> None:
    import bpy
    from bl_ext.user_default.segany import actions, overlay, picking

    ob, persp, spots = splats
    picker = picking.picker_for(ob, radius_px=8)
    at = {"xy": (0.0, 0.0)}
    picks: list[int] = []

    def pick() -> int:
        picks.append(picker.pick_matrix(persp, W, H, at["xy"]))
        return picks[-1]

    session, preview = _session(ob)
    for kind, value in (("MOUSEMOVE", "NOTHING"), ("MIDDLEMOUSE", "PRESS"), ("NUMPAD_1", "PRESS"), ("Z", "PRESS")):
        assert session.on_event(kind, value, False, False, pick) == "pass"
    assert session.on_event("LEFTMOUSE", "RELEASE", False, False, pick) == "running" and not picks

    at["xy"] = tuple(spots[0])
    assert session.on_event("LEFTMOUSE", "PRESS", False, False, pick) == "running"
    positive = picks[-1]
    assert positive >= 0 and session.clicks == [(positive, 1)]
    settle(rt)
    assert not session.error and session.scores.shape == (len(ob.data.attributes["position"].data),)
    first = session.scores.copy()
    assert 0 < session.selected < len(first)
    assert_overlay_shows(preview, session, ob)  # shown live

    at["xy"] = tuple(spots[1])
    assert session.on_event("LEFTMOUSE", "PRESS", True, False, pick) == "running"  # Shift: remove
    negative = picks[-1]
    assert negative >= 0 and negative != positive and session.clicks == [(positive, 1), (negative, -1)]
    settle(rt)
    assert not session.error
    at["xy"] = (-500.0, -500.0)
    assert session.on_event("LEFTMOUSE", "PRESS", False, False, pick) == "running"
    assert picks[-1] == -1 and len(session.clicks) == 2  # a miss adds nothing

    assert session.on_event("Z", "PRESS", False, False, pick) == "pass" and len(session.clicks) == 2  # shading pie
    assert session.on_event("Z", "PRESS", False, True, pick) == "running"  # Ctrl+Z: undo the last click
    assert session.clicks == [(positive, 1)]
    settle(rt)
    np.testing.assert_array_equal(session.scores, first)  # the same clicks again give the same answer
    session.on_event("Z", "PRESS", False, True, pick)
    assert session.clicks == [] and session.scores is None
    assert len(preview.coords) == 0 and overlay.active() == [preview]  # nothing drawn, still in session
    assert actions.finish_click(ob, session, bpy.context.scene.segany, preview.color, False, preview) is None
    assert overlay.active() == [] and preview.handle is None


def test_every_event_the_tool_does_not_handle_passes_to_blender(addon: object) -> None:
    """Every event type Blender has, in every value: only the tool's own keys (LMB, RMB, Enter, Esc, Ctrl+Z)
    stay with it, so numpad views, Home, View Selected, a 3D mouse and Blender's menus keep working while
    clicking. Before the fix every key press other than navigation was swallowed."""
    import bpy
    from bl_ext.user_default.segany import click_session, runtime

    session = click_session.ClickSession(runtime.current(), -1, show=lambda *_: None, clear=lambda: None)
    picks: list[int] = []

    def pick() -> int:
        picks.append(-1)
        return -1  # a miss: no query goes out

    kinds = [item.identifier for item in bpy.types.Event.bl_rna.properties["type"].enum_items]
    values = [item.identifier for item in bpy.types.Event.bl_rna.properties["value"].enum_items]
    assert {"NUMPAD_1", "NUMPAD_PERIOD", "HOME", "NDOF_MOTION", "NDOF_BUTTON_FIT", "Z", "TIMER"} <= set(kinds)
    ours = {"LEFTMOUSE", "RIGHTMOUSE", "RET", "NUMPAD_ENTER", "ESC"}
    for kind in kinds:
        for value in values:
            for shift, ctrl in ((False, False), (True, False), (False, True)):
                outcome = session.on_event(kind, value, shift, ctrl, pick)
                if kind in ours or (kind == "Z" and ctrl):
                    assert outcome != "pass", (kind, value, shift, ctrl)
                else:
                    assert outcome == "pass", (kind, value, shift, ctrl)
    assert session.clicks == []
    picks.clear()
    assert session.on_event("LEFTMOUSE", "DOUBLE_CLICK", False, False, pick) == "running" and picks == [-1]
    for kind, outcome in (("RET", "accept"), ("NUMPAD_ENTER", "accept"), ("ESC", "cancel"), ("RIGHTMOUSE", "cancel")):
        assert session.on_event(kind, "PRESS", False, False, pick) == outcome
        assert session.on_event(kind, "RELEASE", False, False, pick) == "running"


def test_escape_cancels_and_leaves_the_object_as_it_was(rt: object, splats: tuple) -> None:
    import bpy
    from bl_ext.user_default.segany import actions, overlay, picking

    ob, persp, spots = splats
    names = sorted(a.name for a in ob.data.attributes)
    picker = picking.picker_for(ob, radius_px=8)
    for cancel in ("ESC", "RIGHTMOUSE"):
        session, preview = _session(ob)
        session.on_event("LEFTMOUSE", "PRESS", False, False, lambda: picker.pick_matrix(persp, W, H, tuple(spots[0])))
        settle(rt)
        assert session.scores is not None
        assert_overlay_shows(preview, session, ob)
        assert session.on_event(cancel, "PRESS", False, False, lambda: -1) == "cancel"
        settings = bpy.context.scene.segany
        assert actions.finish_click(ob, session, settings, (1, 0, 0, 1), False, preview) is None
        assert sorted(a.name for a in ob.data.attributes) == names and len(ob.segany_segments) == 0
        assert overlay.active() == [] and preview.handle is None


@pytest.mark.parametrize("output", ["vertex_group", "material", "attribute"])
def test_enter_keeps_the_segment_in_the_chosen_output_beside_the_originals(
    rt: object, splats: tuple, output: str
) -> None:
    """Enter keeps the selection: a vertex group on the 5.0 mesh; where the object cannot hold the chosen
    output (no vertex groups on point clouds, no faces for a material) the scores become a float attribute.
    The original 3DGS attributes keep their names, types and values."""
    import bpy
    from bl_ext.user_default.segany import actions, overlay, picking, results, scene_read

    ob, persp, spots = splats
    before = {a.name: (a.data_type, a.domain) for a in ob.data.attributes}
    values = {k: scene_read.read_attribute(ob.data, k) for k in before if not k.startswith(".")}
    picker = picking.picker_for(ob, radius_px=8)
    session, preview = _session(ob)
    session.on_event("LEFTMOUSE", "PRESS", False, False, lambda: picker.pick_matrix(persp, W, H, tuple(spots[0])))
    settle(rt)
    assert session.on_event("NUMPAD_ENTER", "PRESS", False, False, lambda: -1) == "accept"
    settings = bpy.context.scene.segany
    settings.output, settings.output_name, settings.use_threshold = output, f"kept_{output}", False
    made = actions.finish_click(ob, session, settings, preview.color, True, preview)
    mask = session.scores >= session.threshold
    assert made.count == int(mask.sum()) > 0 and results.PREVIEW_ATTRIBUTE not in ob.data.color_attributes
    assert overlay.active() == [] and preview.handle is None
    seg = ob.segany_segments[-1]
    assert seg.name == f"kept_{output}" and seg.method == "sa3d" and seg.count == made.count
    np.testing.assert_array_equal(scene_read.read_attribute(ob.data, seg.attribute), session.scores)
    if output == "vertex_group" and ob.type == "MESH":
        members = {v.index for v in ob.data.vertices for g in v.groups if g.group == made.made.index}
        assert members == set(np.flatnonzero(mask).tolist())
    else:
        np.testing.assert_array_equal(scene_read.read_attribute(ob.data, f"kept_{output}"), session.scores)
    after = {a.name: (a.data_type, a.domain) for a in ob.data.attributes}
    assert {k: v for k, v in after.items() if k in before} == before
    for k, v in values.items():
        np.testing.assert_array_equal(scene_read.read_attribute(ob.data, k), v, err_msg=k)
    assert scene_read.read_object(ob).kind == "splats"


def test_preparing_again_through_the_ui_says_from_cache(rt: object, splats: tuple) -> None:
    """The panel's scene state: the Prepare button's path (background job, timer drain) finds the cached
    work of the same Gaussians and says so."""
    from bl_ext.user_default.segany import actions, panels, scene_read

    ob = splats[0]
    key = actions.object_key(ob)
    rt.prepare(key, scene_read.read_object(ob), "sa3d", None, TINY)
    st = rt.state(key)
    drain_until(lambda: st.status in ("prepared", "failed", "cancelled"), timeout=60)
    assert st.status == "prepared" and st.from_cache, st.message
    text, icon = panels.scene_status(rt, ob)
    assert text.startswith("Prepared sa3d (from cache) · splats") and icon == "CHECKMARK"
    assert f"{len(ob.data.attributes['position'].data):,}" in text


def test_a_mesh_edited_after_prepare_is_reported_everywhere(rt: object) -> None:
    """Vertices deleted after Prepare: the panel, the click tool's poll, a click, an answer already on its
    way and Enter all say the mesh changed and Prepare is needed again; nothing is shown or kept. Before,
    the panel said "Prepared", the live preview silently showed nothing and only Enter said anything."""
    import bmesh
    import bpy
    from bl_ext.user_default.segany import actions, panels, results

    ob = grid_mesh("edited", 10, 10)
    assert actions.prepare_blocking(ob, "iseg", options=TINY).status == "prepared"
    assert actions.click_problem(ob) == "" and panels.scene_status(rt, ob)[1] == "CHECKMARK"
    session, preview = actions.start_click(ob, (0.1, 0.9, 0.2, 1.0))
    assert session.on_event("LEFTMOUSE", "PRESS", False, False, lambda: 55) == "running"
    settle(rt)
    assert session.scores is not None and session.error == ""
    assert session.on_event("LEFTMOUSE", "PRESS", False, False, lambda: 33) == "running"  # answered after the edit

    bm = bmesh.new()
    bm.from_mesh(ob.data)
    bm.verts.ensure_lookup_table()
    bmesh.ops.delete(bm, geom=[bm.verts[i] for i in range(10)], context="VERTS")
    bm.to_mesh(ob.data)
    bm.free()

    changed = "The mesh changed since Prepare (100 → 90 vertices): press Prepare again"
    settle(rt)
    assert session.error == changed and session.scores is None
    assert results.PREVIEW_ATTRIBUTE not in ob.data.color_attributes
    assert session.on_event("LEFTMOUSE", "PRESS", False, False, lambda: 12) == "running"
    assert session.error == changed and session.clicks == [(55, 1), (33, 1)]  # the click was not sent
    assert panels.scene_status(rt, ob) == (changed, "ERROR")
    assert actions.click_problem(ob) == changed
    with pytest.raises(ValueError, match="changed since Prepare"):
        actions.finish_click(ob, session, bpy.context.scene.segany, preview.color, True, preview)
    assert len(ob.segany_segments) == 0
    bpy.data.objects.remove(ob)


def test_walk_clicks_without_prepare(rt: object) -> None:
    """A method that needs no per-object work (walk, as the backend's listing says) starts the click tool on
    an object never prepared: the tool sends the object, the first click answers, and Enter keeps a segment.
    An object with a method that does need Prepare is still refused with the reason."""
    import bpy
    from bl_ext.user_default.segany import actions, panels, properties

    rt.methods = []
    rt.connect()
    drain_until(lambda: bool(rt.methods), timeout=60)
    assert properties.needs_prepare("walk") is False and properties.needs_prepare("iseg") is True
    ob = grid_mesh("walked", 10, 10)
    assert actions.click_problem(ob, "iseg") == "Press Prepare first: the method needs its per-object work"
    assert actions.click_problem(ob, "walk") == ""
    st = actions.ready_to_click(ob, "walk")
    assert st.method == "walk" and st.scene_id and st.status == "sent"
    assert panels.scene_status(rt, ob)[1] != "ERROR"
    session, preview = actions.start_click(ob, (0.1, 0.9, 0.2, 1.0))
    assert session.on_event("LEFTMOUSE", "PRESS", False, False, lambda: 55) == "running"
    settle(rt)
    assert session.error == "" and session.scores is not None and len(session.scores) == 100
    assert 0 < session.selected <= 100
    assert rt.max_clicks == 64  # the backend's limit per query, from its info reply
    for i in range(1, rt.max_clicks):
        assert session.add(i % 100, positive=i % 3 != 0)
    settle(rt)
    assert session.error == "" and len(session.clicks) == 64
    assert not session.add(7) and "At most 64 clicks" in session.error and len(session.clicks) == 64
    made = actions.finish_click(ob, session, bpy.context.scene.segany, preview.color, True, preview)
    assert made is not None and len(ob.segany_segments) == 1
    bpy.data.objects.remove(ob)
