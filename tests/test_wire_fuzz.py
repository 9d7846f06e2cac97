"""Parser fuzzing: generated and mutated frames never crash, hang or over-allocate the reader.

Every run parses the same 2,400 frames here (and the live-server fuzz of test_server_live.py sends the
same 600): derandomized, so a failure is a real change, never bad luck. The soak tier (`pytest -m soak`)
parses 24,000 here and sends 6,000 to the live server.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import wire_fuzz
from hypothesis import given

from segany.addon import wire

BATCH = 16  # frames per example
EXAMPLES, SOAK_EXAMPLES = 150, 1_500  # 2,400 frames in every run, 24,000 in the soak tier


def _drain(data: bytes) -> list[dict]:
    """Read frames until the end or the first error; every outcome is a frame or a WireError."""
    src = io.BytesIO(data)
    out = []
    for _ in range(16):
        try:
            frame = wire.read_frame(src)
        except wire.WireError as e:
            assert e.code in ("bad_request", "too_large"), e
            return out
        if frame is None:
            return out
        header, arrays = frame
        assert isinstance(header, dict) and "arrays" not in header
        for name, a in arrays.items():
            assert isinstance(name, str) and isinstance(a, np.ndarray)
            assert a.dtype in wire.DTYPES.values()
        out.append(header)
    return out


def _parser_fuzz(examples: int):
    """The parser fuzz with `examples` batches; derandomized, so every run parses the same frames."""

    @wire_fuzz.fixed_settings(examples)
    @given(batch=wire_fuzz.batches(BATCH))
    def fuzz(batch: list[bytes]) -> None:
        for frame in batch:
            _drain(frame)

    return fuzz


test_parser_survives_fuzzed_frames = _parser_fuzz(EXAMPLES)
test_parser_survives_fuzzed_frames_soak = pytest.mark.soak(_parser_fuzz(SOAK_EXAMPLES))


def test_seeds_parse_cleanly() -> None:
    for seed in wire_fuzz.SEEDS:
        assert len(_drain(seed)) == 1


MEMORY_PROBE = """
import io, random, resource, sys
import wire_fuzz
from segany.addon import wire
rnd = random.Random(7)
frames = [wire_fuzz.make_frame(rnd) for _ in range(2000)]
big = wire_fuzz.SCENE_ADD
frames += [big[:12] + n.to_bytes(8, "little") + big[20:] for n in (2**33, 2**40, 2**63 - 1)]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for data in frames:
    src = io.BytesIO(data)
    for _ in range(16):
        try:
            if wire.read_frame(src) is None:
                break
        except wire.WireError:
            break
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def test_fuzzed_frames_stay_within_bounded_memory() -> None:
    """Frames claiming payloads up to 2^64 bytes never make the reader's resident memory grow.

    Measured in a fresh process, so other tests' peaks don't count. (Claims up to the configured payload
    limit reserve address space with np.empty; only bytes that actually arrive are ever touched.)
    """
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).parent, check=True)  # fmt: skip
    grown_kb = int(out.stdout.strip())
    assert grown_kb < 256 * 1024, f"parsing fuzzed frames grew resident memory by {grown_kb} kB"
