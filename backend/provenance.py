"""Where a written table came from: the date, the commit and the command line.

A figure copied into the docs must say how to reproduce it, so `segany eval` and `segany bench` stamp
every table they write with this.
"""

from __future__ import annotations

import datetime
import shlex
import subprocess
import sys
from pathlib import Path

# The checkout this package runs from: backend/ sits one level below the repository root. An installed
# wheel lives in site-packages, which has no .git beside it, so its commit reads "unknown".
CHECKOUT = Path(__file__).resolve().parents[1]


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None


def commit(root: Path = CHECKOUT) -> str:
    """`git rev-parse --short HEAD` of the checkout, `+modified` when tracked files differ from it, else "unknown"."""
    if not (root / ".git").exists():
        return "unknown"
    head = _git(root, "rev-parse", "--short", "HEAD")
    if head is None or head.returncode != 0 or not head.stdout.strip():
        return "unknown"
    diff = _git(root, "diff", "--quiet", "HEAD", "--")
    modified = diff is not None and diff.returncode == 1
    return head.stdout.strip() + ("+modified" if modified else "")


def _is_segany(program: str) -> bool:
    return Path(program).stem == "segany"


def command_line(argv: list[str] | None = None) -> str:
    """The command as a user would retype it: `segany …` for the console script, else the interpreter's argv."""
    if argv is None:
        argv = sys.argv if sys.argv and _is_segany(sys.argv[0]) else sys.orig_argv
    if not argv:
        return "unknown"
    program = "segany" if _is_segany(argv[0]) else Path(argv[0]).name
    return shlex.join([program, *argv[1:]])


def stamp(argv: list[str] | None = None, root: Path = CHECKOUT) -> dict[str, str]:
    """{"date": ISO-8601 UTC, "commit": ..., "command": ...} for a report written now."""
    date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    return {"date": date, "commit": commit(root), "command": command_line(argv)}


def stamp_line(s: dict[str, str]) -> str:
    """One markdown line saying how a table was made, to sit under its title."""
    return f"Written by `{s['command']}` on {s['date']} at commit `{s['commit']}`."
