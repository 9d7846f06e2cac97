"""Small real assets for the batch tests: the sample stool as a mesh, splats and points, and a broken file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from segany.eval.generate import points_from_mesh, splats_from_mesh
from segany.formats import write_labelled_ply, write_mesh_ply
from segany.samples import sample_mesh

SEGANY = [sys.executable, "-m", "segany.cli"]
SPEC = {"method": "walk", "clicks": [[0, 1]]}  # walk: no prepare, so a test times the batch, not a training


def make_assets(folder: Path, n_scenes: int = 3, bad_at: int | None = None) -> list[Path]:
    """`n_scenes` small scenes cycling mesh, splats, points (3,000 elements each, a seed apiece), with a
    truncated PLY at index `bad_at`; written once into `folder`, returned in batch (sorted) order."""
    folder.mkdir(parents=True, exist_ok=True)
    mesh = sample_mesh(max_edge=0.2)
    paths = []
    for i in range(n_scenes):
        path = folder / f"a{i:02d}.ply"
        if i % 3 == 0:
            write_mesh_ply(path, mesh)
        elif i % 3 == 1:
            write_labelled_ply(path, *splats_from_mesh(mesh, mesh.face_parts, 3000, seed=i))
        else:
            write_labelled_ply(path, *points_from_mesh(mesh, mesh.face_parts, 3000, seed=i))
        paths.append(path)
    if bad_at is not None:
        bad = folder / f"a{bad_at:02d}-bad.ply"
        bad.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 100\nproperty float x\nend_header\n")
        paths.insert(bad_at, bad)
    return sorted(paths)


def summary(out: Path) -> list[dict[str, Any]]:
    path = out / "summary.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def start_cli(*args: str) -> subprocess.Popen:
    """`segany batch ...` in its own session, so a test can kill the whole batch (driver and workers) at once,
    with Ctrl-C's signal at its default as in a terminal's foreground job: a test run started in the background
    (a CI runner, `cmd &`) inherits SIGINT ignored, and the batch would never see the test's Ctrl-C."""
    return subprocess.Popen([*SEGANY, "batch", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, preexec_fn=_default_sigint)  # fmt: skip


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    os.killpg(proc.pid, sig)


def outputs(out: Path) -> dict[str, bytes]:
    """The deterministic files of every finished asset, by relative path."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.glob("*/result.ply")) + sorted(out.glob("*/preview.png"))
    }
