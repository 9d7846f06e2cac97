"""Tables written by `segany eval` and `segany bench` say which command, date and commit made them.

Real git repositories in a temp dir, a real evaluation run and real report files; no mocks.
"""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from eval_shapes import split_box, write_psb

from segany import provenance
from segany.bench.report import Row, write_report
from segany.eval import run_eval

GIT = shutil.which("git")


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


@pytest.mark.skipif(GIT is None, reason="needs the git command")
def test_commit_is_the_short_head_marked_when_tracked_files_changed(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.txt").write_text("one\n")
    _git(repo, "add", "a.txt")
    _git(repo, "commit", "-q", "-m", "first")
    head = _git(repo, "rev-parse", "--short", "HEAD")
    assert provenance.commit(repo) == head
    (repo / "untracked.txt").write_text("not part of the code\n")
    assert provenance.commit(repo) == head
    (repo / "a.txt").write_text("two\n")
    assert provenance.commit(repo) == head + "+modified"


def test_commit_outside_a_checkout_is_unknown(tmp_path: Path) -> None:
    assert provenance.commit(tmp_path) == "unknown"


def test_command_line_is_what_a_user_retypes() -> None:
    argv = ["/home/u/segany/.venv/bin/segany", "eval", "--method", "iseg", "--query", '{"refine": false}']
    assert provenance.command_line(argv) == "segany eval --method iseg --query '{\"refine\": false}'"
    assert provenance.command_line(["C:\\v\\Scripts\\segany.exe", "bench", "iseg"]).endswith("bench iseg")
    assert provenance.command_line(["/usr/bin/python3", "-m", "segany.cli", "bench", "kernels"]) == (
        "python3 -m segany.cli bench kernels"
    )


def _is_recent(date: str) -> bool:
    when = datetime.datetime.fromisoformat(date)
    return abs((datetime.datetime.now(datetime.UTC) - when).total_seconds()) < 24 * 3600


def test_eval_report_carries_date_commit_and_command(tmp_path: Path) -> None:
    data = write_psb(tmp_path / "psb", [split_box(1)])
    results = run_eval("baseline", None, data, None, 2, tmp_path / "out")
    cfg = json.loads((tmp_path / "out" / "results.json").read_text())["config"]
    assert cfg == results["config"]
    assert cfg["commit"] == provenance.commit() and cfg["command"] == provenance.command_line()
    assert _is_recent(cfg["date"])
    report = (tmp_path / "out" / "report.md").read_text().splitlines()
    assert report[2] == f"Written by `{cfg['command']}` on {cfg['date']} at commit `{cfg['commit']}`."


def test_bench_writes_a_stamped_markdown_table(tmp_path: Path) -> None:
    rows = [
        Row("a | b", "time", 0.5, "s", baseline="reference", baseline_value=2.0, target="< 1 s"),
        Row("rate", "bandwidth", 12.5, "GB/s"),
    ]
    argv = ["/x/.venv/bin/segany", "bench", "demo", "--out", str(tmp_path)]
    doc = write_report("demo", tmp_path, rows, argv=argv)
    saved = json.loads((tmp_path / "demo.json").read_text())
    assert saved["command"] == f"segany bench demo --out {tmp_path}" == doc["command"]
    assert saved["commit"] == provenance.commit() and _is_recent(saved["date"])
    table = (tmp_path / "demo.md").read_text().splitlines()
    assert table[0] == "# segany bench demo"
    assert table[2] == f"Written by `{saved['command']}` on {saved['date']} at commit `{saved['commit']}`."
    assert "| a \\| b | time | 0.5 s | reference: 2 s | 0.250 | < 1 s |" in table
    assert "| rate | bandwidth | 12.5 GB/s |  |  |  |" in table
