"""Blender add-on tests with the real bpy module, headless.

bpy is a process-global singleton, so this process gets an ISOLATED Blender user directory (set before
bpy is imported) and the add-on is enabled the way Blender enables an extension
(`bl_ext.user_default.segany`, from a link to addon/ in that user directory's extension repository).
Tests that need a fresh Blender (install / uninstall, registration leaving nothing behind) run in a
subprocess (see `run_blender`). Modal operators, timers and the gpu module do not run headless: tests
call the plain functions and `registration.drain()` — the timer's body — directly.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from segany.samples import shared_data_dir

ROOT = Path(__file__).resolve().parent.parent
ADDON = ROOT / "addon"
PKG = "bl_ext.user_default.segany"
DONUT = shared_data_dir() / "splats" / "donut.ply"  # a real 3DGS PLY, 45,624 Gaussians
USER_DIR = Path(tempfile.mkdtemp(prefix="segany_blender_user_"))
os.environ["BLENDER_USER_RESOURCES"] = str(USER_DIR)
# The interpreter the add-on starts its backend with: this one, unless CI runs these tests on another Blender
# (a light venv without torch) and points at the main venv's.
BACKEND_PYTHON = os.environ.get("SEGANY_BACKEND_PYTHON") or sys.executable
os.environ.setdefault("OMP_NUM_THREADS", "1")  # backends started by the tests: one torch thread, no oversubscription

# Every method's "tiny" preset (its Options.presets), as the add-on sends a preset by name: a prepare takes about
# a second on a 2-core CI machine (iSeg on a ~500-vertex mesh, SA3D on the 45K-Gaussian donut).
TINY = {"preset": "tiny"}


def addon_utils() -> object:
    """Blender's addon_utils (importable only once bpy has set up its script paths)."""
    import bpy

    assert bpy.app.background
    return importlib.import_module("addon_utils")


def enable_addon() -> object:
    """Link addon/ into the isolated extension repository and enable it like Blender does."""
    import bpy

    repo = Path(bpy.utils.user_resource("EXTENSIONS")) / "user_default"
    repo.mkdir(parents=True, exist_ok=True)
    link = repo / "segany"
    if not link.exists():
        link.symlink_to(ADDON, target_is_directory=True)
    return addon_utils().enable(PKG, default_set=True, handle_error=None)


@pytest.fixture(scope="session")
def addon() -> object:
    """The enabled extension module; preferences point the backend at this venv, CPU, a temp cache."""
    import bpy

    module = enable_addon()
    prefs = bpy.context.preferences.addons[PKG].preferences
    prefs.python_path = BACKEND_PYTHON
    prefs.device = "CPU"
    prefs.cache_dir = str(USER_DIR / "cache")
    yield module
    addon_utils().disable(PKG, default_set=True)
    shutil.rmtree(USER_DIR)


@pytest.fixture(scope="session")
def rt(addon: object) -> object:
    """The session's runtime with a started backend (started once: importing torch takes seconds)."""
    from bl_ext.user_default.segany import runtime

    r = runtime.current()
    r.backend.ensure()
    return r


def drain_until(pred: Callable[[], bool], timeout: float = 60.0) -> None:
    """Run the add-on's timer body until pred() holds (timers do not fire in background mode)."""
    from bl_ext.user_default.segany import registration

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        registration.drain()
        if pred():
            return
        time.sleep(0.01)
    raise AssertionError(f"condition not met within {timeout} s")


@pytest.fixture
def fresh_scene() -> object:
    """An empty scene with the SegAny settings a new scene has (the add-on stays enabled): a test that chose a
    method must not choose it for the tests after it."""
    import bpy

    for ob in list(bpy.data.objects):
        bpy.data.objects.remove(ob)
    for coll in (bpy.data.meshes, bpy.data.pointclouds, bpy.data.materials):
        for item in list(coll):
            coll.remove(item)
    settings = bpy.context.scene.segany
    for name in settings.bl_rna.properties.keys():  # noqa: SIM118 (an RNA collection, not a dict)
        if name != "rna_type":
            settings.property_unset(name)
    return bpy.context.scene


def grid_mesh(name: str = "grid", x: int = 24, y: int = 24, size: float = 2.0) -> object:
    """A subdivided grid: a flat mesh whose vertex order we know (row-major, x fastest)."""
    import bpy

    bpy.ops.mesh.primitive_grid_add(x_subdivisions=x - 1, y_subdivisions=y - 1, size=size)
    ob = bpy.context.active_object
    ob.name = name
    return ob


def vertex_only_mesh(name: str = "points") -> object:
    """A face-less mesh without splat attributes: SegAny sends it as a point scene."""
    import bpy

    me = bpy.data.meshes.new(name)
    me.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)], [], [])
    ob = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(ob)
    return ob


def run_blender(script: str, timeout: float = 180.0, user_dir: Path | None = None) -> subprocess.CompletedProcess:
    """Run a Python script with bpy in a fresh process and an isolated user directory; fails loudly."""
    user = str(user_dir or Path(tempfile.mkdtemp(prefix="segany_bu_")))
    env = {**os.environ, "BLENDER_USER_RESOURCES": user, "SEGANY_BACKEND_PYTHON": BACKEND_PYTHON}
    body = textwrap.dedent(script)
    proc = subprocess.run(
        [sys.executable, "-c", body], env=env, capture_output=True, text=True, timeout=timeout, cwd=str(ROOT)
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"blender subprocess failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def import_donut() -> object:
    """The real donut.ply through this Blender's own PLY importer: up to 5.0 a face-less mesh with the raw 3DGS
    attributes (the `raw` layout); 5.3 makes a point cloud with decoded ones (`radiance:base`, `scale` …)."""
    import bpy

    assert bpy.ops.wm.ply_import(filepath=str(DONUT)) == {"FINISHED"}
    return bpy.context.active_object


def raw_donut() -> object:
    """The donut in the `raw` layout on every Blender: the importer's mesh where it makes one; where it makes a
    point cloud (5.3), the same mesh built from the file (a face-less mesh, one FLOAT attribute per PLY
    property besides x, y, z), as a .blend saved by an older Blender holds it."""
    import bpy
    from plyfile import PlyData

    ob = import_donut()
    if ob.type == "MESH":
        return ob
    bpy.data.objects.remove(ob)
    v = PlyData.read(str(DONUT))["vertex"]
    me = bpy.data.meshes.new("donut")
    me.vertices.add(len(v.data))
    me.vertices.foreach_set("co", np.stack([v["x"], v["y"], v["z"]], 1).astype(np.float32).ravel())
    for prop in v.data.dtype.names[3:]:
        me.attributes.new(prop, "FLOAT", "POINT").data.foreach_set("value", v[prop].astype(np.float32))
    ob = bpy.data.objects.new("donut", me)
    bpy.context.scene.collection.objects.link(ob)
    bpy.context.view_layer.objects.active = ob
    ob.select_set(True)
    return ob


def pointcloud_from_mesh(mesh: object, name: str) -> object:
    """A point-cloud object with a mesh's vertices and POINT attributes (the mesh is used up), through a
    geometry-nodes "Mesh to Points" modifier applied on an empty point cloud: Blender 4.2's `object.convert`
    has no POINTCLOUD target and point clouds have no Python API to add points."""
    import bpy

    source = bpy.data.objects.new(name + "_source", mesh)
    ob = bpy.data.objects.new(name, bpy.data.pointclouds.new(name))
    bpy.context.scene.collection.objects.link(ob)
    tree = bpy.data.node_groups.new(".segany_test_mesh_to_points", "GeometryNodeTree")
    tree.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    info, to_points = tree.nodes.new("GeometryNodeObjectInfo"), tree.nodes.new("GeometryNodeMeshToPoints")
    info.inputs["Object"].default_value = source
    tree.links.new(info.outputs["Geometry"], to_points.inputs["Mesh"])
    tree.links.new(to_points.outputs["Points"], tree.nodes.new("NodeGroupOutput").inputs[0])
    ob.modifiers.new("to_points", "NODES").node_group = tree
    with bpy.context.temp_override(active_object=ob, object=ob):
        assert bpy.ops.object.modifier_apply(modifier="to_points") == {"FINISHED"}
    bpy.data.node_groups.remove(tree)
    bpy.data.objects.remove(source)
    bpy.data.meshes.remove(mesh)
    assert ob.type == "POINTCLOUD" and len(ob.data.points) > 0
    return ob


def decoded_pointcloud(arrays: dict[str, np.ndarray], name: str = "splats53") -> object:
    """A 5.3-style splat point cloud: the decoded attributes on points (made from a vertex mesh)."""
    import bpy
    from bl_ext.user_default.segany import splat_layout

    n = len(arrays["means"])
    me = bpy.data.meshes.new(name + "_source")
    me.vertices.add(n)
    me.vertices.foreach_set("co", arrays["means"].ravel())
    kinds = {4: ("FLOAT_COLOR", "color"), 3: ("FLOAT_VECTOR", "vector")}
    for attr_name, values in splat_layout.to_decoded(arrays).items():
        if attr_name == "rotation":
            a = me.attributes.new(attr_name, "QUATERNION", "POINT")
            a.data.foreach_set("value", values.ravel())
            continue
        dtype, key = kinds[values.shape[1]]
        a = me.attributes.new(attr_name, dtype, "POINT")
        a.data.foreach_set(key, values.ravel())
    ob = pointcloud_from_mesh(me, name)
    assert len(ob.data.points) == n
    return ob


def camera_view(location: tuple[float, float, float], rotation: tuple[float, float, float], w: int, h: int) -> object:
    """A real camera's world → clip matrix for a w × h region: what `RegionView3D.perspective_matrix` is
    in a viewport looking through that camera (the click tool's picking input)."""
    import bpy

    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    bpy.context.scene.collection.objects.link(cam)
    cam.location, cam.rotation_euler = location, rotation
    bpy.context.view_layer.update()
    return cam.calc_matrix_camera(bpy.context.evaluated_depsgraph_get(), x=w, y=h) @ cam.matrix_world.inverted()
