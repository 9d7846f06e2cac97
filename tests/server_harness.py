"""A real backend process for the server tests, with test-only methods plugged in.

No real method could serve these tests: they need a job whose progress, length and artifact size the
test chooses (to kill the server mid-job and mid-cache-write, to show a long job does not block a
query, to see each progress report arrive). So `test_sleep` and `test_gate` below are stand-ins
registered through the method registry, exactly as a real method plugs in; everything else (server,
engine, cache, sockets, processes) is the real thing. Run as a script it is `python -m segany.server`
plus those registrations, with `--hold-cache-writes DIR` every cache write pauses half-done, and with
`--fd-headroom K` the process may open only K more files than it has open at start (to run it out of
file descriptors with K connections).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from waiting import wait_until

from segany import deadline
from segany.addon.client import Client
from segany.errors import SegAnyError
from segany.jobs import JobContext
from segany.methods import Method, Selection, State
from segany.options import Options, option
from segany.priors import Prior
from segany.scene import Scene

HERE = Path(__file__).resolve()
MAX_STATE_MB = 128  # fuzzed options cannot make the stand-in allocate more
MAX_SPIN_S = 120.0  # a spinning query gives up by itself after this (only a server without deadlines lets it)


class NullPrior(Prior):
    """A prior with no capabilities: the stand-in method never asks it anything."""

    name = "test_null"

    def __init__(self, config: Any, ctx: Any = None) -> None:
        self.config = config  # built as every prior is, `cls(config, ctx)`; it has no options and needs no ctx


@dataclass(frozen=True)
class SleepOptions(Options):
    method: ClassVar[str] = "test_sleep"

    seconds: float = option(0.2, 0.0, 600.0, doc="how long prepare sleeps")
    state_mb: int = option(0, 0, MAX_STATE_MB, doc="megabytes of state it leaves")


@dataclass(frozen=True)
class GateOptions(Options):
    method: ClassVar[str] = "test_gate"

    gate: str = option("", doc="the directory whose files open each step")
    steps: int = option(1, 1, 1000, doc="steps the job waits for")


class SleepMethod(Method):
    """Sleeps `seconds` in small steps with progress and cancel; leaves `state_mb` MB of state."""

    name = "test_sleep"
    scene_kinds: ClassVar[tuple[str, ...]] = ("mesh", "splats", "points")
    default_prior = "test_null"
    Options: ClassVar[type[Options]] = SleepOptions

    def prepare(self, scene: Scene, prior: Prior, options: SleepOptions, ctx: JobContext) -> State:
        seconds, mb = options.seconds, options.state_mb
        steps = max(1, int(seconds / 0.02))
        for i in range(steps):
            ctx.progress(i / steps, f"step {i + 1} of {steps}")
            time.sleep(seconds / steps)
        ctx.progress(1.0, "done")
        return State(tensors={"w": torch.ones(mb * 262_144 + 1)}, meta={"steps": steps})

    def query(self, scene: Scene, state: State, query: dict[str, Any]) -> Selection:
        """Scores from `weights` or `value`; with `spin`, first a loop that only the request's deadline ends
        (as a long click loop inside a real method would be), checked as a real method checks it."""
        n = scene.n_elements
        if query.get("spin"):
            deadline.wait(MAX_SPIN_S)  # ends on the request's deadline or its client leaving, not on a timer
        if "weights" in query:
            scores = np.asarray(query["weights"], dtype=np.float32).reshape(-1)[:n]
        else:
            scores = np.full(n, float(query.get("value", 0.5)), dtype=np.float32)
        return Selection(scores=scores, threshold=0.5)


class GateMethod(SleepMethod):
    """Runs only as far as the test says: reports step k of `steps` (fraction k / steps) once the file
    `<gate>/<k>` exists, so a job is provably still running until the test opens its last step."""

    name = "test_gate"
    Options: ClassVar[type[Options]] = GateOptions

    def prepare(self, scene: Scene, prior: Prior, options: GateOptions, ctx: JobContext) -> State:
        gate, steps = Path(options.gate), options.steps
        if not gate.is_dir():
            raise SegAnyError("not_found", f"test_gate needs an existing gate directory, not {str(gate)!r}")
        ctx.progress(0.0, f"waiting for step 1 of {steps}")
        for k in range(1, steps + 1):
            while not (gate / str(k)).exists():  # another process opens the gate: poll, and stay cancellable
                ctx.check()
                time.sleep(0.005)
            ctx.progress(k / steps, f"step {k} of {steps}")
        return State(tensors={"w": torch.ones(1)}, meta={"steps": steps})


def open_gate(gate: Path, step: int) -> None:
    """Let a `test_gate` job report step `step` (and finish, when it is the last)."""
    (gate / str(step)).touch()


def hold_cache_writes(signals: Path) -> None:
    """Make every cache write stop after its tensors file and before its record and rename, and say so
    with `<signals>/held`: the test then kills the process provably mid-write. Test-only instrumentation
    of the child process (the write has no pause of its own to wait on)."""
    from segany import cache

    write_tensors = cache.save_file

    def save_file_then_hold(tensors: dict[str, torch.Tensor], filename: str, *args: Any, **kwargs: Any) -> None:
        write_tensors(tensors, filename, *args, **kwargs)
        (signals / "held").write_text(str(filename))
        threading.Event().wait()  # never set: held until the test kills this process

    cache.save_file = save_file_then_hold


def register() -> None:
    """Plug the stand-ins into the registries the engine reads (module `__main__` in the child)."""
    from segany import methods, priors

    module = "__main__" if __name__ == "__main__" else __name__
    methods.register_method("test_sleep", f"{module}:SleepMethod")
    methods.register_method("test_gate", f"{module}:GateMethod")
    priors.register_prior("test_null", f"{module}:NullPrior")


def start(state_file: Path, cache_dir: Path, *extra: str) -> subprocess.Popen:
    """Start the harness process; returns once its state file names it (the server is listening)."""
    cmd = [sys.executable, str(HERE), "--state-file", str(state_file), "--cache-dir", str(cache_dir), "--device", "cpu"]
    log_path = cache_dir.parent / f"{state_file.stem}.log"
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen([*cmd, *extra], stdout=log, stderr=log)
    log.close()

    def listening() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"harness server exited: {log_path.read_text()[-3000:]}")
        try:
            return json.loads(state_file.read_text())["pid"] == proc.pid
        except (OSError, ValueError, KeyError):
            return False  # not written yet, or half-written

    try:
        wait_until(listening, timeout=300, what="the harness server to listen")
    except AssertionError:
        proc.kill()
        raise
    return proc


def connect(state_file: Path) -> Client:
    return Client.from_state_file(state_file, timeout=120)  # a guard only: a loaded machine answers late


if __name__ == "__main__":
    register()
    args = sys.argv[1:]
    if "--hold-cache-writes" in args:
        at = args.index("--hold-cache-writes")
        hold_cache_writes(Path(args[at + 1]))
        del args[at : at + 2]
    if "--fd-headroom" in args:
        at = args.index("--fd-headroom")
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + int(args[at + 1]), hard))
        del args[at : at + 2]
    from segany.server import main

    main(args)
