"""Priors own their configuration: typed options, describe → build round trips, and the engine's one restore path.

SAM and CLIP round trips live beside their random-weight fixtures (test_priors_sam.py, test_priors_clip.py);
SA3D with SAM through a restarted engine is in test_sa3d_engine.py.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import numpy as np
import pytest
from budgets import TINY
from sa3d_scenes import centre_element, splat_blobs

from segany.cameras import cameras_for_scene
from segany.engine import Engine
from segany.errors import SegAnyError
from segany.options import plain, typed_fields
from segany.priors import PriorSpec, get_prior, prior_class, prior_config, prior_names
from segany.priors.config import STATE_KEY
from segany.priors.geometric import BoundaryWeights
from segany.priors.oracle import OracleNoise
from segany.render import render
from segany.samples import sample_mesh


@pytest.fixture(scope="module")
def stool():
    scene = sample_mesh()
    return scene, render(scene, cameras_for_scene(scene, 2, 64, 64)).views


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory):
    return splat_blobs(tmp_path_factory.mktemp("config_blobs"))


def _through_a_state(spec: PriorSpec) -> PriorSpec:
    """What a cache entry gives back: the JSON part through json, the arrays as tensors."""
    meta, tensors = spec.to_state()
    return PriorSpec.from_state({STATE_KEY: json.loads(json.dumps(meta))}, tensors)


def _same_options(a: PriorSpec, b: PriorSpec) -> None:
    assert a.name == b.name and sorted(a.options) == sorted(b.options)
    for key, value in a.options.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(b.options[key], value)
        else:
            assert b.options[key] == value, key


def test_geometric_describes_and_rebuilds_itself(stool) -> None:
    _, views = stool
    prior = get_prior("geometric", levels=[0.5, 0.2], embed_dim=8, weights={"colour": 0.0, "scales": [1, 3]})
    assert prior.config.weights == BoundaryWeights(colour=0.0, scales=(1, 3))
    spec = _through_a_state(prior.describe())
    assert spec.options["weights"]["colour"] == 0.0 and spec.options["embed_dim"] == 8
    again = get_prior(spec.name, None, **spec.options)
    assert again.config == prior.config
    _same_options(again.describe(), prior.describe())
    for a, b in zip(prior.auto_masks(views, 0), again.auto_masks(views, 0), strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(prior.auto_masks(views, 0)) != len(get_prior("geometric").auto_masks(views, 0))  # options took


def test_oracle_describes_its_labels_and_noise(stool) -> None:
    scene, views = stool
    labels = scene.face_parts.astype(np.uint16) + 7  # unsigned and offset: the labels travel as they were given
    prior = get_prior("oracle", labels=labels, noise={"jitter": 2, "merge": 0.5}, seed=4)
    assert prior.noise == OracleNoise(jitter=2, merge=0.5)
    meta, tensors = prior.describe().to_state()
    assert set(tensors) == {f"{STATE_KEY}.labels"} and "labels" not in meta["options"]
    spec = _through_a_state(prior.describe())
    again = get_prior(spec.name, None, **spec.options)
    np.testing.assert_array_equal(again.classes, prior.classes)
    np.testing.assert_array_equal(again.labels, prior.labels)
    click = np.array([[32.5, 32.5]])
    np.testing.assert_array_equal(
        again.prompt(views, 1, click, np.array([1])).masks, prior.prompt(views, 1, click, np.array([1])).masks
    )
    assert get_prior("oracle", labels=labels, noise="default").describe().options["noise"] == "default"


@pytest.mark.parametrize(
    ("name", "options", "named"),
    [
        ("geometric", {"embed_dim": "8"}, "'embed_dim'"),
        ("geometric", {"embed_dim": True}, "'embed_dim'"),
        ("geometric", {"levels": [0.1, "x"]}, "'levels[1]'"),
        ("geometric", {"min_area": float("nan")}, "'min_area'"),
        ("geometric", {"weights": {"colour": "red"}}, "'weights.colour'"),
        ("geometric", {"weights": {"hue": 1.0}}, "'weights.hue'"),
        ("geometric", {"weights": {"scales": [1, 0]}}, "'weights.scales[1]'"),
        ("geometric", {"weights": 0.3}, "'weights'"),
        ("geometric", {"colour": True}, "'colour'"),
        ("geometric", {"preset": "tiny"}, "'preset'"),  # presets are a method's, not a prior's
        ("geometric", {"embed_dim": 2}, "'embed_dim' must be an integer in [4, 256]"),
        ("geometric", {"levels": [0.2, 1.5]}, "'levels[1]' must be a number in [0.0, 1.0]"),
        ("geometric", {"levels": [0.5] * 9}, "'levels' must be a list of at most 8 items"),
        ("geometric", {"levels": "0.5"}, "'levels'"),
        ("oracle", {}, "'labels' must be given"),
        ("oracle", {"labels": [0.5, 1.0]}, "'labels' must be a 1-d array of integers"),
        ("oracle", {"labels": [[0, 1]]}, "'labels' must be a 1-d array"),
        ("oracle", {"labels": [0, [1, 2]]}, "'labels'"),  # ragged
        ("oracle", {"labels": [True, False]}, "'labels'"),
        ("oracle", {"labels": [0, 1], "noise": {"jiter": 1}}, "'noise.jiter'"),
        ("oracle", {"labels": [0, 1], "noise": {"merge": 1.5}}, "'noise.merge' must be a number in [0.0, 1.0]"),
        ("oracle", {"labels": [0, 1], "noise": {"jitter": 1.0}}, "'noise.jitter' must be an integer"),
        ("oracle", {"labels": [0, 1], "noise": 3}, "'noise'"),
        ("oracle", {"labels": [0, 1], "noise": "loud"}, "one of ['default'] or null"),
        ("oracle", {"labels": [0, 1], "seed": 1.5}, "'seed'"),
        ("oracle", {"labels": [0, 1], "seed": -1}, "'seed'"),
        ("sam", {"device": "cuda"}, "'device'"),  # the machine's business: the engine's context
        ("sam", {"checkpoint": 5}, "'checkpoint'"),
        ("sam", {"model_type": "vit_x"}, "'model_type' must be one of ['vit_b', 'vit_l', 'vit_h'] or null"),
        ("sam", {"auto_options": {"points_per_side": "16"}}, "'auto_options.points_per_side' must be an integer"),
        ("sam", {"auto_options": {"points_per_sid": 16}}, "'auto_options.points_per_sid'"),
        ("sam", {"auto_options": {"crop_n_layers": 9}}, "'auto_options.crop_n_layers'"),
        ("sam", {"auto_options": 16}, "'auto_options' must be settings"),
        ("sam", {"memory_views": 0}, "'memory_views'"),
        ("clip", {"cache_dir": "/tmp"}, "'cache_dir'"),
        ("clip", {"model_name": None}, "'model_name'"),
    ],
)
def test_bad_options_are_refused_naming_the_field(name: str, options: dict, named: str) -> None:
    """Refused by the parser, before a checkpoint is looked for or a label read."""
    with pytest.raises(SegAnyError) as err:
        get_prior(name, None, **options)
    assert err.value.code == "bad_request" and named in err.value.message, err.value.message
    assert err.value.message.startswith((f"prior {name!r} option", f"unknown prior {name!r} options"))


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("oracle", {"labels": np.linspace(0, 1, 10**6)}),
        ("oracle", {"labels": [0, 1], "noise": "x" * 10**5}),
        ("geometric", {"levels": list(range(10**5))}),
        ("geometric", {"weights": {f"w{i}": 0 for i in range(10**4)}}),
        ("sam", {"auto_options": {"k" * 10**5: 1}}),
    ],
)
def test_messages_never_quote_a_bulk_input(name: str, options: dict) -> None:
    with pytest.raises(SegAnyError) as err:
        get_prior(name, None, **options)
    assert err.value.code == "bad_request" and len(err.value.message) < 400, err.value.message


def test_prior_options_arrive_as_json_or_python_values(tmp_path: Path) -> None:
    """Lists become tuples and arrays, numpy scalars plain numbers, a Path a text, settings a dataclass;
    labels keep the integer dtype they were given."""
    labels = np.arange(5, dtype=np.uint16)
    config = prior_config("oracle", {"labels": labels, "noise": {"merge": np.float32(0.5)}, "seed": np.int64(3)})
    assert config.labels.dtype == np.uint16 and config.noise == OracleNoise(merge=0.5) and type(config.seed) is int
    assert prior_config("oracle", {"labels": [1, 2], "noise": "default"}).labels.dtype.kind == "i"
    assert prior_config("oracle", {"labels": [1, 2], "noise": OracleNoise(split=1.0)}).noise == OracleNoise(split=1.0)
    assert prior_config("geometric", {"levels": [np.float64(0.5)], "weights": BoundaryWeights(colour=0.0)}) == (
        prior_config("geometric", {"levels": (0.5,), "weights": {"colour": 0}})
    )
    assert prior_config("sam", {"checkpoint": tmp_path / "sam.pth"}).checkpoint == str(tmp_path / "sam.pth")
    auto = prior_config("sam", {"auto_options": {"points_per_side": 4, "pred_iou_thresh": 1}}).auto_options
    assert (auto.points_per_side, auto.pred_iou_thresh, auto.box_nms_thresh) == (4, 1.0, None)
    assert type(auto.pred_iou_thresh) is float


def _declared(cls: type) -> list[str]:
    """Paths of the fields of a Config (nested settings included) that do not say what they are for."""
    out = []
    for f, kind in typed_fields(cls):
        if not f.metadata.get("doc"):
            out.append(f"{cls.__name__}.{f.name}")
        out += [p for arm in (kind, *typing.get_args(kind)) if dataclasses.is_dataclass(arm) for p in _declared(arm)]
    return out


@pytest.mark.parametrize("name", prior_names())
def test_every_prior_option_is_declared_with_its_rules(name: str) -> None:
    config = prior_class(name).Config
    assert _declared(config) == []
    if name not in ("oracle", "oracle_text"):  # the oracles' labels have no default
        assert plain(prior_config(name, {})) == plain(config()), "the declared defaults pass their own rules"


def test_the_engine_refuses_bad_prior_options_before_a_job_exists(tmp_path: Path, blobs) -> None:
    scene, _ = blobs
    engine = Engine(cache_dir=tmp_path, device="cpu")
    sid = engine.add_scene(scene)
    with pytest.raises(SegAnyError) as err:
        engine.submit("sa3d", sid, prior="geometric", options=TINY, prior_options={"embed_dim": "big"})
    assert err.value.code == "bad_request" and "'embed_dim'" in err.value.message
    assert engine.jobs() == []
    with pytest.raises(SegAnyError) as err:
        engine.submit("sa3d", sid, prior="nope", options=TINY)
    assert err.value.code == "not_found"
    engine.close()


def test_a_cached_state_brings_back_the_prior_it_was_prepared_with(tmp_path: Path, blobs) -> None:
    """Non-default geometric options, then a restart: the query answers with those options, not the defaults."""
    scene, labels = blobs
    click = {"clicks": [[centre_element(scene.means, labels, 0), 1]]}
    popts = {"levels": [0.25, 0.5], "embed_dim": 8, "min_area": 0.05}
    engine = Engine(cache_dir=tmp_path, device="cpu")
    sid = engine.add_scene(scene)
    assert engine.prepare("sa3d", sid, options=TINY, prior_options=popts)["message"] == "prepared"
    first = engine.query("sa3d", sid, click)
    prepared_with = engine.state("sa3d", sid).prior.config
    engine.close()

    fresh = Engine(cache_dir=tmp_path, device="cpu")
    fresh.add_scene(scene)
    state = fresh.state("sa3d", sid)
    assert state.prior.config == prepared_with and state.prior.config.levels == (0.25, 0.5)
    np.testing.assert_array_equal(fresh.query("sa3d", sid, click).scores, first.scores)
    fresh.close()


def test_a_job_hitting_the_cache_and_a_direct_query_restore_the_same_way(tmp_path: Path, blobs) -> None:
    """Both build the prior from the state's record with the engine's context: the same description, the
    same answer, whatever the job's own prior options were made of."""
    scene, labels = blobs
    click = {"clicks": [[centre_element(scene.means, labels, 1), 1]]}
    popts = {"labels": labels, "noise": {"jitter": 1}, "seed": 2}
    first = Engine(cache_dir=tmp_path, device="cpu")
    sid = first.add_scene(scene)
    first.prepare("sa3d", sid, prior="oracle", options=TINY, prior_options=popts)
    recorded = first.state("sa3d", sid, "oracle").prior.describe()
    first.close()

    by_job, by_query = Engine(cache_dir=tmp_path, device="cpu"), Engine(cache_dir=tmp_path, device="cpu")
    by_job.add_scene(scene)
    by_query.add_scene(scene)
    assert by_job.prepare("sa3d", sid, prior="oracle", options=TINY, prior_options=popts)["message"] == (
        "loaded from cache"
    )
    answers = []
    for engine in (by_job, by_query):
        state = engine.state("sa3d", sid, "oracle")
        _same_options(state.prior.describe(), recorded)
        answers.append(engine.query("sa3d", sid, click, prior="oracle").scores)
        engine.close()
    np.testing.assert_array_equal(answers[0], answers[1])


def test_a_state_without_a_prior_record_is_prepared_again(tmp_path: Path, blobs) -> None:
    """An entry whose record lost its prior (hand-edited, or written by another SegAny): a query says to
    prepare, and a prepare job makes it again instead of failing."""
    scene, _ = blobs
    engine = Engine(cache_dir=tmp_path, device="cpu")
    sid = engine.add_scene(scene)
    engine.prepare("sa3d", sid, options=TINY)
    engine.close()
    (entry,) = engine.cache.entries(sid)
    record = json.loads((entry.path / "record.json").read_text())
    del record["meta"][STATE_KEY]
    (entry.path / "record.json").write_text(json.dumps(record))

    fresh = Engine(cache_dir=tmp_path, device="cpu")
    fresh.add_scene(scene)
    with pytest.raises(SegAnyError) as err:
        fresh.query("sa3d", sid, {"clicks": [[0, 1]]})
    assert err.value.code == "not_prepared" and "prepare again" in err.value.message
    result = fresh.prepare("sa3d", sid, options=TINY)
    assert result["message"].startswith("prepared again") and "prior" in result["message"]
    assert fresh.query("sa3d", sid, {"clicks": [[0, 1]]}).scores.shape == (scene.n_elements,)
    fresh.close()
