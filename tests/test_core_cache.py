"""Cache: round trip, atomic visibility, two writer processes, stale temp dirs, clear."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

from segany.cache import Cache, options_key
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
