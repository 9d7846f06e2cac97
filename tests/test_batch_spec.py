"""The batch job spec and its inputs (folder, glob, file, CSV / JSONL manifest): checked before any asset runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segany.batch import collect_assets, load_spec, parse_spec
from segany.errors import SegAnyError


def refused(code: str, fn, *args, words: tuple[str, ...] = ()) -> None:
    """fn(*args) raises a SegAnyError with `code` whose message names every one of `words`."""
    with pytest.raises(SegAnyError) as info:
        fn(*args)
    assert info.value.code == code, info.value
    for w in words:
        assert w in info.value.message, info.value.message


def test_spec_defaults_and_round_trip() -> None:
    spec = parse_spec({"clicks": [[120, 1], [45, -1]], "method": "walk", "options": {"preset": "tiny"}})
    assert spec.work.task == "clicks" and spec.work.clicks == ((120, 1), (45, -1)) and spec.work.retries == 2
    assert parse_spec(spec.to_dict()) == spec
    assert spec.options == {"preset": "tiny"}


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ({"clicks": [[1, 1]], "colour": "red"}, ["colour"]),
        ({"task": "paint", "clicks": [[1, 1]]}, ["task", "clicks", "everything", "label"]),
        ({"task": "clicks"}, ["needs clicks"]),
        ({"clicks": [[1, 2]]}, ["click 0", "+1 or -1"]),
        ({"clicks": [[-3, 1]]}, ["click 0"]),
        ({"task": "everything"}, ["scale"]),
        ({"task": "everything", "scale": 0.0}, ["scale above 0"]),
        ({"task": "everything", "scale": float("nan")}, ["scale"]),
        ({"task": "everything", "scale": "big"}, ["scale", "auto", "'big'"]),
        ({"task": "label", "words": ["  "]}, ["needs words"]),
        ({"task": "label", "words": ["w"] * 65}, ["words"]),
        ({"clicks": [[1, 1]], "options": [1, 2]}, ["options"]),
        ({"clicks": [[1, 1]], "retries": 11}, ["retries"]),
    ],
)
def test_bad_specs_are_bad_requests_naming_the_field(given: dict, words: list[str]) -> None:
    refused("bad_request", parse_spec, given, words=tuple(words))


def test_everything_takes_a_scale_or_auto() -> None:
    assert parse_spec({"task": "everything", "scale": 0.2}).work.scale == 0.2
    assert parse_spec({"task": "everything", "scale": "auto"}).work.scale == "auto"  # the method's own reference


def test_spec_key_follows_what_changes_the_outputs() -> None:
    base = parse_spec({"clicks": [[1, 1]]})
    assert base.key() == parse_spec({"clicks": [[1, 1]], "retries": 5}).key()  # retries change no output
    assert base.key() != parse_spec({"clicks": [[2, 1]]}).key()
    assert base.key() != parse_spec({"clicks": [[1, 1]], "options": {"preset": "tiny"}}).key()


def test_spec_file(tmp_path: Path) -> None:
    (tmp_path / "spec.json").write_text(json.dumps({"task": "everything", "scale": 0.2, "method": "saga"}))
    assert load_spec(tmp_path / "spec.json").work.scale == 0.2
    (tmp_path / "broken.json").write_text("{")
    refused("bad_request", load_spec, tmp_path / "broken.json", words=("not JSON",))
    refused("not_found", load_spec, tmp_path / "nope.json", words=("nope.json",))


def _files(root: Path, *names: str) -> list[Path]:
    out = []
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
        out.append(p)
    return out


def test_folder_glob_and_file_inputs(tmp_path: Path) -> None:
    spec = parse_spec({"clicks": [[0, 1]]})
    _files(tmp_path, "b.ply", "a.obj", "notes.txt", "sub/c.off")
    assert [a.name for a in collect_assets([str(tmp_path)], spec)] == ["a", "b"]  # sorted, scene files only
    assert [a.name for a in collect_assets([str(tmp_path / "*" / "*.off")], spec)] == ["c"]
    assert [a.path for a in collect_assets([str(tmp_path / "b.ply")], spec)] == [tmp_path / "b.ply"]
    refused("not_found", collect_assets, [str(tmp_path / "missing.ply")], spec, words=("missing.ply",))
    refused("not_found", collect_assets, [str(tmp_path / "*.xyz")], spec, words=("no scene files",))


def test_repeated_stems_get_distinct_names(tmp_path: Path) -> None:
    _files(tmp_path, "one/chair.ply", "two/chair.ply")
    spec = parse_spec({"clicks": [[0, 1]]})
    names = [a.name for a in collect_assets([str(tmp_path / "one"), str(tmp_path / "two")], spec)]
    assert len(set(names)) == 2 and all(n.startswith("chair-") for n in names)


def test_csv_manifest_overrides_per_asset(tmp_path: Path) -> None:
    _files(tmp_path, "m/a.ply", "m/b.ply", "m/c.ply")
    (tmp_path / "m" / "list.csv").write_text(
        'path,clicks,words,scale\na.ply,120 -45,,\nb.ply,"[[3, 1]]",,\n' + f"{tmp_path / 'm' / 'c.ply'},,,\n"
    )
    spec = parse_spec({"clicks": [[0, 1]]})
    a, b, c = collect_assets([str(tmp_path / "m" / "list.csv")], spec)
    assert a.path == tmp_path / "m" / "a.ply"  # relative to the manifest
    assert a.spec.work.clicks == ((120, 1), (45, -1))
    assert b.spec.work.clicks == ((3, 1),)
    assert c.spec == spec and c.spec.key() != a.spec.key()


def test_jsonl_manifest_words_and_scale(tmp_path: Path) -> None:
    _files(tmp_path, "a.ply", "b.ply")
    rows = [{"path": "a.ply", "words": ["seat", "leg"]}, {"path": "b.ply", "words": ["back"]}]
    (tmp_path / "list.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    a, b = collect_assets([str(tmp_path / "list.jsonl")], parse_spec({"task": "label", "words": ["x"]}))
    assert a.spec.work.words == ("seat", "leg") and b.spec.work.words == ("back",)
    (tmp_path / "s.csv").write_text("path,scale\na.ply,0.25\nb.ply,auto\n")
    s, t = collect_assets([str(tmp_path / "s.csv")], parse_spec({"task": "everything", "scale": 1.0}))
    assert s.spec.work.scale == 0.25 and t.spec.work.scale == "auto"


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("bad.csv", "file,clicks\na.ply,1\n", ["'path' column"]),
        ("bad.csv", "path,colour\na.ply,red\n", ["line 2", "colour"]),
        ("bad.csv", "path,clicks\na.ply,1 x\n", ["line 2", "'x'"]),
        ("bad.csv", "path,scale\na.ply,big\n", ["line 2", "scale"]),
        ("bad.jsonl", '{"path": "a.ply"}\n{"path": 3}\n', ["line 2", "path"]),
        ("bad.jsonl", "{\n", ["line 1", "not JSON"]),
        ("bad.jsonl", '{"path": "a.ply", "clicks": [[0, 5]]}\n', ["line 1", "click 0"]),
    ],
)
def test_bad_manifests_name_the_line(tmp_path: Path, name: str, text: str, words: list[str]) -> None:
    (tmp_path / name).write_text(text)
    refused("bad_request", collect_assets, [str(tmp_path / name)], parse_spec({"clicks": [[0, 1]]}), words=tuple(words))


def test_the_command_names_a_bad_spec_before_any_work(tmp_path: Path) -> None:
    """`segany batch` as a user runs it: one `error [code] message` line and exit status 2."""
    import subprocess
    import sys

    _files(tmp_path, "a.ply")
    base = [sys.executable, "-m", "segany.cli", "batch", "--out", str(tmp_path / "out")]
    for args, said in [
        ([str(tmp_path / "missing.ply"), "--click", "3"], "[not_found]"),
        ([str(tmp_path), "--task", "everything", "--scale", "-1"], "[bad_request] --scale"),
        ([str(tmp_path), "--click", "3", "--options", "[1]"], "[bad_request] --options"),
        ([str(tmp_path), "--click", "3", "--threads", "0"], "[bad_request] --threads"),
        ([str(tmp_path), "--click", "3", "--workers", "0"], "[bad_request] --workers"),
    ]:
        res = subprocess.run([*base, *args], capture_output=True, text=True, timeout=300)
        assert res.returncode == 2 and said in res.stderr, res.stderr
    assert not (tmp_path / "out").exists()  # nothing was started, not even the output folder
