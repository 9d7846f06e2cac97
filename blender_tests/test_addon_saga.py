"""SAGA in the add-on with the real backend (tiny preset): the scale slider re-asks the click session live,
and "Segment everything" writes its parts in every output form, on a mesh and on both Blender splat layouts
(the 5.0 importer's mesh and 5.3's point cloud), as one undo step, with clear errors. The modal paths (the
click tool, the button's background wait) cannot run headless; they call the plain functions tested here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, decoded_pointcloud, drain_until, raw_donut, vertex_only_mesh
from plyfile import PlyData
from test_addon_panels import draw


def settle(rt: object) -> None:
    """Let every query in flight answer and reach the main thread (the timer's drain)."""
    assert rt.bridge.wait_idle(120)
    drain_until(lambda: not rt.bridge.pending(), timeout=120)


def _scene_settings() -> object:
    import bpy

    settings = bpy.context.scene.segany
    settings.method_choice = "saga"
    return settings


STRIDE = 12  # every 12th Gaussian of the real donut (3,802): a real splat scene that clusters in about a second


def raw_splat_mesh(arrays: dict[str, np.ndarray], name: str) -> object:
    """The 5.0 importer's layout for these Gaussians: a face-less mesh, one FLOAT attribute per 3DGS property."""
    import bpy

    n, sh = len(arrays["means"]), arrays["sh"]
    rest = sh[:, 1:, :].transpose(0, 2, 1).reshape(n, -1)  # 3DGS stores f_rest channel-major
    values = {f"f_dc_{c}": sh[:, 0, c] for c in range(3)} | {f"f_rest_{i}": rest[:, i] for i in range(rest.shape[1])}
    values |= {f"scale_{i}": arrays["log_scales"][:, i] for i in range(3)}
    values |= {f"rot_{i}": arrays["quats"][:, i] for i in range(4)} | {"opacity": arrays["logit_opacities"]}
    me = bpy.data.meshes.new(name)
    me.vertices.add(n)
    me.vertices.foreach_set("co", arrays["means"].ravel())
    for prop, value in values.items():
        me.attributes.new(prop, "FLOAT", "POINT").data.foreach_set("value", np.ascontiguousarray(value, np.float32))
    ob = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(ob)
    return ob


@pytest.fixture(scope="module", params=["raw", "decoded"])
def donut_name(request: pytest.FixtureRequest, rt: object) -> str:
    """Part of the real donut in one of Blender's two splat layouts, prepared for saga (tiny); its name, since
    an undo replaces the Python object."""
    import bpy
    from bl_ext.user_default.segany import api, scene_read

    for ob in list(bpy.data.objects):
        bpy.data.objects.remove(ob)
    full = raw_donut()
    arrays = {key: value[::STRIDE] for key, value in scene_read.read_object(full).arrays.items()}
    bpy.data.objects.remove(full)
    ob = raw_splat_mesh(arrays, "donut") if request.param == "raw" else decoded_pointcloud(arrays, "donut53")
    assert scene_read.read_object(ob).kind == "splats" and ob.type == (
        "MESH" if request.param == "raw" else "POINTCLOUD"
    )
    st = api.prepare(ob, "saga", options=TINY)
    assert st.status == "prepared" and st.method == "saga", st.message
    return ob.name


@pytest.fixture
def donut(donut_name: str) -> object:
    """The prepared donut, looked up afresh and made active."""
    import bpy

    ob = bpy.data.objects[donut_name]
    bpy.context.view_layer.objects.active = ob
    return ob


def test_the_backend_lists_saga_with_a_scale_and_segment_everything(
    rt: object, donut: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a method takes comes from the backend's list, which a prepare fetches when nothing has yet (a script,
    or Prepare pressed before Start Backend): without it the slider would send no scale."""
    from bl_ext.user_default.segany import actions, api, properties, scene_read

    monkeypatch.setattr(rt, "methods", [])
    assert not properties.takes_scale("saga")  # the built-in list knows only iseg and sa3d
    api.prepare(donut, "saga", options=TINY)  # from the cache
    assert properties.takes_scale("saga") and properties.segments_everything("saga")
    assert not properties.takes_scale("sa3d") and not properties.segments_everything("iseg")
    monkeypatch.setattr(rt, "methods", [])
    st = rt.state(actions.object_key(donut))
    rt.prepare(actions.object_key(donut), scene_read.read_object(donut), "saga", None, TINY)  # the panel's path
    drain_until(lambda: st.status in ("prepared", "failed", "cancelled"))
    assert st.status == "prepared" and properties.takes_scale("saga")


def test_scale_slider_requeries_the_click_session_with_its_clicks(rt: object, donut: object) -> None:
    """Auto first (the panel says what it chose); turning Auto off keeps that scale; each slider step re-asks
    with the same clicks, in the object's local units, clamped to the trained range, and the newest step wins."""
    import bpy
    from bl_ext.user_default.segany import actions, panels, scale

    ob = donut
    settings = _scene_settings()
    settings.scale_auto = True
    session, preview = actions.start_click(ob, (0.1, 0.9, 0.2, 1.0))
    try:
        assert session.add(0)
        settle(rt)
        assert not session.error and session.scores is not None
        lo, hi = scale.trained_range(ob)  # the first answer said it
        assert 0 < lo < hi
        auto = scale.used_scale(ob)
        assert lo <= auto <= hi
        labels = [e[1] for e in draw(panels.SEGANY_PT_main, bpy.context) if e[0] == "label"]
        assert f"Auto chose {scale.length_text(bpy.context.scene, auto)}" in labels
        assert any(text.startswith("Trained sizes ") for text in labels)

        settings.scale_auto = False  # the slider starts where auto was: the same selection, asked again
        assert settings.scale == pytest.approx(auto, rel=1e-5)
        settle(rt)
        counts = {}
        for value in (lo, hi):
            settings.scale = value
            settle(rt)
            assert session.clicks == [(0, 1)] and not session.error
            assert float(session.extras["scale"][0]) == pytest.approx(value, rel=1e-5)
            counts[value] = session.selected
        assert counts[lo] < counts[hi]  # a larger part at a larger scale: the slider changes the selection

        settings.scale = hi * 1000  # beyond what the features were trained at: kept at the largest
        assert settings.scale == pytest.approx(hi, rel=1e-5)

        ob.scale = (2.0, 2.0, 2.0)  # the backend's scales are local: a twice-as-large object halves the value
        bpy.context.view_layer.update()
        steps = np.geomspace(2 * lo, 2 * hi, 6)
        for value in steps:  # a drag: every step queued before any answer
            settings.scale = float(value)
        settle(rt)
        assert float(session.extras["scale"][0]) == pytest.approx(steps[-1] / 2, rel=1e-5)  # the newest won
    finally:
        ob.scale = (1.0, 1.0, 1.0)
        actions.finish_click(ob, session, settings, (0.1, 0.9, 0.2, 1.0), False, preview)
        settings.scale_auto = True
    assert scale.live(actions.object_key(ob)) is None  # ended: slider steps no longer re-ask it
    settings.scale = lo  # and nothing is sent
    assert not rt.bridge.pending()


@pytest.mark.parametrize("output", ["part_attribute", "attribute", "object", "ply"])
def test_segment_everything_writes_each_output_on_splats(
    rt: object, donut: object, tmp_path: Path, output: str
) -> None:
    """The button's operator at a fixed scale: parts written as chosen, and undo takes them all back."""
    import bpy
    from bl_ext.user_default.segany import everything, scale, scene_read

    name = donut.name
    n = scene_read.element_count(donut)
    objects_before = set(bpy.data.objects.keys())
    attrs_before = sorted(a.name for a in donut.data.attributes)
    _scene_settings()
    lo, hi = scale.trained_range(donut) or (None, None)
    bpy.ops.ed.undo_push(message="before everything")
    size = float(np.sqrt(lo * hi)) if lo else 0.05
    result = bpy.ops.segany.everything("EXEC_DEFAULT", True, output=output, name="bit", directory=str(tmp_path),
                                       scale=size)  # fmt: skip
    assert result == {"FINISHED"}
    ob = bpy.data.objects[name]
    labels = everything.request(ob, size)().labels  # the same answer again (the clustering is seeded)
    k = int(labels.max()) + 1
    assert labels.shape == (n,) and k >= 2
    names = everything.part_names("bit", k)
    if output == "part_attribute":
        np.testing.assert_array_equal(scene_read.read_attribute(ob.data, everything.PART_ATTRIBUTE), labels)
        colours = scene_read.read_attribute(ob.data, everything.PART_COLOUR)
        for part in range(k):  # one colour per part, different parts differently
            assert len(np.unique(colours[labels == part], axis=0)) == 1
        assert len(np.unique(colours[labels >= 0], axis=0)) == k
    elif output == "attribute":
        for part, attr in enumerate(names):
            np.testing.assert_array_equal(scene_read.read_attribute(ob.data, attr), labels == part)
    elif output == "object":
        sizes = [scene_read.element_count(bpy.data.objects[f"{name}_{part}"]) for part in names]
        assert sizes == [int((labels == part).sum()) for part in range(k)]
    else:
        files = sorted(tmp_path.glob("bit_*.ply"))
        assert [f.stem for f in files] == names
        counts = [PlyData.read(str(f))["vertex"].count for f in files]
        assert counts == [int((labels == part).sum()) for part in range(k)]
        assert "f_dc_0" in PlyData.read(str(files[0]))["vertex"].data.dtype.names  # a standard 3DGS PLY
    bpy.ops.ed.undo()
    ob = bpy.data.objects[name]
    assert sorted(a.name for a in ob.data.attributes) == attrs_before
    assert set(bpy.data.objects.keys()) == objects_before


def test_segment_everything_on_a_mesh_makes_vertex_groups_through_the_api(
    rt: object, fresh_scene: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A script's first call: the add-on has not yet asked the backend which methods can (the panel's
    background connect has not run), and finds out itself."""
    import bpy
    from bl_ext.user_default.segany import api

    monkeypatch.setattr(rt, "methods", [])

    bpy.ops.mesh.primitive_uv_sphere_add(segments=16, ring_count=8, radius=1.0, location=(0, 0, 1.2))
    cap = bpy.context.active_object
    bpy.ops.mesh.primitive_cylinder_add(vertices=16, radius=0.3, depth=1.6)
    with bpy.context.temp_override(active_object=cap, selected_editable_objects=[cap, bpy.context.active_object]):
        bpy.ops.object.join()
    done = api.everything(cap, scale="auto", output="vertex_group", name="piece", method="saga", options=TINY)
    assert done.output == "vertex_group" and done.count == len(done.made) >= 1 and done.scale > 0
    for part, group in enumerate(done.made):
        members = {v.index for v in cap.data.vertices for g in v.groups if g.group == group.index}
        assert members == set(np.flatnonzero(done.labels == part).tolist())
        assert group.name == f"piece_{part:02d}"


def test_the_button_says_why_it_cannot_run(rt: object, donut: object) -> None:
    import bpy
    from bl_ext.user_default.segany import actions, everything, runtime

    settings = _scene_settings()
    assert everything.everything_problem(donut, "saga") == ""
    settings.method_choice = "sa3d"
    try:
        assert everything.everything_problem(donut, "sa3d") == "sa3d cannot split an object into parts: choose saga"
        assert not bpy.ops.segany.everything.poll()
    finally:
        settings.method_choice = "saga"
    st = runtime.current().state(actions.object_key(donut))
    saved = st.status
    st.status = "not sent"
    try:
        assert everything.everything_problem(donut, "saga").startswith("Press Prepare first")
    finally:
        st.status = saved
    fresh = vertex_only_mesh("never_prepared")
    try:
        with pytest.raises(ValueError, match="Press Prepare first: 'never_prepared' is not prepared"):
            everything.request(fresh, "auto")
    finally:
        bpy.data.objects.remove(fresh)


def test_errors_are_reported_and_nothing_is_written(rt: object, donut: object) -> None:
    """A refused output, a bad scale and a backend refusal each fail loudly, before anything is written."""
    import bpy
    from bl_ext.user_default.segany import actions, api, everything, runtime, scene_read

    _scene_settings()
    before = sorted(a.name for a in donut.data.attributes)
    if donut.type == "POINTCLOUD":
        with pytest.raises(RuntimeError, match="vertex groups exist only on meshes"):
            bpy.ops.segany.everything(output="vertex_group")
    with pytest.raises(ValueError, match='length > 0 in Blender units or "auto"'):
        everything.request(donut, float("nan"))
    with pytest.raises(api.RemoteError, match="min_cluster_size") as err:
        everything.request(donut, "auto", min_cluster_size=50, sample=10)()
    assert err.value.code == "bad_request"
    st = runtime.current().state(actions.object_key(donut))
    rt.backend.ensure().drop_scene(st.scene_id)  # as after a backend restart: the operator must say so
    try:
        with pytest.raises(RuntimeError, match="not_found"):
            bpy.ops.segany.everything(output="part_attribute")
    finally:
        rt.send_sync(actions.object_key(donut), scene_read.read_object(donut))  # the later tests' scene back
    assert sorted(a.name for a in donut.data.attributes) == before


def test_the_click_tool_leaves_clicks_on_the_sidebar_to_its_slider(addon: object) -> None:
    """The tool's modal handler sees every event first; a click over the sidebar (or header) must reach the
    slider, and a click in the viewport is picked in the viewport's own region, not the sidebar's it was
    started from. Regions as Blender lays them out with region overlap: the sidebar lies over the main one."""
    from types import SimpleNamespace

    from bl_ext.user_default.segany import click_tool

    def region(kind: str, x: int, y: int, w: int, h: int) -> SimpleNamespace:
        return SimpleNamespace(type=kind, x=x, y=y, width=w, height=h)

    main = region("WINDOW", 0, 0, 800, 600)
    area = SimpleNamespace(regions=[
        region("HEADER", 0, 574, 800, 26), region("UI", 560, 0, 240, 574), region("TOOLS", 0, 0, 1, 1), main,
    ])  # fmt: skip
    assert click_tool.viewport_region(area, 300, 200) is main
    assert click_tool.viewport_region(area, 10, 10) is main  # the collapsed toolbar (1 px) covers nothing
    assert click_tool.viewport_region(area, 600, 200) is None  # on the sidebar
    assert click_tool.viewport_region(area, 300, 590) is None  # on the header
    assert click_tool.viewport_region(area, 900, 200) is None  # outside the area
    assert {"LEFTMOUSE", "RIGHTMOUSE"} <= click_tool.POINTER_BUTTONS
