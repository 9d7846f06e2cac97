"""A task's answer for one asset and the files it becomes, result.ply and preview.png, plus the per-element
counts result.json reports. A click selection is written as `segany segment` writes it (a score per mesh
vertex, a 0/1 `label` per Gaussian or point, selected elements highlighted); parts and words as `segany
everything` writes parts (an int `part` and its colour per element, splats in the 3DGS layout, a legend)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..demo import click_points
from ..formats import write_labelled_ply, write_mesh_ply, write_parts_ply, write_point_ply
from ..picture import recolored, render_grid, render_parts, selection_colors
from ..scene import MeshScene, PointScene, Scene
from .spec import Work


@dataclass
class Answer:
    """Per element a label (clicks: 1 selected, 0 not; everything: its part; label: its word; -1 none); for
    clicks the scores and the clicked positions, else a colour per label; counts for result.json."""

    labels: np.ndarray
    summary: dict[str, Any]
    scores: np.ndarray | None = None
    threshold: float = 0.5
    marks: np.ndarray | None = field(default=None, repr=False)
    palette: np.ndarray | None = None
    names: list[str] | None = None  # label: the words, named in the picture's legend as `segany label` does

    def per_element(self) -> dict[str, list]:
        """What result.json holds per element (scripts read it without a PLY reader): the label, and for clicks
        the score the threshold was applied to."""
        out: dict[str, list] = {"labels": np.asarray(self.labels).tolist()}
        if self.scores is not None:
            out["scores"] = np.asarray(self.scores, np.float32).tolist()
        return out

    def write(self, scene: Scene, folder: Path) -> None:
        """result.ply and preview.png in `folder` (no timestamps inside: the same answer gives the same bytes)."""
        ply, png = folder / "result.ply", folder / "preview.png"
        if self.scores is None:
            write_parts_ply(ply, scene, self.labels, self.palette)
            if self.names:
                render_parts(scene, self.labels, self.palette, png, shown=len(self.names), names=self.names)
            else:
                render_parts(scene, self.labels, self.palette, png)
            return
        colours = selection_colors(self.scores, self.threshold)
        if isinstance(scene, MeshScene):
            write_mesh_ply(ply, scene, scores=self.scores, colors=colours)
        elif isinstance(scene, PointScene):
            write_point_ply(ply, PointScene(scene.xyz, rgb=colours, normals=scene.normals), labels=self.labels)
        else:
            write_labelled_ply(ply, scene, self.labels)  # the 3DGS layout plus a 0/1 `label` per Gaussian
        render_grid(recolored(scene, colours), png, marks=self.marks)


def answer(engine: Any, method: str, sid: str, scene: Scene, work: Work) -> Answer:
    """Run the spec's task on a prepared scene."""
    if work.task == "clicks":
        clicks = [list(c) for c in work.clicks]
        sel = engine.query(method, sid, {"clicks": clicks}, prior=work.prior)
        summary = {"clicks": clicks, "threshold": float(sel.threshold), "selected": int(sel.mask.sum()),
                   "elements": int(scene.n_elements)}  # fmt: skip
        return Answer(sel.mask.astype(np.int32), summary, sel.scores, float(sel.threshold), click_points(scene, clicks))
    if work.task == "everything":
        parts = engine.everything(method, sid, {"scale": work.scale}, prior=work.prior)
        return _parts(parts.labels, parts.colours, [f"part {i}" for i in range(len(parts.colours))])
    from ..methods.saga.everything import cluster_colours

    sel = engine.query(method, sid, {"words": list(work.words)}, prior=work.prior)
    labelled = _parts(sel.extras["labels"], cluster_colours(len(work.words)), list(work.words))
    labelled.names = list(work.words)
    return labelled


def _parts(labels: np.ndarray, palette: np.ndarray, names: list[str]) -> Answer:
    """Labels with a colour per label, and how many elements each name and none (-1) got."""
    labels = np.asarray(labels, np.int32)
    counts = np.bincount(labels[labels >= 0], minlength=len(names))
    summary = {"counts": dict(zip(names, counts.tolist(), strict=True)), "none": int((labels < 0).sum()),
               "elements": len(labels)}  # fmt: skip
    return Answer(labels, summary, palette=np.asarray(palette, np.float32))
