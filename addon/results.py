"""Write a selection (a score per vertex / point) into Blender data. Plain functions: the operators, the
scripting API, tests and benchmarks all call these. Bulk writes go through foreach_set."""

from __future__ import annotations

import bmesh
import bpy
import numpy as np

from . import scene_read, selection_math, splat_layout

PREVIEW_ATTRIBUTE = "segany_preview"
_DROP = "segany_drop"
OUTPUTS = ("vertex_group", "attribute", "bool_attribute", "selection", "material", "face_set", "object")


def _n(data: bpy.types.ID) -> int:
    return len(data.vertices) if isinstance(data, bpy.types.Mesh) else len(data.points)


def _check_size(data: bpy.types.ID, values: np.ndarray) -> None:
    if len(values) != _n(data):
        raise ValueError(f"{len(values)} scores for {_n(data)} elements of {data.name!r}: the geometry changed")


def _vertex_group_names(data: bpy.types.ID) -> set[str]:
    """The vertex-group names of a mesh: kept on the mesh, but listed by Python only through its objects."""
    if not isinstance(data, bpy.types.Mesh):
        return set()
    user = next((ob for ob in bpy.data.objects if ob.data == data), None)
    return {g.name for g in user.vertex_groups} if user is not None else set()


def attribute_name(data: bpy.types.ID, name: str) -> str:
    """name, or the first of name.001, name.002 … that no vertex group holds: Blender refuses an attribute
    named like a vertex group (4.2–5.0 return None, 5.3 renames it), so "Segment" saved as a vertex group
    and then as an attribute becomes "Segment.001", the same one each time it is applied again."""
    taken = _vertex_group_names(data)
    k, candidate = 0, name
    while candidate in taken:
        k += 1
        candidate = f"{name}.{k:03d}"
    return candidate


def _write_point_attribute(data: bpy.types.ID, name: str, values: np.ndarray, data_type: str) -> bpy.types.Attribute:
    """A POINT-domain attribute (mesh vertices or point-cloud points), recreated if its type or domain differ."""
    _check_size(data, values)
    name = attribute_name(data, name)
    attr = data.attributes.get(name)
    if attr is not None and (attr.data_type != data_type or attr.domain != "POINT"):
        data.attributes.remove(attr)
        attr = None
    if attr is None:
        attr = data.attributes.new(name, data_type, "POINT")
    if attr is None or attr.name != name:
        if attr is not None:
            data.attributes.remove(attr)
        raise ValueError(f"Blender refused an attribute named {name!r} on {data.name!r}; choose another name")
    attr.data.foreach_set("value", values)
    data.update_tag()
    return attr


def write_float_attribute(data: bpy.types.ID, name: str, values: np.ndarray) -> bpy.types.Attribute:
    """A FLOAT attribute of per-element scores."""
    return _write_point_attribute(data, name, np.ascontiguousarray(values, np.float32), "FLOAT")


def write_int_attribute(data: bpy.types.ID, name: str, values: np.ndarray) -> bpy.types.Attribute:
    """An INT attribute: a part number per element (segment everything)."""
    return _write_point_attribute(data, name, np.ascontiguousarray(values, np.int32), "INT")


def write_bool_attribute(data: bpy.types.ID, name: str, mask: np.ndarray) -> bpy.types.Attribute:
    """A BOOLEAN attribute: usable by geometry nodes as a selection."""
    return _write_point_attribute(data, name, np.ascontiguousarray(mask, bool), "BOOLEAN")


def write_vertex_group(
    obj: bpy.types.Object, name: str, scores: np.ndarray, threshold: float, binary: bool = True
) -> bpy.types.VertexGroup:
    """A vertex group whose weights are 1.0 above threshold (binary) or the scores themselves.

    Weights are written one `add` call per distinct weight level (see selection_math.weight_buckets):
    Blender has no bulk setter for vertex-group weights.
    """
    if obj.type != "MESH":
        raise ValueError(f"{obj.name!r} is a {obj.type.lower()}: vertex groups exist only on meshes")
    _check_size(obj.data, np.asarray(scores))
    w = selection_math.weights(scores, threshold, binary)
    old = obj.vertex_groups.get(name)
    if old is not None:  # replacing is far cheaper than un-assigning every vertex; modifiers use the name
        obj.vertex_groups.remove(old)
    vg = obj.vertex_groups.new(name=name)
    for weight, idx in selection_math.weight_buckets(w):
        vg.add(idx.tolist(), weight, "REPLACE")
    obj.vertex_groups.active_index = vg.index
    obj.data.update_tag()
    return vg


def _topology(mesh: bpy.types.Mesh) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    totals = np.empty(len(mesh.polygons), np.int32)
    mesh.polygons.foreach_get("loop_total", totals)
    loop_verts = np.empty(len(mesh.loops), np.int32)
    mesh.loops.foreach_get("vertex_index", loop_verts)
    edges = np.empty(len(mesh.edges) * 2, np.int32)
    mesh.edges.foreach_get("vertices", edges)
    return totals, loop_verts, edges


def faces_of(mesh: bpy.types.Mesh, mask: np.ndarray, rule: str = "all") -> np.ndarray:
    """Face mask from a vertex mask (all corners selected, or a majority)."""
    totals, loop_verts, _ = _topology(mesh)
    return selection_math.face_mask(mask, totals, loop_verts, rule)


def set_selection(obj: bpy.types.Object, mask: np.ndarray) -> int:
    """Make the mask the mesh's vertex / edge / face selection (edit mode or object mode); returns the count."""
    mesh = obj.data
    mask = np.ascontiguousarray(mask, bool)
    _check_size(mesh, mask)
    if obj.mode == "EDIT":
        bm = bmesh.from_edit_mesh(mesh)
        bm.verts.ensure_lookup_table()
        for v, sel in zip(bm.verts, mask.tolist(), strict=True):
            v.select_set(sel)
        bm.select_flush_mode()
        bmesh.update_edit_mesh(mesh, loop_triangles=False, destructive=False)
        return int(mask.sum())
    totals, loop_verts, edges = _topology(mesh)
    mesh.vertices.foreach_set("select", mask)
    mesh.edges.foreach_set("select", selection_math.edge_mask(mask, edges))
    mesh.polygons.foreach_set("select", selection_math.face_mask(mask, totals, loop_verts, "all"))
    mesh.update_tag()
    return int(mask.sum())


def add_material_slot(obj: bpy.types.Object, name: str, color: tuple[float, ...], mask: np.ndarray) -> int:
    """A new material (segment colour in viewport and Principled base colour) on the segment's faces."""
    mesh = obj.data
    mat = bpy.data.materials.new(name)
    mat.diffuse_color = (*color[:3], 1.0)
    if mat.node_tree is None:  # Blender < 5.0 makes the node tree on request
        mat.use_nodes = True
    bsdf = mat.node_tree.nodes.get("Principled BSDF") if mat.node_tree else None
    if bsdf is not None:
        bsdf.inputs["Base Color"].default_value = (*color[:3], 1.0)
    if len(mesh.materials) == 0:
        mesh.materials.append(None)  # an empty first slot keeps the other faces as they looked
    mesh.materials.append(mat)
    slot = len(mesh.materials) - 1
    faces = faces_of(mesh, mask, "majority")
    idx = np.empty(len(mesh.polygons), np.int32)
    mesh.polygons.foreach_get("material_index", idx)
    idx[faces] = slot
    mesh.polygons.foreach_set("material_index", idx)
    mesh.update_tag()
    return slot


def add_face_set(mesh: bpy.types.Mesh, mask: np.ndarray) -> int:
    """Put the segment's faces into a new sculpt face set (the `.sculpt_face_set` FACE attribute)."""
    faces = faces_of(mesh, mask, "majority")
    attr = mesh.attributes.get(".sculpt_face_set")
    ids = np.ones(len(mesh.polygons), np.int32)
    if attr is None:
        attr = mesh.attributes.new(".sculpt_face_set", "INT", "FACE")
    else:
        attr.data.foreach_get("value", ids)
    new_id = int(ids.max(initial=0)) + 1
    ids[faces] = new_id
    attr.data.foreach_set("value", ids)
    mesh.update_tag()
    return new_id


def separate(obj: bpy.types.Object, mask: np.ndarray, name: str) -> bpy.types.Object:
    """A new object holding only the segment (all attributes, materials and UVs kept); the original stays."""
    mask = np.ascontiguousarray(mask, bool)
    _check_size(obj.data, mask)
    new = obj.copy()
    new.data = obj.data.copy()
    new.name = new.data.name = name
    for coll in obj.users_collection:
        coll.objects.link(new)
    if obj.type == "MESH":
        bm = bmesh.new()
        bm.from_mesh(new.data)
        bm.verts.ensure_lookup_table()
        drop = [bm.verts[i] for i in np.flatnonzero(~mask).tolist()]
        bmesh.ops.delete(bm, geom=drop, context="VERTS")
        bm.to_mesh(new.data)
        bm.free()
    else:
        write_bool_attribute(new.data, _DROP, ~mask)
        _remove_points(new)
    return new


def _remove_points(obj: bpy.types.Object) -> None:
    """Delete the flagged points of a point cloud: there is no bmesh for point clouds, so apply a tiny
    geometry-nodes modifier (Delete Geometry on the flag attribute)."""
    tree = bpy.data.node_groups.new(".segany_delete_points", "GeometryNodeTree")
    tree.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    tree.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nin, nout = tree.nodes.new("NodeGroupInput"), tree.nodes.new("NodeGroupOutput")
    named = tree.nodes.new("GeometryNodeInputNamedAttribute")
    named.data_type = "BOOLEAN"
    named.inputs["Name"].default_value = _DROP
    delete = tree.nodes.new("GeometryNodeDeleteGeometry")
    tree.links.new(nin.outputs[0], delete.inputs["Geometry"])
    tree.links.new(named.outputs["Attribute"], delete.inputs["Selection"])
    tree.links.new(delete.outputs["Geometry"], nout.inputs[0])
    mod = obj.modifiers.new("segany_separate", "NODES")
    mod.node_group = tree
    try:
        with bpy.context.temp_override(active_object=obj, object=obj):
            bpy.ops.object.modifier_apply(modifier=mod.name)
    finally:
        bpy.data.node_groups.remove(tree)
    drop = obj.data.attributes.get(_DROP)
    if drop is not None:
        obj.data.attributes.remove(drop)


def show_preview(data: bpy.types.ID, scores: np.ndarray, threshold: float, color: tuple[float, ...]) -> None:
    """Colour the elements live while clicking: a POINT colour attribute, made the active one."""
    colors = selection_math.preview_colors(scores, threshold, color)
    attr = data.color_attributes.get(PREVIEW_ATTRIBUTE)
    if attr is None:
        attr = data.color_attributes.new(PREVIEW_ATTRIBUTE, "FLOAT_COLOR", "POINT")
    attr.data.foreach_set("color", colors.ravel())
    if hasattr(data.color_attributes, "active_color"):  # meshes; point clouds have no active colour
        data.color_attributes.active_color = attr
    data.update_tag()


def write_label_colours(
    data: bpy.types.ID, name: str, labels: np.ndarray, colours: np.ndarray, none: tuple[float, ...]
) -> bpy.types.Attribute:
    """A POINT colour attribute `name` with each element's label colour (`none` where the label is -1), the
    active one on meshes: how parts and word labels show (one function for both, so they look alike)."""
    rgba = np.empty((len(colours) + 1, 4), np.float32)
    rgba[:-1, :3], rgba[:-1, 3] = colours, 1.0
    rgba[-1] = none
    per_element = rgba[np.where(labels >= 0, labels, len(colours))]
    attr = data.color_attributes.get(name)
    if attr is not None and (attr.data_type != "FLOAT_COLOR" or attr.domain != "POINT"):
        data.color_attributes.remove(attr)
        attr = None
    if attr is None:
        attr = data.color_attributes.new(name, "FLOAT_COLOR", "POINT")
    attr.data.foreach_set("color", np.ascontiguousarray(per_element).ravel())
    if hasattr(data.color_attributes, "active_color"):  # meshes; point clouds have no active colour
        data.color_attributes.active_color = attr
    data.update_tag()
    return attr


def clear_preview(data: bpy.types.ID) -> None:
    attr = data.color_attributes.get(PREVIEW_ATTRIBUTE)
    if attr is not None:
        data.color_attributes.remove(attr)
        data.update_tag()


class AttributePreview:
    """Meshes: the click tool's live selection as a colour attribute, shown in Solid mode's vertex colours.
    The same show / clear / close calls as the splat and point overlay (overlay.PointOverlay)."""

    error = ""  # a colour attribute has no draw step that can fail (the overlay reports its own)

    def __init__(self, obj: bpy.types.Object, color: tuple[float, ...]) -> None:
        self.name = obj.name
        self.key = obj.session_uid
        self.color = color

    def _data(self) -> bpy.types.ID | None:
        obj = bpy.data.objects.get(self.name)
        return obj.data if obj is not None and obj.session_uid == self.key else None

    def show(self, scores: np.ndarray, threshold: float) -> None:
        data = self._data()
        if data is not None:
            show_preview(data, scores, threshold, self.color)

    def clear(self) -> None:
        data = self._data()
        if data is not None:
            clear_preview(data)

    close = clear


def export_splat_ply(obj: bpy.types.Object, path: str, mask: np.ndarray | None) -> int:
    """Write the (selected) Gaussians of a splat object as a standard 3DGS PLY; returns how many."""
    scene = scene_read.read_object(obj)
    if scene.kind != "splats":
        raise ValueError(f"{obj.name!r} is not a Gaussian-splat object (no f_dc_* / radiance:base attributes)")
    return splat_layout.write_ply(path, scene.arrays, mask)


def supports(obj: bpy.types.Object, output: str) -> bool:
    """Whether obj can hold this output: vertex groups need a mesh; selections, materials and face sets a
    mesh with faces (a splat mesh from the PLY importer has none); attributes and objects fit every kind."""
    if output in ("attribute", "bool_attribute", "object"):
        return True
    if output == "vertex_group":
        return obj.type == "MESH"
    return output in OUTPUTS and obj.type == "MESH" and len(obj.data.polygons) > 0


def check_output(obj: bpy.types.Object, output: str) -> None:
    """Refuse an output before anything is written, with what to use instead."""
    if output not in OUTPUTS:
        raise ValueError(f"unknown output {output!r}; expected one of {OUTPUTS}")
    if not supports(obj, output):
        raise ValueError(f"{obj.name!r} cannot hold output {output!r}; use 'attribute' for splats and points")


def apply(
    obj: bpy.types.Object,
    scores: np.ndarray,
    threshold: float,
    output: str,
    name: str,
    color: tuple[float, ...] = (1.0, 0.3, 0.1, 1.0),
    binary: bool = True,
) -> object:
    """Write one selection in the chosen form; returns what was made (group, attribute, slot, id, object)."""
    check_output(obj, output)
    scores = np.asarray(scores, np.float32)
    mask = scores >= threshold
    if output == "vertex_group":
        return write_vertex_group(obj, name, scores, threshold, binary)
    if output == "attribute":
        return write_float_attribute(obj.data, name, scores)
    if output == "bool_attribute":
        return write_bool_attribute(obj.data, name, mask)
    if output == "object":
        return separate(obj, mask, name)
    if output == "selection":
        return set_selection(obj, mask)
    if output == "material":
        return add_material_slot(obj, name, color, mask)
    return add_face_set(obj.data, mask)
