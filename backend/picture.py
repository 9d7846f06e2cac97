"""PNG pictures of a selection: the scene from a few views, selected elements in a highlight colour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .cameras import cameras_for_scene
from .scene import MeshScene, PointScene, Scene, SplatScene

HIGHLIGHT = np.array([1.0, 0.45, 0.05], np.float32)
BASE = np.array([0.72, 0.74, 0.78], np.float32)


def selection_colors(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Per-element colour: grey below the threshold, orange above, brighter with the score."""
    s = np.clip(np.asarray(scores, np.float32), 0.0, 1.0)[:, None]
    return np.where(s >= threshold, HIGHLIGHT * (0.6 + 0.4 * s), BASE).astype(np.float32)


def recolored(scene: Scene, colors: np.ndarray) -> Scene:
    """The same geometry with per-element colours replaced (for rendering only)."""
    if isinstance(scene, MeshScene):
        return MeshScene(scene.vertices, scene.faces, vertex_colors=colors)
    if isinstance(scene, SplatScene):
        sh = np.zeros_like(scene.sh)
        sh[:, 0, :] = (colors - 0.5) / 0.28209479177387814
        return SplatScene(scene.means, scene.quats, scene.log_scales, scene.logit_opacities, sh)
    return PointScene(scene.xyz, rgb=colors, normals=scene.normals)


def render_grid(scene: Scene, path: Path, n_views: int = 4, size: int = 320, marks: np.ndarray | None = None) -> Path:
    """Render n_views orbit views side by side into a PNG; `marks` (M, 3) world points drawn as dots."""
    from .render import render

    cams = cameras_for_scene(scene, n_views, size, size, elevation_range=(10.0, 40.0))
    views = render(scene, cams).views
    tiles = (views.rgb.clip(0, 1) * 255).astype(np.uint8)
    if marks is not None and len(marks):
        for i in range(n_views):
            _draw_marks(tiles[i], views.depth[i], cams.viewmats[i], cams.Ks[i], np.asarray(marks, np.float64))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(list(tiles), axis=1)).save(path)
    return path


def render_parts(
    scene: Scene, labels: np.ndarray, colours: np.ndarray, path: Path, shown: int = 16, names: list[str] | None = None
) -> Path:
    """The scene coloured by part from four views, over a legend of the `shown` largest parts (colour, number
    or name, share of the elements): a person can tell which colour is which part and how many there are."""
    labels = np.asarray(labels)
    per_element = np.where((labels >= 0)[:, None], np.asarray(colours, np.float32)[labels.clip(0)], BASE)
    grid = Image.open(render_grid(recolored(scene, per_element.astype(np.float32)), path)).convert("RGB")
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    order = np.argsort(-counts, kind="stable")[:shown]
    rows, per_row, cell = -(-len(order) // 8), 8, grid.width // 8
    canvas = Image.new("RGB", (grid.width, grid.height + 24 * (rows + 1)), (255, 255, 255))
    canvas.paste(grid, (0, 0))
    draw = ImageDraw.Draw(canvas)
    font = _legend_font()
    unseen = int((labels < 0).sum())
    title = f"{len(ids)} {'labels' if names is not None else 'parts'}" + (
        f", {unseen} elements in none" if unseen else "") + (
        f" (largest {len(order)} below)" if len(ids) > len(order) else "")  # fmt: skip
    draw.text((6, grid.height + 5), title, fill=(0, 0, 0), font=font)
    for i, j in enumerate(order):
        x, y = 6 + (i % per_row) * cell, grid.height + 24 * (1 + i // per_row) + 4
        draw.rectangle((x, y, x + 14, y + 14), fill=tuple(int(c * 255 + 0.5) for c in colours[ids[j]]))
        name = names[ids[j]] if names is not None else ids[j]
        draw.text((x + 20, y + 2), f"{name}: {counts[j] / len(labels):.0%}", fill=(0, 0, 0), font=font)
    canvas.save(path)
    return Path(path)


def _legend_font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """DejaVu Sans where the system has it (it draws words in most European scripts; Pillow's built-in font
    draws only ASCII), else the built-in one."""
    try:
        return ImageFont.truetype("DejaVuSans.ttf", 11)
    except OSError:
        return ImageFont.load_default()


def _draw_marks(tile: np.ndarray, depth: np.ndarray, viewmat: np.ndarray, k: np.ndarray, marks: np.ndarray) -> None:
    """Blue dots at the visible projections of world points (clicks), drawn in place."""
    cam = np.c_[marks, np.ones(len(marks))] @ viewmat.T
    size_y, size_x = depth.shape
    yy, xx = np.mgrid[-4:5, -4:5]
    disk = xx**2 + yy**2 <= 16
    for x_cam, y_cam, z in cam[:, :3]:
        if z <= 0:
            continue
        x, y = int(k[0, 0] * x_cam / z + k[0, 2]), int(k[1, 1] * y_cam / z + k[1, 2])
        if not (4 <= x < size_x - 4 and 4 <= y < size_y - 4):
            continue
        if depth[y, x] == 0 or z <= depth[y, x] * 1.02:
            tile[y - 4 : y + 5, x - 4 : x + 5][disk] = (30, 90, 255)
