"""The request deadline: a no-op outside a request, `timeout` past it, `cancelled` when the client left."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from segany import deadline
from segany.engine import Engine
from segany.errors import SegAnyError


def test_outside_a_request_check_does_nothing() -> None:
    deadline.check()


def test_past_the_deadline_check_raises_timeout_with_advice() -> None:
    with deadline.within(0.0, "query"), pytest.raises(SegAnyError) as info:
        deadline.check()
    assert info.value.code == "timeout" and "fewer clicks" in info.value.message
    deadline.check()  # the block ended: no deadline is left behind


def test_a_departed_client_cancels() -> None:
    gone = threading.Event()
    with deadline.within(3600.0, "query", gone):
        deadline.check()
        gone.set()
        with pytest.raises(SegAnyError) as info:
            deadline.check()
    assert info.value.code == "cancelled"


def test_a_deadline_belongs_to_its_own_thread() -> None:
    """The server's pool threads each run their own request: one's deadline never reaches another."""
    with ThreadPoolExecutor(1) as pool, deadline.within(0.0):
        assert pool.submit(deadline.check).result() is None


def test_a_walk_query_checks_its_deadline_per_click(tmp_path: Path) -> None:
    """The real method: a click it has not answered before meets the check and stops with `timeout`."""
    engine = Engine(cache_dir=tmp_path, device="cpu")
    try:
        xyz = np.random.default_rng(0).random((400, 3), dtype=np.float32)
        sid = engine.add_arrays("points", {"xyz": xyz})
        assert engine.query("walk", sid, {"clicks": [[0, 1]]}).scores.shape == (400,)
        with deadline.within(0.0), pytest.raises(SegAnyError) as info:
            engine.query("walk", sid, {"clicks": [[0, 1], [7, -1]]})
        assert info.value.code == "timeout"
    finally:
        engine.close()


def test_wait_ends_when_the_client_leaves_or_the_deadline_passes() -> None:
    """`wait` wakes on the request's end: a departed client cancels it at once, a passed deadline times it out,
    and outside a request it is a plain bounded pause."""
    gone = threading.Event()
    gone.set()
    with deadline.within(3600.0, "query", gone), pytest.raises(SegAnyError) as info:
        deadline.wait(3600.0)
    assert info.value.code == "cancelled"
    with deadline.within(0.0), pytest.raises(SegAnyError) as info:
        deadline.wait(3600.0)
    assert info.value.code == "timeout"
    deadline.wait(0.0)
