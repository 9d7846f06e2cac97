"""Labelled shapes for the harness: a Princeton Segmentation Benchmark directory or labelled PLY files.

PSB layout: `off/<id>.off` and `seg/<id>/<id>_<k>.seg` (segment number per face); the harness uses
segmentation 0. PLY layout: `<id>.ply` files whose elements carry an integer `label` (per face for
meshes, per vertex for splats and points), read by `segany.formats.load_scene_with_labels`.

Categories come from `categories.json` in the data directory when present (`{"<id>": "<name>"}`),
otherwise from the PSB id ranges: the benchmark's 380 meshes are the SHREC 2007 watertight models in
blocks of 20 with the "spring" block (261–280) left out, so 281+ is armadillo, bust, mech, bearing,
vase, four-legged animal (381–400, which matches the shared subset's README).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import trimesh

from ..errors import SegAnyError
from ..scene import MeshScene, PointScene, Scene

PSB_BLOCKS = (
    "human", "cup", "glasses", "airplane", "ant", "chair", "octopus", "table", "teddy", "hand",
    "plier", "fish", "bird", "spring", "armadillo", "bust", "mech", "bearing", "vase", "fourleg",
)  # fmt: skip
CATEGORIES_FILE = "categories.json"
NAMES_FILE = "part_names.json"  # a data directory's part names: category → shape id → the name of each label


@dataclass
class Shape:
    """One labelled scene: labels per face (meshes) or per element (splats, points)."""

    id: str
    category: str
    scene: Scene
    labels: np.ndarray
    source: str


def psb_category(shape_id: str) -> str:
    """Category from the PSB numbering (blocks of 20 starting at 1); 'unknown' for other ids."""
    if not shape_id.isdigit() or not 1 <= int(shape_id) <= 20 * len(PSB_BLOCKS):
        return "unknown"
    return PSB_BLOCKS[(int(shape_id) - 1) // 20]


def _categories(data: Path) -> dict[str, str]:
    path = data / CATEGORIES_FILE
    if not path.is_file():
        return {}
    try:
        mapping = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SegAnyError("corrupt_file", f"{path} is not a JSON object of id → category: {exc}") from exc
    if not isinstance(mapping, dict):
        raise SegAnyError("corrupt_file", f"{path} must hold a JSON object mapping shape ids to categories")
    return {str(k): str(v) for k, v in mapping.items()}


def is_psb(data: Path) -> bool:
    return (data / "off").is_dir() and (data / "seg").is_dir()


def _sort_key(shape_id: str) -> tuple[int, int, str]:
    return (0, int(shape_id), "") if shape_id.isdigit() else (1, 0, shape_id)


def shape_ids(data: Path) -> list[str]:
    """All shape ids in a data directory, numeric ids in numeric order."""
    data = Path(data)
    if not data.is_dir():
        raise SegAnyError("not_found", f"data directory {data} does not exist")
    if is_psb(data):
        ids = [p.stem for p in (data / "off").glob("*.off") if (data / "seg" / p.stem / f"{p.stem}_0.seg").is_file()]
    else:
        ids = [p.stem for p in data.glob("*.ply")]
    if not ids:
        raise SegAnyError(
            "not_found",
            f"{data} holds no shapes: expected off/<id>.off with seg/<id>/<id>_0.seg, or <id>.ply files with labels",
        )
    return sorted(ids, key=_sort_key)


def load_psb_shape(data: Path, shape_id: str, category: str | None = None) -> Shape:
    off = data / "off" / f"{shape_id}.off"
    seg = data / "seg" / shape_id / f"{shape_id}_0.seg"
    for path in (off, seg):
        if not path.is_file():
            raise SegAnyError("not_found", f"shape {shape_id}: {path} is missing")
    try:
        mesh = trimesh.load(off, file_type="off", process=False)
        labels = np.loadtxt(seg, dtype=np.int64, ndmin=1)
    except ValueError as exc:
        raise SegAnyError("corrupt_file", f"shape {shape_id}: cannot read {off.name} / {seg.name}: {exc}") from exc
    if len(labels) != len(mesh.faces):
        raise SegAnyError(
            "corrupt_file", f"shape {shape_id}: {seg.name} has {len(labels)} labels for {len(mesh.faces)} faces"
        )
    scene = MeshScene(vertices=np.asarray(mesh.vertices), faces=np.asarray(mesh.faces))
    return Shape(shape_id, category or psb_category(shape_id), scene, labels, str(off))


def load_psb_humans(data: Path, shape_id: str, n_faces: int) -> list[np.ndarray]:
    """Every human segmentation of a PSB shape (`seg/<id>/<id>_<k>.seg`, k in numeric order).

    The harness scores clicks against segmentation 0 only; the benchmark's Rand Index averages over all.
    """
    folder = Path(data) / "seg" / shape_id
    paths = sorted(folder.glob(f"{shape_id}_*.seg"), key=lambda p: _sort_key(p.stem.rpartition("_")[2]))
    if not paths:
        raise SegAnyError("not_found", f"shape {shape_id}: no human segmentations {folder}/{shape_id}_<k>.seg")
    humans = []
    for path in paths:
        try:
            labels = np.loadtxt(path, dtype=np.int64, ndmin=1)
        except ValueError as exc:
            raise SegAnyError("corrupt_file", f"shape {shape_id}: cannot read {path.name}: {exc}") from exc
        if len(labels) != n_faces:
            raise SegAnyError(
                "corrupt_file", f"shape {shape_id}: {path.name} has {len(labels)} labels for {n_faces} faces"
            )
        humans.append(labels)
    return humans


def _face_majority(faces: np.ndarray, vertex_labels: np.ndarray) -> np.ndarray:
    """Per-face labels from per-vertex ones: the label two or three corners agree on, else the first corner's."""
    a, b, c = vertex_labels[faces].T
    return np.where((b == c) & (a != b), b, a)


def load_ply_shape(path: Path, category: str | None = None) -> Shape:
    from ..formats import load_scene_with_labels

    scene, labels = load_scene_with_labels(path)
    if labels is None:
        raise SegAnyError("unsupported", f"{path} has no integer 'label' property to evaluate against")
    if isinstance(scene, PointScene):
        scene = replace(scene, labels=None)  # ground truth never reaches a method
    labels = np.asarray(labels, dtype=np.int64)
    if isinstance(scene, MeshScene) and len(labels) == len(scene.vertices) != len(scene.faces):
        labels = _face_majority(scene.faces, labels)
    return Shape(path.stem, category or psb_category(path.stem), scene, labels, str(path))


def iter_shapes(data: Path, ids: list[str] | None = None) -> Iterator[Shape]:
    """Shapes one at a time (big scenes are not all held in memory), in `ids` order or sorted."""
    data = Path(data)
    available = shape_ids(data)
    wanted = [str(i).strip() for i in ids] if ids else available
    missing = [i for i in wanted if i not in available]
    if missing:
        raise SegAnyError("not_found", f"no shapes {missing} in {data}; available: {', '.join(available)}")
    cats = _categories(data)
    for sid in wanted:
        if is_psb(data):
            yield load_psb_shape(data, sid, cats.get(sid))
        else:
            yield load_ply_shape(data / f"{sid}.ply", cats.get(sid))
