"""Label from words in the add-on with the real backend: SAS on its tiny preset with the ground-truth
`oracle_text` language sources (real CLIP weights cannot be downloaded here). One integer attribute with a
colour per word, a vertex group (meshes) or float attribute (splats) per word, one undo step, the panel's
hint where CLIP weights come from, and clear errors that leave everything else working. The button's
background wait is modal and cannot run headless; it calls the plain functions tested here."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TINY, drain_until, raw_donut
from test_addon_panels import draw
from test_addon_saga import raw_splat_mesh

WORDS = ["box", "ball"]
STRIDE = 12  # every 12th Gaussian of the real donut: a real splat scene that prepares in seconds


def _oracle(labels: np.ndarray, names: list[str]) -> dict:
    return {"labels": labels.tolist(), "names": names, "confusion": 0.0, "noise": 0.0}


@pytest.fixture(scope="module", autouse=True)
def catalogue(rt: object) -> None:
    """The backend's method list, as the sidebar has it once connected (sas, its default prior)."""
    rt.connect()
    drain_until(lambda: any(m["name"] == "sas" for m in rt.methods))


@pytest.fixture(scope="module")
def box_and_ball_name(rt: object) -> str:
    """A box with a ball above it, one mesh, labelled for labels by the oracle (a label per triangle)."""
    import bpy
    from bl_ext.user_default.segany import api, scene_read

    for ob in list(bpy.data.objects):
        bpy.data.objects.remove(ob)
    bpy.ops.mesh.primitive_uv_sphere_add(segments=16, ring_count=8, radius=0.6, location=(0, 0, 1.6))
    ball = bpy.context.active_object
    bpy.ops.mesh.primitive_cube_add(size=1.6)
    box = bpy.context.active_object  # joined into the box, whose local space is the world's
    with bpy.context.temp_override(active_object=box, selected_editable_objects=[box, ball]):
        bpy.ops.object.join()
    box.name = "box_and_ball"
    arrays = scene_read.read_object(box).arrays
    tri_z = arrays["vertices"][arrays["faces"]][:, :, 2].mean(axis=1)
    done = api.label(box, WORDS, method="sas", prior="oracle_text", options=TINY,
                     prior_options=_oracle((tri_z > 0.9).astype(np.int64), WORDS))  # fmt: skip
    assert done.words == WORDS
    return box.name


def test_a_mesh_gets_an_int_attribute_colours_and_a_group_per_word(box_and_ball_name: str) -> None:
    import bpy
    from bl_ext.user_default.segany import labels, scene_read

    ob = bpy.data.objects[box_and_ball_name]
    done = labels.relabel(ob, WORDS)
    n = len(ob.data.vertices)
    assert done.labels.shape == (n,) and done.relevancy.shape == (n, 2)
    np.testing.assert_array_equal(scene_read.read_attribute(ob.data, labels.LABEL_ATTRIBUTE), done.labels)
    z = np.array([v.co.z for v in ob.data.vertices])
    assert np.mean(done.labels[z > 0.95] == 1) > 0.9 and np.mean(done.labels[z < 0.85] == 0) > 0.9
    colours = scene_read.read_attribute(ob.data, labels.LABEL_COLOUR)[:, :3]
    for k in range(2):  # one colour per word, the words differently
        assert len(np.unique(colours[done.labels == k], axis=0)) == 1
    np.testing.assert_allclose(colours[done.labels == 0][0], labels.word_colours(2)[0], atol=1e-6)
    for k, word in enumerate(WORDS):
        group = ob.vertex_groups[f"label_{word}"]
        members = {v.index for v in ob.data.vertices for g in v.groups if g.group == group.index}
        assert members == set(np.flatnonzero(done.labels == k).tolist())
    assert labels.legend(ob)[0] == WORDS


def test_the_operator_is_one_undo_step_and_a_new_list_replaces_the_old(box_and_ball_name: str) -> None:
    import bpy
    from bl_ext.user_default.segany import labels

    ob = bpy.data.objects[box_and_ball_name]
    bpy.context.view_layer.objects.active = ob
    labels.relabel(ob, WORDS)
    bpy.ops.ed.undo_push(message="before label")
    assert bpy.ops.segany.label("EXEC_DEFAULT", True, words="ball") == {"FINISHED"}
    ob = bpy.data.objects[box_and_ball_name]
    assert labels.legend(ob)[0] == ["ball"]
    assert "label_ball" in ob.vertex_groups and "label_box" not in ob.vertex_groups  # the old word's group went
    bpy.ops.ed.undo()
    ob = bpy.data.objects[box_and_ball_name]
    assert labels.legend(ob)[0] == WORDS and "label_box" in ob.vertex_groups


def test_bad_words_change_nothing_and_segmenting_still_works(box_and_ball_name: str) -> None:
    import bpy
    from bl_ext.user_default.segany import api, labels, scene_read

    ob = bpy.data.objects[box_and_ball_name]
    before = scene_read.read_attribute(ob.data, labels.LABEL_ATTRIBUTE).copy()
    with pytest.raises(ValueError, match="type the words"):
        api.label(ob, [])
    with pytest.raises(ValueError, match="too long"):
        labels.relabel(ob, ["x" * 80])
    with pytest.raises(api.RemoteError) as err:  # the backend's rule: each label its own word
        labels.relabel(ob, ["ball", "Ball"])
    assert err.value.code == "bad_request" and "twice" in err.value.message
    np.testing.assert_array_equal(scene_read.read_attribute(ob.data, labels.LABEL_ATTRIBUTE), before)
    assert labels.legend(ob)[0] == WORDS
    done = api.segment(ob, clicks=[(0, 1)], method="iseg", options=TINY, name="still")
    assert done.count > 0


def test_the_panel_lists_the_words_and_the_button_says_why_it_cannot_run(box_and_ball_name: str) -> None:
    import bpy
    from bl_ext.user_default.segany import panels

    ob = bpy.data.objects[box_and_ball_name]
    bpy.context.view_layer.objects.active = ob
    log = draw(panels.SEGANY_PT_labels, bpy.context)
    assert ("operator", "segany.label", True) in log
    shown = [e[1] for e in log if e[0] == "label"]
    assert "0  box" in shown and "1  ball" in shown
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    bpy.context.scene.collection.objects.link(cam)
    bpy.context.view_layer.objects.active = cam
    assert not bpy.ops.segany.label.poll()


def test_without_clip_weights_the_panel_and_the_error_say_what_to_fetch(rt: object, fresh_scene: object) -> None:
    import bpy
    from bl_ext.user_default.segany import api, labels, panels, preferences

    from segany import models

    if models.where("clip_vit_b_16").is_file():
        pytest.skip("this machine has the CLIP model fetched")
    assert not preferences.get().clip_checkpoint
    bpy.ops.mesh.primitive_cube_add()
    ob = bpy.context.active_object
    shown = [e[1] for e in draw(panels.SEGANY_PT_labels, bpy.context) if e[0] == "label"]
    assert any("segany models fetch clip_vit_b_16" in line for line in shown)
    with pytest.raises(api.RemoteError) as err:
        api.label(ob, ["seat"], options=TINY)  # the default language source: CLIP on mask crops
    assert err.value.code == "bad_request" and "segany models fetch clip_vit_b_16" in err.value.message
    assert labels.LABEL_ATTRIBUTE not in ob.data.attributes


def test_splats_get_a_float_attribute_per_word(rt: object, fresh_scene: object) -> None:
    import bpy
    from bl_ext.user_default.segany import api, labels, scene_read

    full = raw_donut()
    arrays = {key: value[::STRIDE] for key, value in scene_read.read_object(full).arrays.items()}
    bpy.data.objects.remove(full)
    ob = raw_splat_mesh(arrays, "donut")
    scene = scene_read.read_object(ob)
    assert scene.kind == "splats"
    east = (scene.arrays["means"][:, 0] > 0).astype(np.int64)
    done = api.label(ob, ["west", "east"], prior="oracle_text", options=TINY,
                     prior_options=_oracle(east, ["west", "east"]))  # fmt: skip
    # words land on their Gaussians (swapped indices would give ~0.1); six 48-px views blur the boundary
    assert np.mean(done.labels == east) > 0.8
    np.testing.assert_array_equal(scene_read.read_attribute(ob.data, labels.LABEL_ATTRIBUTE), done.labels)
    for k, word in enumerate(["west", "east"]):
        np.testing.assert_allclose(scene_read.read_attribute(ob.data, f"label_{word}"), done.relevancy[:, k])
    assert np.median(done.relevancy[east == 1, 1]) > np.median(done.relevancy[east == 0, 1])


def test_the_clip_checkpoint_of_the_preferences_reaches_every_clip_source(addon: object) -> None:
    from bl_ext.user_default.segany.backend_process import BackendConfig

    config = BackendConfig(checkpoints={"clip": "/w/clip.bin", "sam": "/w/sam.pth"})
    assert config.prior_options("clip") == {"checkpoint": "/w/clip.bin"}
    assert config.prior_options("clip_crops") == {"clip": {"checkpoint": "/w/clip.bin"}}
    assert config.prior_options("clip_sources") == {"clip": {"checkpoint": "/w/clip.bin"}}
    assert config.prior_options("oracle_text") == {} and BackendConfig().prior_options("clip_crops") == {}
