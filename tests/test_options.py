"""Typed method options: every method's presets parse, and the one parser refuses each kind of mistake
naming the field (unknown keys, wrong types, booleans as numbers, NaN, out-of-range, unknown presets)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from segany.cache import options_key
from segany.engine import Engine
from segany.errors import SegAnyError
from segany.methods import get_method, method_names
from segany.methods.iseg.options import ISegOptions
from segany.methods.sa3d.options import SA3DOptions
from segany.methods.walk.options import WalkOptions
from segany.options import PRESETS, option, parse_options
from segany.samples import sample_mesh


@pytest.fixture(scope="module")
def mesh():
    return sample_mesh(max_edge=0.3)


def _refused(cls: type, given: dict) -> str:
    with pytest.raises(SegAnyError) as err:
        parse_options(cls, given)
    assert err.value.code == "bad_request"
    return err.value.message


@pytest.mark.parametrize("name", method_names())
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_of_every_method_parses_within_its_ranges(mesh, name, preset):
    cls = get_method(name).Options
    opts = parse_options(cls, preset=preset, scene=mesh)
    assert isinstance(opts, cls)
    assert parse_options(cls, opts.to_dict(), preset=preset, scene=mesh) == opts, "a state's meta parses back"
    assert parse_options(cls, {"preset": preset}, preset="cpu", scene=mesh) == opts, "a preset named by key"


def test_presets_change_sizes_and_may_follow_the_scene(mesh):
    cpu, cuda, tiny = (parse_options(ISegOptions, preset=p, scene=mesh) for p in PRESETS)
    assert tiny.encoder_steps < cpu.encoder_steps < cuda.encoder_steps
    big = sample_mesh(max_edge=0.05)
    on_big = parse_options(ISegOptions, preset="cuda", scene=big)
    assert on_big.click_vertices == max(32, round(0.03 * big.n_elements)) > cuda.click_vertices
    assert parse_options(ISegOptions, {"preset": "tiny", "views": 3}).views == 3, "given values win over the preset"


@pytest.mark.parametrize(
    ("cls", "given", "words"),
    [
        (ISegOptions, {"bogus": 1}, ["unknown iseg options", "'bogus'", "views", "preset"]),
        (ISegOptions, {"views": 10**6}, ["'views'", "integer in [1, 2048]", "1000000"]),
        (ISegOptions, {"views": 0}, ["'views'", "[1, 2048]"]),
        (ISegOptions, {"views": True}, ["'views'", "an integer"]),
        (ISegOptions, {"views": 8.0}, ["'views'", "an integer"]),
        (ISegOptions, {"views": "8"}, ["'views'", "an integer"]),
        (ISegOptions, {"sigma": "5"}, ["'sigma'", "a number"]),
        (ISegOptions, {"sigma": math.nan}, ["'sigma'", "nan"]),
        (ISegOptions, {"encoder_lr": math.inf}, ["'encoder_lr'", "inf"]),
        (ISegOptions, {"encoder_lr": False}, ["'encoder_lr'", "a number"]),
        (ISegOptions, {"threshold": 1.0}, ["'threshold'", "[0.01, 0.99]"]),
        (ISegOptions, {"members": 100}, ["'members'", "[1, 8]"]),
        (ISegOptions, {"decoder": "huge"}, ["'decoder'", "one of", "'light'"]),
        (ISegOptions, {"preset": "huge"}, ["'preset'", "'tiny'"]),
        (ISegOptions, {"preset": 1}, ["'preset'"]),
        (SA3DOptions, {"fill_hidden": 1}, ["'fill_hidden'", "true or false"]),
        (SA3DOptions, {"mask": None}, ["'mask'", "one of"]),
        (SA3DOptions, {"resolution": 8.5}, ["'resolution'", "an integer"]),
        (WalkOptions, {"colour": -1}, ["walk option 'colour'", "[0.0, 100.0]"]),
        (WalkOptions, {"radius": 3}, ["unknown walk options", "'radius'", "neighbours"]),
    ],
)
def test_mistakes_are_bad_requests_naming_the_field(cls, given, words):
    message = _refused(cls, given)
    for word in words:
        assert word in message, (word, message)


def test_numpy_scalars_become_plain_numbers():
    opts = parse_options(SA3DOptions, {"views": np.int64(9), "fov_deg": np.float32(30.0), "fill_hidden": np.bool_(0)})
    assert (opts.views, opts.fov_deg, opts.fill_hidden) == (9, 30.0, False)
    assert type(opts.views) is int and type(opts.fov_deg) is float and type(opts.fill_hidden) is bool


def test_messages_never_quote_a_bulk_input():
    assert len(_refused(ISegOptions, {"views": list(range(100_000))})) < 300
    assert len(_refused(ISegOptions, {"x" * 100_000: 1})) < 1_000
    assert len(_refused(ISegOptions, {str(i): 1 for i in range(10_000)})) < 1_000
    assert len(_refused(ISegOptions, {"mask": "s" * 100_000})) < 300
    assert len(_refused(SA3DOptions, {"preset": "t" * 100_000})) < 300


def test_options_are_frozen():
    opts = parse_options(WalkOptions)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.colour = 2.0  # type: ignore[misc]


def test_the_cache_key_is_the_options_json(mesh):
    """The key hashes the options' JSON dict, so naming a preset and spelling out its values are one entry."""
    tiny = parse_options(SA3DOptions, {"preset": "tiny"})
    spelled = parse_options(SA3DOptions, {"views": 8, "resolution": 56, "top_k": 4})
    assert options_key("sa3d", "geometric", tiny.to_dict(), {}) == options_key(
        "sa3d", "geometric", spelled.to_dict(), {}
    )


def test_the_engine_refuses_bad_options_before_a_job_exists(tmp_path, mesh):
    engine = Engine(cache_dir=tmp_path)
    try:
        sid = engine.add_scene(mesh)
        for options in ({"views": 10**6}, {"bogus": 1}, {"preset": "huge"}):
            with pytest.raises(SegAnyError) as err:
                engine.submit("iseg", sid, options=options)
            assert err.value.code == "bad_request"
        assert engine.jobs() == []
    finally:
        engine.close()


@dataclasses.dataclass(frozen=True)
class _Undeclared:
    size: int = 3


@dataclasses.dataclass(frozen=True)
class _Unbounded:
    sizes: tuple[int, ...] = option((1,), 0, 9, doc="a list with no `most`")


@pytest.mark.parametrize("cls", [_Undeclared, _Unbounded])
def test_a_field_without_its_rules_is_a_programming_error(cls):
    """Every field says what it takes (a list how long it may be): forgetting is a TypeError at the first parse,
    whatever the caller gives."""
    with pytest.raises(TypeError):
        parse_options(cls, {}, owner="test")
