"""iSeg's pieces against independent references: the fast click scorer, rendering through corners,
visibility from the id buffer, and the Fourier feature map."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from segany.kernels.mesh_raster import interpolate, rasterize_mesh
from segany.methods.iseg.data import pixel_corners, visible_vertices
from segany.methods.iseg.decoder import ClickScorer, Decoder, DecoderConfig
from segany.methods.iseg.encoder import Encoder, EncoderConfig, normalise
from segany.methods.iseg.rendering import at_cells, views_around
from segany.samples import sample_mesh


@pytest.mark.parametrize("compare", [False, True])
@pytest.mark.parametrize(
    "clicks", [[(3, True)], [(3, True), (7, False)], [(0, False)], [(1, True), (2, True), (9, False)]]
)
def test_click_scorer_equals_the_decoder(compare, clicks):
    torch.manual_seed(0)
    decoder = Decoder(DecoderConfig(dim=8, widths=(16, 12), compare=compare)).eval()
    for p in decoder.parameters():
        p.data.add_(0.1 * torch.randn_like(p))
    feats = torch.randn(40, 8).tanh()
    verts = torch.tensor([c for c, _ in clicks])
    pos = torch.tensor([s for _, s in clicks])
    with torch.no_grad():
        ref = torch.sigmoid(
            decoder(feats[None], feats[verts][None], pos[None], torch.ones(1, len(clicks), dtype=torch.bool))
        )[0]
    torch.testing.assert_close(ClickScorer(decoder, feats)(verts, pos), ref, atol=1e-5, rtol=1e-5)


def test_padding_a_click_slot_changes_nothing():
    torch.manual_seed(1)
    decoder = Decoder(DecoderConfig(dim=6, widths=(10,), compare=True)).eval()
    feats = torch.randn(1, 20, 6)
    one = decoder(feats, feats[:, [4]], torch.tensor([[True]]), torch.tensor([[True]]))
    padded = decoder(feats, feats[:, [4, 9]], torch.tensor([[True, False]]), torch.tensor([[True, False]]))
    torch.testing.assert_close(one, padded)


@pytest.fixture(scope="module")
def small_views():
    scene = sample_mesh(max_edge=0.3)
    renders = views_around(scene, 3, 48, seed=0)
    cams = renders.views.cameras
    raster = rasterize_mesh(scene.vertices, scene.faces, cams.viewmats, cams.Ks, cams.width, cams.height)
    return scene, renders, raster


def test_rendering_through_corners_equals_the_kernel(small_views):
    scene, renders, raster = small_views
    views = renders.views
    faces = torch.as_tensor(scene.faces)
    attr = torch.randn(len(scene.vertices), 5)
    corners = pixel_corners(raster.tri_ids, raster.bary, faces)
    ours = (attr[corners.vertices] * corners.weights.unsqueeze(-1)).sum(dim=1)
    ref = interpolate(attr, faces, raster).reshape(len(views), -1, 5)[corners.view, corners.pixel]
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    assert np.array_equal(raster.tri_ids.numpy(), views.ids)
    assert np.array_equal(raster.bary.numpy(), renders.bary)


def test_embedding_cells_take_the_pixel_under_their_centre(small_views):
    """A 16² map over 48² views: cell j's centre, (j + ½)·3, lies in pixel 3j + 1."""
    _, _, raster = small_views
    ids, bary = at_cells(raster.tri_ids, raster.bary, 16, 16)
    assert torch.equal(ids, raster.tri_ids[:, 1::3, 1::3]) and torch.equal(bary, raster.bary[:, 1::3, 1::3])
    same = at_cells(raster.tri_ids, raster.bary, 48, 48)
    assert same[0] is raster.tri_ids and same[1] is raster.bary


def test_visible_vertices_sit_on_their_triangles(small_views):
    scene, renders, raster = small_views
    views = renders.views
    vis = visible_vertices(raster.tri_ids.numpy(), raster.bary.numpy(), scene.faces, len(scene.vertices))
    assert len(vis.keys) > 0 and np.all(np.diff(vis.keys) > 0)
    view, vert = vis.keys // len(scene.vertices), vis.keys % len(scene.vertices)
    tri = views.ids[view, vis.y, vis.x]
    assert (tri >= 0).all()
    assert (scene.faces[tri] == vert[:, None]).any(axis=1).all()
    i = int(np.argmax(view == 1))
    assert vis.find(1, np.array([vert[i], -7 % len(scene.vertices)]))[0] == i
    assert set(vis.views_of(int(vert[i]), len(views)).tolist()) >= {1}


def test_encoder_fourier_map_and_normalisation():
    cfg = EncoderConfig(out_dim=7, width=16, depth=1, fourier=4, sigma=2.0)
    enc = Encoder(cfg, torch.Generator().manual_seed(0))
    x = torch.randn(5, 3)
    z = 2 * math.pi * x @ enc.fourier.matrix
    torch.testing.assert_close(enc.fourier(x), torch.cat([x, z.sin(), z.cos()], dim=1))
    out = enc(x)
    assert out.shape == (5, 7) and out.abs().max() < 1
    pts, centre, scale = normalise(torch.randn(100, 3) * 4 + 2)
    torch.testing.assert_close(pts.norm(dim=1).max(), torch.tensor(1.0))
    assert centre.shape == (3,) and scale.shape == (1,)
