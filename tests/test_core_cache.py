"""Cache: round trip, atomic visibility, two writer processes, stale temp dirs, damaged entries, clear."""

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from segany.cache import Cache, DamagedEntry, options_key
from segany.methods.base import State


def make_state(seed: int = 0) -> State:
    g = torch.Generator().manual_seed(seed)
    return State(tensors={"w": torch.randn(64, 8, generator=g), "idx": torch.arange(10)}, meta={"views": 4})


def test_round_trip_and_latest(tmp_path):
    cache = Cache(tmp_path)
    state = make_state()
    cache.save("s1", "iseg", "k1", state, {"prior": "geometric"})
    back = cache.load("s1", "iseg", "k1")
    assert torch.equal(back.tensors["w"], state.tensors["w"]) and back.meta == {"views": 4}
    entry, latest = cache.latest("s1", "iseg", "geometric")
    assert entry.key == "k1" and torch.equal(latest.tensors["idx"], state.tensors["idx"])
    assert cache.latest("s1", "iseg", "oracle") is None
    record = json.loads((entry.path / "record.json").read_text())
    assert record["layout"] == "v1" and record["versions"]["torch"] == torch.__version__


def test_options_key_stable_and_array_sensitive():
    a = options_key("iseg", "oracle", {"views": 8, "epochs": 2}, {"labels": np.arange(5)})
    b = options_key("iseg", "oracle", {"epochs": 2, "views": 8}, {"labels": np.arange(5)})
    c = options_key("iseg", "oracle", {"views": 8, "epochs": 2}, {"labels": np.arange(5)[::-1].copy()})
    assert a == b and a != c


def test_half_written_entry_is_never_read(tmp_path):
    cache = Cache(tmp_path)
    tmp = cache.base / "s1" / "iseg" / ".tmp-999-dead"
    tmp.mkdir(parents=True)
    (tmp / "state.safetensors").write_bytes(b"\x00" * 10)
    assert cache.load("s1", "iseg", "dead") is None
    assert cache.entries() == []
    old = time.time() - 7200
    os.utime(tmp, (old, old))
    assert cache.sweep_temp() == 1 and not tmp.exists()


WRITER = """
import sys, torch
from segany.cache import Cache
from segany.methods.base import State
cache = Cache(sys.argv[1])
for i in range(20):
    cache.save("s", "m", f"k{i}", State({"x": torch.full((20000,), float(i))}), {"prior": "p"})
"""


def test_two_processes_write_the_same_entries(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)]) for _ in range(2)]
    assert all(p.wait(120) == 0 for p in procs)
    cache = Cache(tmp_path)
    assert len(cache.entries()) == 20
    for i in range(20):
        assert float(cache.load("s", "m", f"k{i}").tensors["x"][0]) == i
    assert not list(cache.base.glob("*/*/.tmp-*"))


def test_clear_one_scene_or_all(tmp_path):
    cache = Cache(tmp_path)
    for sid in ("a", "b"):
        cache.save(sid, "iseg", "k", make_state(), {"prior": "geometric"})
    assert cache.clear("a") == 1 and [e.scene_id for e in cache.entries()] == ["b"]
    assert cache.clear() == 1 and cache.entries() == []


def _truncate(entry: Path) -> None:
    (entry / "state.safetensors").write_bytes((entry / "state.safetensors").read_bytes()[:5])


def _reshape(entry: Path) -> None:
    save_file({"w": torch.zeros(8, 64), "idx": torch.arange(10)}, str(entry / "state.safetensors"))


def _flip_a_byte(entry: Path) -> None:
    data = bytearray((entry / "state.safetensors").read_bytes())
    data[-1] ^= 0xFF  # inside the last tensor's values: the file still parses
    (entry / "state.safetensors").write_bytes(bytes(data))


def _drop_state(entry: Path) -> None:
    (entry / "state.safetensors").unlink()


def _garble_record(entry: Path) -> None:
    (entry / "record.json").write_text('{"scene_id": ')


def _another_scenes(entry: Path) -> None:
    shutil.rmtree(entry)
    shutil.copytree(entry.parent.parent.parent / "other" / "iseg" / "k1", entry)


@pytest.mark.parametrize(
    "damage",
    [_truncate, _reshape, _flip_a_byte, _drop_state, _garble_record, _another_scenes],
    ids=lambda f: f.__name__,
)
def test_a_damaged_entry_is_reported_once_moved_aside_and_written_again(tmp_path, caplog, damage):
    cache = Cache(tmp_path)
    cache.save("other", "iseg", "k1", make_state(1), {"prior": "geometric"})
    entry = cache.save("s1", "iseg", "k1", make_state(), {"prior": "geometric"})
    damage(entry)
    damaged = {p.name: p.read_bytes() for p in entry.iterdir()}
    with caplog.at_level(logging.WARNING, logger="segany.cache"), pytest.raises(DamagedEntry) as info:
        cache.load("s1", "iseg", "k1")
    assert info.value.code == "corrupt_file" and str(entry) in info.value.message
    moved = info.value.moved_to
    assert not entry.exists() and {p.name: p.read_bytes() for p in moved.iterdir()} == damaged, "nothing is lost"
    assert cache.load("s1", "iseg", "k1") is None and cache.latest("s1", "iseg") is None
    assert [r.levelno for r in caplog.records] == [logging.WARNING], "reported once"
    assert [e.scene_id for e in cache.entries()] == ["other"], "the set-aside entry is no entry"
    cache.save("s1", "iseg", "k1", make_state(), {"prior": "geometric"})
    assert torch.equal(cache.load("s1", "iseg", "k1").tensors["w"], make_state().tensors["w"])
    assert cache.clear() == 2 and not moved.exists()


def test_latest_skips_a_damaged_entry_for_an_older_good_one(tmp_path):
    cache = Cache(tmp_path)
    cache.save("s1", "iseg", "old", make_state(1), {"prior": "geometric"})
    newer = cache.save("s1", "iseg", "new", make_state(2), {"prior": "geometric"})
    record = json.loads((newer / "record.json").read_text())
    record["created"] += 1  # newer beyond the clock's resolution
    (newer / "record.json").write_text(json.dumps(record))
    _truncate(newer)
    entry, state = cache.latest("s1", "iseg", "geometric")
    assert entry.key == "old" and torch.equal(state.tensors["w"], make_state(1).tensors["w"])
    assert not newer.exists()
    _flip_a_byte(entry.path)
    with pytest.raises(DamagedEntry):
        cache.latest("s1", "iseg", "geometric")
    assert cache.latest("s1", "iseg", "geometric") is None
