"""The "SegAny" sidebar tab: what its panels and segment list draw for each state of the object's scene.

Their real draw() functions run on real Blender data and the add-on's real runtime; only the layout is a
recorder, because `bpy.types.UILayout` exists only inside a window and there is none headless. Every
operator and property the panels ask for must exist, so a renamed operator or property fails here.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from conftest import PKG, grid_mesh, import_donut


class Layout:
    """Records what a draw() asks of a UILayout (operators with whether they are enabled, props, labels)."""

    def __init__(self, log: list[tuple], enabled: bool = True) -> None:
        self.log = log
        self.enabled = enabled
        self.scale_y = 1.0

    def _child(self, **_kw: object) -> Layout:
        return Layout(self.log, self.enabled)

    box = row = column = _child

    def label(self, text: str = "", icon: str = "NONE") -> None:
        self.log.append(("label", text, icon))

    def prop(self, data: object, name: str, **_kw: object) -> None:
        self.log.append(("prop", data, name))

    def operator(self, idname: str, **_kw: object) -> SimpleNamespace:
        self.log.append(("operator", idname, self.enabled))
        return SimpleNamespace()

    def separator(self) -> None:
        self.log.append(("separator",))

    def progress(self, factor: float, type: str, text: str) -> None:
        self.log.append(("progress", factor, text))

    def template_list(self, *args: object, **_kw: object) -> None:
        self.log.append(("template_list", *args))


def draw(panel: type, context: object) -> list[tuple]:
    """Run a panel's own draw() with a recording layout; check that what it asks for exists."""
    import bpy

    log: list[tuple] = []
    panel.draw(SimpleNamespace(layout=Layout(log)), context)
    for entry in log:
        if entry[0] == "operator":
            category, name = entry[1].split(".")
            assert hasattr(bpy.types, f"{category.upper()}_OT_{name}"), entry[1]
        elif entry[0] == "prop":
            assert entry[2] in entry[1].bl_rna.properties, entry[2]
        elif entry[0] == "template_list":
            _kind, _id, data, prop, active_data, active_prop = entry[1:7]
            assert prop in data.bl_rna.properties and active_prop in active_data.bl_rna.properties
    return log


def operators(log: list[tuple]) -> dict[str, bool]:
    return {e[1]: e[2] for e in log if e[0] == "operator"}


@pytest.mark.parametrize(
    ("status", "prepare_shown", "tool_enabled"),
    [("not sent", True, False), ("preparing", False, False), ("prepared", True, True), ("failed", True, False)],
)
def test_main_panel_follows_the_scene_state(
    addon: object, fresh_scene: object, status: str, prepare_shown: bool, tool_enabled: bool
) -> None:
    import bpy
    from bl_ext.user_default.segany import actions, panels, runtime

    ob = grid_mesh(x=4, y=4)
    bpy.context.view_layer.objects.active = ob
    st = runtime.current().state(actions.object_key(ob))
    st.status, st.method, st.fraction, st.message = status, "iseg", 0.4, "training"
    try:
        log = draw(panels.SEGANY_PT_main, bpy.context)
        shown = panels.scene_status(runtime.current(), ob)[0]
        assert (actions.click_problem(ob) == "") is tool_enabled  # the tool's poll greys it out, with a reason
    finally:
        runtime.current().objects.pop(actions.object_key(ob))
    props = [e[2] for e in log if e[0] == "prop"]
    assert props == ["method", "output", "output_name"]  # the main actions; the rest is under Advanced
    main = ("segany.prepare", "segany.cancel", "segany.click_tool")
    steps = [e[1] for e in log if e[0] == "operator" and e[1] in main]
    assert steps == ["segany.prepare" if prepare_shown else "segany.cancel", "segany.click_tool"]  # in their order
    labels = [e[1] for e in log if e[0] == "label"]
    assert labels[1] == shown  # after the backend's status line
    if status == "preparing":
        assert ("progress", 0.4, "40%") in log and "Preparing iseg: 40% training" in labels


def test_main_panel_offers_the_backend_buttons_for_its_state(addon: object, fresh_scene: object) -> None:
    import bpy
    from bl_ext.user_default.segany import panels, runtime

    backend = runtime.current().backend
    saved = backend.status, backend.message
    try:
        for status, start, restart in (("stopped", True, False), ("dead", False, True), ("running", False, True)):
            backend.status, backend.message = status, f"backend {status}"
            ops = operators(draw(panels.SEGANY_PT_main, bpy.context))
            assert ("segany.backend_start" in ops) is start and ("segany.backend_restart" in ops) is restart
        assert ("label", "Select a mesh, splat or point-cloud object", "NONE") in draw(
            panels.SEGANY_PT_main, bpy.context
        )
    finally:
        backend.status, backend.message = saved


def test_advanced_settings_are_in_a_collapsed_sub_panel_with_split_properties(
    addon: object, fresh_scene: object
) -> None:
    """Blender's conventions: one sidebar tab; the main panel's actions first; what most uses leave alone in
    a sub-panel that starts closed; properties drawn with their labels split from the values."""
    import bpy
    from bl_ext.user_default.segany import panels

    assert {cls.bl_category for cls in panels.CLASSES if hasattr(cls, "bl_category")} == {"SegAny"}
    adv = panels.SEGANY_PT_advanced
    assert adv.bl_parent_id == "SEGANY_PT_main" and adv.bl_options == {"DEFAULT_CLOSED"}
    assert panels.CLASSES.index(adv) > panels.CLASSES.index(panels.SEGANY_PT_segments)  # below the segments
    assert not adv.poll(bpy.context)
    bpy.context.view_layer.objects.active = grid_mesh(x=4, y=4)
    assert adv.poll(bpy.context)
    for panel, props in (
        (panels.SEGANY_PT_main, ["method", "output", "output_name"]),
        (adv, ["prior", "options", "binary", "use_threshold", "threshold", "pick_radius"]),
    ):
        layout = Layout([])
        panel.draw(SimpleNamespace(layout=layout), bpy.context)
        assert layout.use_property_split is True and layout.use_property_decorate is False, panel
        assert [e[2] for e in layout.log if e[0] == "prop"] == props
        draw(panel, bpy.context)  # and each exists


@pytest.mark.parametrize("kind", ["mesh", "splats"])
def test_segments_panel_lists_segments_with_delete_apply_and_export_for_splats(
    addon: object, fresh_scene: object, kind: str
) -> None:
    import bpy
    import numpy as np
    from bl_ext.user_default.segany import actions, panels, scene_read

    ob = grid_mesh(x=4, y=4) if kind == "mesh" else import_donut()
    bpy.context.view_layer.objects.active = ob
    n = scene_read.read_object(ob).n_elements
    actions.accept(ob, np.linspace(0, 1, n, dtype=np.float32), 0.5, "attribute", "part")
    assert panels.SEGANY_PT_segments.poll(bpy.context)
    log = draw(panels.SEGANY_PT_segments, bpy.context)
    (listing,) = [e for e in log if e[0] == "template_list"]
    assert listing[1] == "SEGANY_UL_segments" and listing[3:] == (ob, "segany_segments", ob, "segany_segment_index")
    ops = operators(log)
    assert "segany.segment_remove" in ops and "segany.segment_apply" in ops
    assert ("segany.export_ply" in ops) is (kind == "splats")
    row: list[tuple] = []
    seg = ob.segany_segments[0]
    panels.SEGANY_UL_segments.draw_item(None, bpy.context, Layout(row), ob, seg, 0, ob, "segany_segment_index")
    assert [e[2] for e in row if e[0] == "prop"] == ["color", "name"]  # colour swatch, rename in place
    assert ("label", f"{seg.count:,}", "NONE") in row


class PrefsView:
    """The real add-on preferences with a recording layout (AddonPreferences.layout exists only when drawn)."""

    def __init__(self, prefs: object, layout: Layout) -> None:
        self.layout = layout
        self._prefs = prefs

    def __getattr__(self, name: str) -> object:
        return getattr(self._prefs, name)


@pytest.mark.parametrize(("mode", "fields"), [("START", {"python_path"}), ("CONNECT", {"host", "port", "token_file"})])
def test_preferences_draw_the_settings_of_the_chosen_backend_mode(addon: object, mode: str, fields: set[str]) -> None:
    import bpy
    from bl_ext.user_default.segany import preferences, runtime

    prefs = bpy.context.preferences.addons[PKG].preferences
    saved = prefs.backend_mode
    prefs.backend_mode = mode
    try:
        log: list[tuple] = []
        preferences.SEGANY_AP_preferences.draw(PrefsView(prefs, Layout(log)), bpy.context)
        line = preferences.status_line(runtime.current(), prefs)
    finally:
        prefs.backend_mode = saved
    shown = {e[2] for e in log if e[0] == "prop"}
    for name in shown:
        assert name in prefs.bl_rna.properties, name
    common = {"backend_mode", "device", "cache_dir", "sam_checkpoint", "clip_checkpoint"}
    assert shown == common | fields
    assert ("label", *line) in log
    assert set(operators(log)) == {"segany.backend_start", "segany.backend_restart", "segany.backend_stop"}


def test_the_interpreter_message_says_where_and_the_panel_offers_the_preferences(
    addon: object, fresh_scene: object
) -> None:
    import bpy
    from bl_ext.user_default.segany import panels, preferences, runtime

    prefs = bpy.context.preferences.addons[PKG].preferences
    backend = runtime.current().backend
    saved = prefs.python_path, backend.status
    try:
        prefs.python_path = ""
        backend.status = "stopped"
        text, icon = preferences.status_line(runtime.current(), prefs)
        assert "Edit > Preferences > Add-ons > SegAny > Backend Python" in text and icon == "ERROR"
        assert prefs.bl_rna.properties["python_path"].name == "Backend Python"  # the name the message cites
        assert "segany.open_preferences" in operators(draw(panels.SEGANY_PT_main, bpy.context))
    finally:
        prefs.python_path, backend.status = saved
    assert "segany.open_preferences" not in operators(draw(panels.SEGANY_PT_main, bpy.context))


def test_open_preferences_shows_segany_in_the_add_ons_section(addon: object) -> None:
    """Headless there is no window to open, so Blender's own `preferences.addon_show` fails at its last
    step; what it set up before that (the section, the search for SegAny) is what the user sees."""
    import bpy

    context = bpy.context
    context.preferences.active_section = "INTERFACE"
    with pytest.raises(RuntimeError, match="userpref_show"):
        bpy.ops.segany.open_preferences()
    assert context.preferences.active_section == "ADDONS" and context.window_manager.addon_search == "SegAny"


def test_settings_changed_while_the_backend_runs_say_they_apply_on_restart(rt: object) -> None:
    import bpy
    from bl_ext.user_default.segany import panels, preferences

    rt.backend.ensure()
    prefs = bpy.context.preferences.addons[PKG].preferences
    saved = prefs.cache_dir
    note = ("label", preferences.RESTART_NOTE, "INFO")
    assert not preferences.restart_pending(rt, prefs)
    try:
        prefs.cache_dir = saved + "_elsewhere"
        assert preferences.restart_pending(rt, prefs)
        log: list[tuple] = []
        preferences.SEGANY_AP_preferences.draw(PrefsView(prefs, Layout(log)), bpy.context)
        assert note in log and "segany.backend_restart" in operators(log)
        sidebar = draw(panels.SEGANY_PT_main, bpy.context)
        assert note in sidebar and "segany.backend_restart" in operators(sidebar)
    finally:
        prefs.cache_dir = saved
    assert not preferences.restart_pending(rt, prefs)  # back to what it runs with: nothing to restart for
