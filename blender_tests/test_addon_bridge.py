"""The bridge between background threads and Blender's main thread: callbacks only run in drain() on the
calling thread, errors reach their handler, a burst of queries sends only the newest, and the timer knows
when to poll fast. Plain Python: no bpy needed (the add-on's modules import without it)."""

from __future__ import annotations

import threading
import time

from segany.addon.bridge import Bridge


def _drain_until(bridge: Bridge, pred, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not pred():
        bridge.drain()
        time.sleep(0.002)
    assert pred()


def test_results_and_errors_arrive_only_through_drain_on_the_calling_thread() -> None:
    bridge = Bridge()
    seen: list[tuple[str, object, str]] = []
    main = threading.current_thread().name
    bridge.run(
        lambda: threading.current_thread().name, lambda v: seen.append(("done", v, threading.current_thread().name))
    )
    bridge.run(lambda: 1 / 0, None, lambda e: seen.append(("error", type(e).__name__, threading.current_thread().name)))
    assert bridge.wait_idle()
    assert seen == [] and bridge.pending()  # nothing runs until the main thread drains
    _drain_until(bridge, lambda: len(seen) == 2)
    assert seen == [("done", "segany-bridge", main), ("error", "ZeroDivisionError", main)]
    assert not bridge.pending()
    bridge.close()


def test_a_burst_of_keyed_work_runs_only_the_newest() -> None:
    bridge = Bridge()
    gate = threading.Event()
    ran: list[int] = []
    bridge.run(gate.wait)  # hold the worker so the burst queues up behind it
    for i in range(10):
        bridge.run(lambda i=i: ran.append(i), key="query:1")
    bridge.run(lambda: ran.append(100), key="query:2")
    gate.set()
    assert bridge.wait_idle()
    assert ran == [9, 100]
    bridge.close()


def test_posts_from_other_threads_run_in_order_on_drain() -> None:
    bridge = Bridge()
    got: list[int] = []
    threads = [threading.Thread(target=bridge.post, args=(got.append, i)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bridge.drain(budget_s=3600) == 20 and sorted(got) == list(range(20))  # the budget never cuts in
    bridge.close()


def test_the_addon_package_and_its_client_import_without_bpy() -> None:
    """The backend imports segany.addon.client; Blender is not there (the backend's interpreter)."""
    import subprocess

    from conftest import BACKEND_PYTHON

    code = "import sys, segany.addon, segany.addon.client, segany.addon.runtime; assert 'bpy' not in sys.modules"
    subprocess.run([BACKEND_PYTHON, "-c", code], check=True, timeout=60)
