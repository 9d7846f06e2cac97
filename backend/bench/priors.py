"""Benchmark: do the geometric prior's click masks match human part labels?

For every shape of a Princeton Segmentation Benchmark directory (off/<id>.off, seg/<id>/<id>_0.seg;
`segany.samples.shared_data_dir()/psb`) it renders orbit views, clicks random
interior pixels of every visible ground-truth part and scores the best of the three candidates by IoU
against that part in that view, then reports the mean per category plus the time per view.
`quick` uses the built-in stool (its primitives are the parts) so CI can run it in seconds.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..cameras import cameras_for_scene
from ..priors.geometric import GeometricPrior
from ..render import render
from ..samples import sample_mesh, shared_data_dir
from ..scene import MeshScene
from .report import Row, write_report

PSB_CATEGORIES = (
    "human",
    "cup",
    "glasses",
    "airplane",
    "ant",
    "chair",
    "octopus",
    "table",
    "teddy",
    "hand",
    "plier",
    "fish",
    "bird",
    "spring",
    "armadillo",
    "bust",
    "mech",
    "bearing",
    "vase",
    "fourleg",
)  # fmt: skip  (ids 1-20, 21-40, ...)
MIN_PIXELS = 100  # parts smaller than this in a view are not clicked
CLICKS = 3  # random clicks per visible part and view


def psb_shapes(root: Path) -> list[tuple[str, str, MeshScene, np.ndarray]]:
    """(id, category, mesh, face labels of segmentation 0) for every shape in a PSB-layout directory."""
    import trimesh

    out = []
    for off in sorted((root / "off").glob("*.off"), key=lambda p: int(p.stem)):
        seg = root / "seg" / off.stem / f"{off.stem}_0.seg"
        if not seg.is_file():
            continue
        mesh = trimesh.load(off, process=False)
        scene = MeshScene(np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int64))
        cat = PSB_CATEGORIES[(int(off.stem) - 1) // 20] if int(off.stem) <= 400 else "other"
        out.append((off.stem, cat, scene, np.loadtxt(seg, dtype=np.int64)))
    return out


def click_ious(prior: GeometricPrior, scene: MeshScene, labels: np.ndarray, n_views: int, size: int, seed: int):
    """Best-of-3 IoU for random clicks on every visible part, the same for the whole-object mask (the
    baseline: no part segmentation at all), and seconds per view for the region tree."""
    views = render(scene, cameras_for_scene(scene, n_views, size, size, elevation_range=(-60, 60), seed=1)).views
    gt = np.where(views.ids >= 0, labels[np.maximum(views.ids, 0)], -1)
    rng = np.random.default_rng(seed)
    ious, whole, tree_s = [], [], []
    for i in range(len(views)):
        t0 = time.perf_counter()
        prior.tree(views, i)
        tree_s.append(time.perf_counter() - t0)
        for part in np.unique(gt[i][gt[i] >= 0]):
            mask = gt[i] == part
            if mask.sum() < MIN_PIXELS * (size / 256) ** 2:
                continue
            inner = ndimage.binary_erosion(mask, iterations=2)
            pix = np.argwhere(inner if inner.any() else mask)
            for _ in range(CLICKS):
                y, x = pix[rng.integers(len(pix))]
                res = prior.prompt(views, i, np.array([[x + 0.5, y + 0.5]]), np.array([1]))
                ious.append(max(float((m & mask).sum() / (m | mask).sum()) for m in res.masks))
                whole.append(float(mask.sum() / (gt[i] >= 0).sum()))
    return ious, whole, tree_s


def run(out_dir: Path, quick: bool = False) -> dict:
    root = shared_data_dir() / "psb"
    if quick or not (root / "off").is_dir():
        stool = sample_mesh()
        shapes = [("stool", "stool", stool, stool.face_parts.astype(np.int64))]
        n_views, size = (2, 128) if quick else (8, 256)
    else:
        shapes = psb_shapes(root)
        n_views, size = 8, 256
    per_cat: dict[str, list[float]] = {}
    base_cat: dict[str, list[float]] = {}
    times: list[float] = []
    for sid, cat, scene, labels in shapes:
        seed = int(sid) if sid.isdigit() else 0
        ious, whole, tree_s = click_ious(GeometricPrior(), scene, labels, n_views, size, seed)
        per_cat.setdefault(cat, []).extend(ious)
        base_cat.setdefault(cat, []).extend(whole)
        times.extend(tree_s)
    rows = [
        Row(cat, "best-of-3 click IoU", float(np.mean(v)), "", "whole object", float(np.mean(base_cat[cat])), "> 0.7")
        for cat, v in per_cat.items()
    ]
    means = [float(np.mean(v)) for v in per_cat.values()]
    base = [float(np.mean(v)) for v in base_cat.values()]
    rows.append(
        Row(
            "all categories",
            "best-of-3 click IoU",
            float(np.mean(means)),
            "",
            "whole object",
            float(np.mean(base)),
            "> 0.7",
        )
    )
    rows.append(Row(f"{size}² view", "region tree", 1000 * float(np.median(times)), "ms", target="< 300 ms"))
    extra = {"data": str(root) if len(shapes) > 1 else "built-in stool", "views_per_shape": n_views, "size": size}
    extra["clicks"] = {cat: len(v) for cat, v in per_cat.items()}
    return write_report("priors", out_dir, rows, extra)
