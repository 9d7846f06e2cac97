"""3DGS PLY in and out, SH layouts of every degree, and Blender's two splat attribute layouts."""

from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from segany.formats import (
    SH_C0,
    load_scene,
    load_scene_with_labels,
    splats_from_blender_decoded,
    splats_from_blender_raw,
    write_labelled_ply,
    write_splat_ply,
)
from segany.samples import shared_data_dir
from segany.scene import SplatScene

# the shared data sit next to the repository (../shared/data); read in place, never copied
DONUT = shared_data_dir() / "splats" / "donut.ply"


def gaussians_ply(path: Path, n: int, degree: int, seed: int = 0, extra: dict | None = None) -> dict:
    """A 3DGS PLY written by plyfile alone (independent of our writer); returns the raw columns."""
    rng = np.random.default_rng(seed)
    k1 = (degree + 1) ** 2 - 1
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * k1)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    cols = {name: rng.normal(size=n).astype(np.float32) for name in names}
    dtype = [(name, "<f4") for name in names] + [(k, "<i4") for k in (extra or {})]
    arr = np.empty(n, dtype=dtype)
    for name in names:
        arr[name] = cols[name]
    for k, v in (extra or {}).items():
        arr[k] = v
    PlyData([PlyElement.describe(arr, "vertex")], byte_order="<").write(str(path))
    return cols


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_layout_is_channel_major(tmp_path, degree):
    cols = gaussians_ply(tmp_path / "g.ply", 7, degree)
    s = load_scene(tmp_path / "g.ply")
    assert isinstance(s, SplatScene) and s.sh_degree == degree
    k1 = (degree + 1) ** 2 - 1
    for c in range(3):
        np.testing.assert_array_equal(s.sh[:, 0, c], cols[f"f_dc_{c}"])
        for j in range(k1):  # coefficient j+1 of channel c is f_rest_{c*k1 + j}
            np.testing.assert_array_equal(s.sh[:, 1 + j, c], cols[f"f_rest_{c * k1 + j}"])
    np.testing.assert_array_equal(s.means[:, 2], cols["z"])
    np.testing.assert_array_equal(s.quats[:, 0], cols["rot_0"])
    np.testing.assert_array_equal(s.log_scales[:, 1], cols["scale_1"])
    np.testing.assert_array_equal(s.logit_opacities, cols["opacity"])


def test_real_donut_file():
    s = load_scene(DONUT)
    assert isinstance(s, SplatScene)
    assert s.n_elements == 45_624 and s.sh_degree == 0
    ref = PlyData.read(str(DONUT))["vertex"].data
    np.testing.assert_array_equal(s.means[:, 0], ref["x"])
    np.testing.assert_array_equal(s.sh[:, 0, 2], ref["f_dc_2"])
    np.testing.assert_array_equal(s.quats[:, 3], ref["rot_3"])
    assert s.warnings == []


def test_subset_round_trip_and_standard_layout(tmp_path):
    gaussians_ply(tmp_path / "g.ply", 50, 3, seed=3)
    s = load_scene(tmp_path / "g.ply")
    mask = np.zeros(50, bool)
    mask[[1, 4, 9, 33]] = True
    write_splat_ply(tmp_path / "sel.ply", s, mask)
    sub = load_scene(tmp_path / "sel.ply")
    for name in ("means", "quats", "log_scales", "logit_opacities", "sh"):
        np.testing.assert_array_equal(getattr(sub, name), getattr(s, name)[mask])
    ply = PlyData.read(str(tmp_path / "sel.ply"))
    assert not ply.text and ply.byte_order == "<"
    props = [p.name for p in ply["vertex"].properties]
    expected = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    expected += [f"f_rest_{i}" for i in range(45)]
    expected += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert props == expected
    assert all(ply["vertex"].ply_property(p).val_dtype == "f4" for p in props)
    # the bytes are exactly what a viewer expects: a flat float32 record per Gaussian
    body = (tmp_path / "sel.ply").read_bytes().split(b"end_header\n", 1)[1]
    assert len(body) == 4 * len(expected) * 4


def test_index_mask_and_whole_scene(tmp_path):
    gaussians_ply(tmp_path / "g.ply", 20, 1)
    s = load_scene(tmp_path / "g.ply")
    write_splat_ply(tmp_path / "idx.ply", s, np.array([5, 2]))
    np.testing.assert_array_equal(load_scene(tmp_path / "idx.ply").means, s.means[[5, 2]])
    write_splat_ply(tmp_path / "all.ply", s)
    np.testing.assert_array_equal(load_scene(tmp_path / "all.ply").sh, s.sh)


def test_splat_labels(tmp_path):
    labels = np.arange(12, dtype=np.int32) % 3
    gaussians_ply(tmp_path / "g.ply", 12, 0, extra={"label": labels})
    s, got = load_scene_with_labels(tmp_path / "g.ply")
    np.testing.assert_array_equal(got, labels)
    write_labelled_ply(tmp_path / "l.ply", s, labels[::-1])
    s2, got2 = load_scene_with_labels(tmp_path / "l.ply")
    np.testing.assert_array_equal(got2, labels[::-1])
    np.testing.assert_array_equal(s2.means, s.means)


def test_blender_50_raw_attributes(tmp_path):
    cols = gaussians_ply(tmp_path / "g.ply", 30, 2, seed=5)
    ref = load_scene(tmp_path / "g.ply")
    attrs = {k: v for k, v in cols.items() if k not in "xyz" and not k.startswith("n")}
    attrs["position"] = np.stack([cols["x"], cols["y"], cols["z"]], axis=1)
    s = splats_from_blender_raw(attrs)
    for name in ("means", "quats", "log_scales", "logit_opacities", "sh"):
        np.testing.assert_array_equal(getattr(s, name), getattr(ref, name))


def test_blender_53_decoded_attributes(tmp_path):
    """Attributes as Blender 5.3's importer makes them (ply_import_gsplat.cc): DC + sigmoid opacity, exp scale."""
    gaussians_ply(tmp_path / "g.ply", 40, 3, seed=7)
    ref = load_scene(tmp_path / "g.ply")
    q = ref.quats / np.linalg.norm(ref.quats, axis=1, keepdims=True)
    attrs = {
        "position": ref.means,
        "radiance:base": np.concatenate([ref.sh[:, 0], 1 / (1 + np.exp(-ref.logit_opacities[:, None]))], axis=1),
        "scale": np.exp(ref.log_scales),
        "rotation": q,
    }
    attrs.update({f"radiance:sh_{j}": ref.sh[:, 1 + j] for j in range(15)})
    s = splats_from_blender_decoded(attrs)
    assert s.sh_degree == 3
    np.testing.assert_allclose(s.log_scales, ref.log_scales, atol=1e-5)
    np.testing.assert_allclose(s.logit_opacities, ref.logit_opacities, atol=1e-3)
    np.testing.assert_array_equal(s.sh, ref.sh)
    np.testing.assert_array_equal(s.quats, q.astype(np.float32))
    # the DC term stays a coefficient: rendered base colour is 0.5 + SH_C0 * f_dc
    np.testing.assert_allclose(0.5 + SH_C0 * s.sh[:, 0], 0.5 + SH_C0 * ref.sh[:, 0])


def test_blender_53_extremes_stay_finite():
    n = 4
    attrs = {
        "position": np.zeros((n, 3)),
        "radiance:base": np.array([[0, 0, 0, 0.0], [0, 0, 0, 1.0], [1, 1, 1, 0.5], [0, 0, 0, 0.25]]),
        "scale": np.array([[0.0, 1, 1], [1, 1, 1], [1, 1, 1], [2, 2, 2]]),
        "rotation": np.tile([1.0, 0, 0, 0], (n, 1)),
    }
    s = splats_from_blender_decoded(attrs)
    assert np.isfinite(s.logit_opacities).all() and np.isfinite(s.log_scales).all()
    assert s.logit_opacities[2] == 0 and s.sh_degree == 0
    # a separate opacity column with a 3-wide base is accepted too
    attrs3 = {**attrs, "radiance:base": attrs["radiance:base"][:, :3], "opacity": attrs["radiance:base"][:, 3]}
    np.testing.assert_array_equal(splats_from_blender_decoded(attrs3).logit_opacities, s.logit_opacities)


@pytest.mark.parametrize(
    "attrs",
    [
        {"position": np.zeros((3, 2))},
        {"position": np.zeros((3, 3)), "radiance:base": np.zeros((2, 4))},
        {"position": np.zeros((3, 3)), "radiance:base": np.zeros((3, 4)), "scale": np.ones((3, 3))},
        {"position": np.zeros((3, 3), dtype=object)},
    ],
)
def test_blender_bad_attributes(attrs):
    from segany.errors import SegAnyError

    with pytest.raises(SegAnyError) as info:
        splats_from_blender_decoded(attrs)
    assert info.value.code == "invalid_array"
    with pytest.raises(SegAnyError) as info:
        splats_from_blender_raw(attrs)
    assert info.value.code == "invalid_array"
