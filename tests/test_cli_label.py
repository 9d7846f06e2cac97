"""`segany label FILE --words ... --out DIR` as a user runs it: a labelled PLY, a picture with a legend, a key.

SAS runs on its tiny preset with the ground-truth `oracle_text` sources (real language models need weights
this machine cannot download), and once with a tiny CLIP at random weights through the real code path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from plyfile import PlyData
from typer.testing import CliRunner

from segany.cli import app
from segany.formats import write_mesh_ply
from segany.scene import MeshScene
from tests.clip_tiny import TINY_NAME, tiny_checkpoint

SEGANY = [sys.executable, "-m", "segany.cli"]
STOOL_NAMES = ["seat", "Rückenlehne", "leg", "leg", "leg", "leg", "ring"]  # per face_parts value; any script
WORDS = ["seat", "Rückenlehne", "leg", "ring"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*SEGANY, *args], capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def stool_file(stool: MeshScene, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("label") / "stool.ply"
    write_mesh_ply(path, stool)
    return path


def test_label_writes_a_labelled_ply_a_picture_and_a_key(stool: MeshScene, stool_file: Path, tmp_path: Path) -> None:
    popts = {"labels": stool.face_parts.tolist(), "names": STOOL_NAMES, "confusion": 0.0, "noise": 0.0}
    out = tmp_path / "out"
    res = run("label", str(stool_file), "--words", " seat, Rückenlehne ,leg, ring", "--prior", "oracle_text",
              "--prior-options", json.dumps(popts), "--options", '{"preset": "tiny"}', "--out", str(out),
              "--cache-dir", str(tmp_path / "cache"))  # fmt: skip
    assert res.returncode == 0, res.stderr
    key = json.loads((out / "labels.json").read_text(encoding="utf-8"))
    assert key["words"] == WORDS and key["elements"] == stool.n_elements and key["kind"] == "mesh"
    assert sum(key["counts"].values()) + key["other"] == stool.n_elements
    assert len(key["colours"]) == len(WORDS)

    vertex = PlyData.read(str(out / "labels.ply"))["vertex"]
    part = np.asarray(vertex["part"])
    assert len(part) == stool.n_elements and part.min() >= -1 and part.max() < len(WORDS)
    # each word's index lands on its own part: perfect sources label nearly every vertex of a part by its name
    for value, name in enumerate(STOOL_NAMES):
        verts = np.unique(stool.faces[stool.face_parts == value])
        assert np.mean(part[verts] == WORDS.index(name)) > 0.8, name
    colour = np.stack([vertex["red"], vertex["green"], vertex["blue"]], axis=1)
    labelled = part >= 0
    np.testing.assert_allclose(colour[labelled] / 255, np.asarray(key["colours"])[part[labelled]], atol=1 / 255 + 1e-4)

    picture = Image.open(out / "labels.png")
    assert picture.width == 4 * 320 and picture.height > 320  # four views over a legend


@pytest.mark.parametrize(
    ("words", "says"),
    [
        (" , ", "no words"),
        ("seat, Seat", "twice"),
        (",".join(f"w{i}" for i in range(1000)), "at most 64"),
    ],
)
def test_bad_words_are_refused_before_any_work(stool_file: Path, tmp_path: Path, words: str, says: str) -> None:
    res = run("label", str(stool_file), "--words", words, "--out", str(tmp_path / "out"))
    assert res.returncode == 2 and "[bad_request]" in res.stderr and says in res.stderr, res.stderr
    assert not (tmp_path / "out").exists()


def test_without_clip_weights_it_says_what_to_fetch(stool_file: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in __import__("os").environ.items() if k != "SEGANY_CLIP_CHECKPOINT"}
    env["SEGANY_MODELS"] = str(tmp_path / "models")
    res = run("label", str(stool_file), "--words", "seat, leg", "--options", '{"preset": "tiny"}',
              "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), env=env)  # fmt: skip
    assert res.returncode == 2 and "[bad_request]" in res.stderr
    assert "segany models fetch clip_vit_b_16" in res.stderr


def test_label_with_clip_sources(stool_file: Path, tmp_path: Path, monkeypatch) -> None:
    """The real CLIP code path end to end (tiny ViT, random weights: the labels mean nothing, the files must)."""
    checkpoint = tiny_checkpoint(tmp_path)
    monkeypatch.setenv("SEGANY_CLIP_CHECKPOINT", str(checkpoint))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    popts = json.dumps({"clip": {"model_name": TINY_NAME, "image_size": 64}, "cell": 2})
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["label", str(stool_file), "--words", "seat, leg", "--prior", "clip_sources",
                                   "--prior-options", popts, "--options", '{"preset": "tiny"}', "--out", str(out),
                                   "--cache-dir", str(tmp_path / "cache")])  # fmt: skip
    assert res.exit_code == 0, res.output + repr(res.exception)
    key = json.loads((out / "labels.json").read_text(encoding="utf-8"))
    assert key["words"] == ["seat", "leg"] and sum(key["counts"].values()) + key["other"] == key["elements"]
    assert len(PlyData.read(str(out / "labels.ply"))["vertex"]["part"]) == key["elements"]
