"""A real backend process for the server tests, with one test-only method plugged in.

No real method could serve these tests yet: they need a job whose length, progress and artifact size
the test chooses (to kill the server mid-job and mid-cache-write, and to show a long job does not
block a query). So `test_sleep` below is a stand-in registered through the method registry, exactly
as a real method plugs in; everything else (server, engine, cache, sockets, processes) is the real
thing. Run as a script it is `python -m segany.server` plus that registration.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from segany.addon.client import Client
from segany.jobs import JobContext
from segany.methods import Method, Selection, State
from segany.priors import Prior
from segany.scene import Scene

HERE = Path(__file__).resolve()
MAX_STATE_MB = 128  # fuzzed options cannot make the stand-in allocate more


class NullPrior(Prior):
    """A prior with no capabilities: the stand-in method never asks it anything."""

    name = "test_null"


class SleepMethod(Method):
    """Sleeps `seconds` in small steps with progress and cancel; leaves `state_mb` MB of state."""

    name = "test_sleep"
    scene_kinds: ClassVar[tuple[str, ...]] = ("mesh", "splats", "points")
    default_prior = "test_null"

    def default_options(self, scene: Scene, device: str) -> dict[str, Any]:
        return {"seconds": 0.2, "state_mb": 0}

    def prepare(self, scene: Scene, prior: Prior, options: dict[str, Any], ctx: JobContext) -> State:
        seconds = min(max(float(options.get("seconds", 0.2)), 0.0), 600.0)
        mb = min(max(int(options.get("state_mb", 0)), 0), MAX_STATE_MB)
        steps = max(1, int(seconds / 0.02))
        for i in range(steps):
            ctx.progress(i / steps, f"step {i + 1} of {steps}")
            time.sleep(seconds / steps)
        ctx.progress(1.0, "done")
        return State(tensors={"w": torch.ones(mb * 262_144 + 1)}, meta={"steps": steps})

    def query(self, scene: Scene, state: State, query: dict[str, Any]) -> Selection:
        n = scene.n_elements
        if "weights" in query:
            scores = np.asarray(query["weights"], dtype=np.float32).reshape(-1)[:n]
        else:
            scores = np.full(n, float(query.get("value", 0.5)), dtype=np.float32)
        return Selection(scores=scores, threshold=0.5)


def register() -> None:
    """Plug the stand-ins into the registries the engine reads (module `__main__` in the child)."""
    from segany import methods, priors

    module = "__main__" if __name__ == "__main__" else __name__
    methods.register_method("test_sleep", f"{module}:SleepMethod")
    priors.register_prior("test_null", f"{module}:NullPrior")


def start(state_file: Path, cache_dir: Path, *extra: str) -> subprocess.Popen:
    """Start the harness process; returns once its state file names it (the server is listening)."""
    cmd = [sys.executable, str(HERE), "--state-file", str(state_file), "--cache-dir", str(cache_dir), "--device", "cpu"]
    log_path = cache_dir.parent / f"{state_file.stem}.log"
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen([*cmd, *extra], stdout=log, stderr=log)
    log.close()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"harness server exited: {log_path.read_text()[-3000:]}")
        try:
            if json.loads(state_file.read_text())["pid"] == proc.pid:
                return proc
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)
            continue
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("harness server did not start within 120 s")


def connect(state_file: Path) -> Client:
    return Client.from_state_file(state_file, timeout=30)


if __name__ == "__main__":
    register()
    from segany.server import main

    main(sys.argv[1:])
