"""Scene → rendered views (rgb, depth, normals, element ids): the first step every method shares.

Meshes go through the mesh rasterizer (ids = triangles). Splats go through the splat rasterizer
(ids = the Gaussian with the largest blending weight). Points are drawn as small isotropic Gaussians
sized from their neighbour spacing (ids = points). Normals of splats and points come from the depth map.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from scipy.spatial import cKDTree

from .cameras import Cameras
from .priors.base import Views
from .scene import MeshScene, PointScene, Scene, SplatScene, scene_id


def views_key(scene: Scene, cameras: Cameras) -> str:
    """Identifies a scene seen through these cameras, for per-view caches (e.g. SAM embeddings)."""
    h = hashlib.blake2b(digest_size=8)
    h.update(cameras.viewmats.tobytes())
    h.update(cameras.Ks.tobytes())
    h.update(f"{cameras.width}x{cameras.height}".encode())
    return f"{scene_id(scene)}:{h.hexdigest()}"


def render_views(scene: Scene, cameras: Cameras, device: str = "cpu") -> Views:
    """What a 2D prior looks at; numpy on the CPU whatever device rendered it."""
    if isinstance(scene, MeshScene):
        rgb, depth, normals, ids = _mesh(scene, cameras, device)
    else:
        rgb, depth, ids = _gaussians(scene, cameras, device)
        normals = normals_from_depth(depth, cameras)
    return Views(rgb=rgb, depth=depth, normals=normals, ids=ids, cameras=cameras, key=views_key(scene, cameras))


def _t(a: np.ndarray, device: str) -> torch.Tensor:
    return torch.as_tensor(a, device=device)


def _mesh(scene: MeshScene, cameras: Cameras, device: str) -> tuple[np.ndarray, ...]:
    from segany.kernels.mesh_raster import rasterize_mesh, shade

    faces = _t(scene.faces, device)
    raster = rasterize_mesh(
        _t(scene.vertices, device), faces, _t(cameras.viewmats, device), _t(cameras.Ks, device),
        cameras.width, cameras.height,
    )  # fmt: skip
    colors = None if scene.vertex_colors is None else _t(scene.vertex_colors, device)
    rgb = shade(raster, colors, faces)
    return tuple(t.cpu().numpy() for t in (rgb.float(), raster.depth, raster.normals, raster.tri_ids))


def gaussian_params(scene: SplatScene | PointScene) -> dict[str, np.ndarray]:
    """Renderable Gaussians: splats as they are; points as isotropic blobs sized by neighbour spacing."""
    if isinstance(scene, SplatScene):
        return {
            "means": scene.means,
            "quats": scene.quats,
            "scales": np.exp(scene.log_scales),
            "opacities": 1.0 / (1.0 + np.exp(-scene.logit_opacities)),
            "sh": scene.sh,
        }
    k = min(5, len(scene.xyz))
    dist, _ = cKDTree(scene.xyz).query(scene.xyz, k=k)
    spacing = np.median(dist[:, 1:], axis=1) if k > 1 else np.ones(len(scene.xyz))
    rgb = scene.rgb if scene.rgb is not None else np.full_like(scene.xyz, 0.7)
    sh0 = (rgb - 0.5) / 0.28209479177387814
    n = len(scene.xyz)
    return {
        "means": scene.xyz,
        "quats": np.tile(np.array([1, 0, 0, 0], np.float32), (n, 1)),
        "scales": np.repeat((0.6 * spacing).astype(np.float32)[:, None], 3, axis=1),
        "opacities": np.full(n, 0.95, np.float32),
        "sh": sh0[:, None, :].astype(np.float32),
    }


def _gaussians(scene: SplatScene | PointScene, cameras: Cameras, device: str) -> tuple[np.ndarray, ...]:
    from segany.kernels.splat_raster import rasterize_splats

    p = {k: _t(np.ascontiguousarray(v, dtype=np.float32), device) for k, v in gaussian_params(scene).items()}
    out = rasterize_splats(
        p["means"], p["quats"], p["scales"], p["opacities"], _t(cameras.viewmats, device), _t(cameras.Ks, device),
        cameras.width, cameras.height, sh=p["sh"], background=torch.ones(3, device=device), return_contrib=1,
    )  # fmt: skip
    ids = torch.where(out.alpha > 0.5, out.contrib_ids[..., 0], torch.full_like(out.contrib_ids[..., 0], -1))
    depth = torch.where(out.alpha > 0.5, out.depth, torch.zeros_like(out.depth))
    return out.rgb.float().cpu().numpy(), depth.float().cpu().numpy(), ids.cpu().numpy()


def normals_from_depth(depth: np.ndarray, cameras: Cameras) -> np.ndarray:
    """World-space unit normals from a depth map by cross products of neighbouring back-projected points."""
    b, h, w = depth.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    out = np.zeros((b, h, w, 3), np.float32)
    for i in range(b):
        k, vm = cameras.Ks[i], cameras.viewmats[i]
        z = depth[i]
        pts = np.stack([(xs - k[0, 2]) / k[0, 0] * z, (ys - k[1, 2]) / k[1, 1] * z, z], axis=-1)
        dx = np.gradient(pts, axis=1)
        dy = np.gradient(pts, axis=0)
        n = np.cross(dx, dy)
        n /= np.linalg.norm(n, axis=-1, keepdims=True) + 1e-12
        n = n @ vm[:3, :3]  # camera → world: R^T n, written as n R for row vectors
        out[i] = np.where((z > 0)[..., None], n, 0.0)
    return out
