"""The `segany` command line as a user runs it: real subprocesses, real files."""

import json
import subprocess
import sys
from pathlib import Path

import trimesh

SEGANY = [sys.executable, "-m", "segany.cli"]


def run(*args: str, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*SEGANY, *args, *(["--cache-dir", str(cache)] if args[0] in ("info", "segment") else [])],
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_info_lists_methods_priors_and_cache(tmp_path):
    res = run("info", cache=tmp_path)
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["device"] in ("cpu", "cuda")
    assert "iseg" in data["methods"][0]["name"]
    assert {p["name"] for p in data["priors"]} >= {"geometric", "oracle", "sam", "clip"}
    assert data["cache_dir"] == str(tmp_path)


def test_segment_reports_clear_errors(tmp_path):
    res = run("segment", str(tmp_path / "missing.obj"), "--click", "3", cache=tmp_path)
    assert res.returncode == 2 and "[not_found]" in res.stderr
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 1000\nproperty float x\nend_header\n\x00")
    res = run("segment", str(bad), "--click", "3", cache=tmp_path)
    assert res.returncode == 2 and "[corrupt_file]" in res.stderr
    box = tmp_path / "box.obj"
    trimesh.creation.box().export(box)
    res = run("segment", str(box), "--click", "3", "--method", "nope", cache=tmp_path)
    assert res.returncode == 2 and "[not_found]" in res.stderr and "iseg" in res.stderr


def test_cache_list_and_clear(tmp_path):
    import torch

    from segany.cache import Cache
    from segany.methods.base import State

    Cache(tmp_path).save("abc", "iseg", "k1", State({"x": torch.zeros(3)}), {"prior": "geometric"})
    listed = subprocess.run([*SEGANY, "cache", "list", "--cache-dir", str(tmp_path)], capture_output=True, text=True)
    assert listed.returncode == 0 and "iseg" in listed.stdout and "geometric" in listed.stdout
    cleared = subprocess.run([*SEGANY, "cache", "clear", "--cache-dir", str(tmp_path)], capture_output=True, text=True)
    assert "removed 1 entries" in cleared.stdout
    assert Cache(tmp_path).entries() == []


def test_eval_refuses_a_query_or_options_that_are_not_a_json_object(tmp_path):
    for flag in ("--query", "--options"):
        for text in ("{refine: false", "[1, 2]"):
            args = ("--method", "baseline", "--data", str(tmp_path), flag, text, "--out", str(tmp_path / "o"))
            res = run("eval", *args, cache=tmp_path)
            assert res.returncode == 2 and "[bad_request]" in res.stderr and flag in res.stderr, res.stderr


def test_clicks_past_a_querys_limit_are_refused_before_any_work(tmp_path):
    for n in ("0", "65"):
        res = run("eval", "--method", "baseline", "--data", str(tmp_path), "--clicks", n, "--out", str(tmp_path / "o"),
                  cache=tmp_path)  # fmt: skip
        assert res.returncode == 2 and "[bad_request]" in res.stderr and "--clicks" in res.stderr, res.stderr
    box = tmp_path / "box.obj"
    trimesh.creation.box().export(box)
    res = run("segment", str(box), *[f"--click={i % 8}" for i in range(65)], "--method", "walk", cache=tmp_path)
    assert res.returncode == 2 and "[bad_request]" in res.stderr and "at most 64 clicks" in res.stderr, res.stderr
