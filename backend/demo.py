"""The main job on the built-in sample, and writing any result as files a person can open."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .methods import Parts, Selection
from .picture import recolored, render_grid, render_parts, selection_colors
from .samples import sample_mesh
from .scene import MeshScene, PointScene, Scene, SplatScene, element_positions


def click_points(scene: Scene, clicks: list[list[int]]) -> np.ndarray:
    """World positions of clicked elements, for drawing them."""
    return element_positions(scene)[[c[0] for c in clicks]]


def write_result(scene: Scene, sel: Selection, out: Path, clicks: list[list[int]]) -> dict[str, Path]:
    """result.ply (per-element score + colour, or the selected Gaussians for splats) and result.png."""
    from .formats import write_mesh_ply, write_point_ply, write_splat_ply

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    colors = selection_colors(sel.scores, sel.threshold)
    ply = out / "result.ply"
    if isinstance(scene, MeshScene):
        write_mesh_ply(ply, scene, scores=sel.scores, colors=colors)
    elif isinstance(scene, SplatScene):
        write_splat_ply(ply, scene, mask=sel.mask)
    else:
        write_point_ply(ply, PointScene(scene.xyz, rgb=colors, normals=scene.normals), labels=sel.mask.astype(np.int32))
    png = render_grid(recolored(scene, colors), out / "result.png", marks=click_points(scene, clicks))
    return {"ply": ply, "png": png}


def write_parts(scene: Scene, parts: Parts, out: Path) -> dict[str, Path]:
    """parts.ply (an int `part` and its colour per element; splats keep the 3DGS layout) and parts.png
    (the scene coloured by part, with a legend)."""
    from .formats import write_parts_ply

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ply = write_parts_ply(out / "parts.ply", scene, parts.labels, parts.colours)
    return {"ply": ply, "png": render_parts(scene, parts.labels, parts.colours, out / "parts.png")}


def _leg_click(scene: MeshScene) -> int:
    """A vertex in the middle of the first leg of the sample (part 2)."""
    leg_vertices = np.unique(scene.faces[scene.face_parts == 2])
    pts = scene.vertices[leg_vertices]
    return int(leg_vertices[np.argmin(np.linalg.norm(pts - pts.mean(axis=0), axis=1))])


def run_demo(
    engine: Any, out: Path, prepare: Callable[..., dict], method: str = "iseg", options: dict | None = None
) -> dict[str, Path]:
    """Prepare iSeg on the sample with the weight-free geometric prior, click one leg, write the files."""
    scene = sample_mesh()
    sid = engine.add_scene(scene)
    job = prepare(engine, method, sid, "geometric", options)
    clicks = [[_leg_click(scene), 1]]
    sel = engine.query(method, sid, {"clicks": clicks}, prior="geometric")
    paths = write_result(scene, sel, out, clicks)
    truth = np.zeros(len(scene.vertices), bool)
    truth[np.unique(scene.faces[scene.face_parts == 2])] = True
    iou = float((sel.mask & truth).sum() / max((sel.mask | truth).sum(), 1))
    summary = {"scene_id": sid, "method": method, "prior": "geometric", "clicks": clicks,
               "selected_vertices": int(sel.mask.sum()), "leg_vertices": int(truth.sum()), "vertex_iou_with_leg": iou,
               "torch_threads": torch.get_num_threads(), "prepare": job}  # fmt: skip
    (Path(out) / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return {**paths, "summary": Path(out) / "summary.json"}
