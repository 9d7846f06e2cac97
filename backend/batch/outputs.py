"""A task's answer for one asset and the files it becomes: a labelled PLY (a 3DGS PLY for splats, with a
`label` per Gaussian), a PNG preview, and the per-element counts result.json reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..demo import click_points
from ..formats import write_labelled_ply, write_mesh_ply, write_point_ply
from ..picture import BASE, recolored, render_grid, selection_colors
from ..scene import MeshScene, PointScene, Scene
from .spec import Work


@dataclass
class Answer:
    """Per element a label (clicks: 1 selected, 0 not; everything: its part; label: its word; -1 none) and a
    colour; the scores of a click selection; the clicked positions to mark; counts for result.json."""

    labels: np.ndarray
    colours: np.ndarray
    summary: dict[str, Any]
    scores: np.ndarray | None = None
    marks: np.ndarray | None = field(default=None, repr=False)

    def write(self, scene: Scene, folder: Path) -> None:
        """result.ply and preview.png in `folder` (no timestamps inside: the same answer gives the same bytes)."""
        ply = folder / "result.ply"
        if isinstance(scene, MeshScene) and self.scores is not None:
            write_mesh_ply(ply, scene, scores=self.scores, colors=self.colours)
        elif isinstance(scene, PointScene):
            write_point_ply(ply, PointScene(scene.xyz, rgb=self.colours, normals=scene.normals), labels=self.labels)
        else:
            write_labelled_ply(ply, scene, self.labels)  # splats keep the 3DGS layout; meshes: a label per vertex
        render_grid(recolored(scene, self.colours), folder / "preview.png", marks=self.marks)


def answer(engine: Any, method: str, sid: str, scene: Scene, work: Work) -> Answer:
    """Run the spec's task on a prepared scene."""
    if work.task == "clicks":
        return _clicks(engine, method, sid, scene, work)
    if work.task == "everything":
        parts = engine.everything(method, sid, {"scale": work.scale}, prior=work.prior)
        return _labelled(parts.labels, parts.colours, [f"part {i}" for i in range(len(parts.colours))])
    sel = engine.query(method, sid, {"words": list(work.words)}, prior=work.prior)
    from ..methods.saga.everything import cluster_colours

    return _labelled(sel.extras["labels"], cluster_colours(len(work.words)), list(work.words))


def _clicks(engine: Any, method: str, sid: str, scene: Scene, work: Work) -> Answer:
    clicks = [list(c) for c in work.clicks]
    sel = engine.query(method, sid, {"clicks": clicks}, prior=work.prior)
    summary = {"clicks": clicks, "threshold": float(sel.threshold), "selected": int(sel.mask.sum()),
               "elements": int(scene.n_elements)}  # fmt: skip
    colours = selection_colors(sel.scores, sel.threshold)
    return Answer(sel.mask.astype(np.int32), colours, summary, sel.scores, click_points(scene, clicks))


def _labelled(labels: np.ndarray, palette: np.ndarray, names: list[str]) -> Answer:
    """Colours from a palette per label (grey for -1) and the count of elements under each name."""
    labels = np.asarray(labels, np.int32)
    colours = np.where((labels >= 0)[:, None], np.asarray(palette, np.float32)[labels.clip(0)], BASE)
    counts = np.bincount(labels[labels >= 0], minlength=len(names))
    summary = {"counts": dict(zip(names, counts.tolist(), strict=True)), "none": int((labels < 0).sum()),
               "elements": len(labels)}  # fmt: skip
    return Answer(labels, colours.astype(np.float32), summary)
