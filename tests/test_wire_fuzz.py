"""Parser fuzzing: generated and mutated frames never crash, hang or over-allocate the reader.

24,000 frames here and 6,000 in the live-server fuzz of test_server_live.py.
"""

from __future__ import annotations

import io
import resource

import numpy as np
import wire_fuzz
from hypothesis import HealthCheck, given, settings

from segany.addon import wire

EXAMPLES, BATCH = 1_500, 16  # 24,000 frames


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


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(batch=wire_fuzz.batches(BATCH))
def test_parser_survives_fuzzed_frames(batch: list[bytes]) -> None:
    for frame in batch:
        _drain(frame)


def test_seeds_parse_cleanly() -> None:
    for seed in wire_fuzz.SEEDS:
        assert len(_drain(seed)) == 1


def test_fuzzing_left_memory_bounded() -> None:
    """Frames claiming up to 8 GiB payloads were refused or failed before the reader touched memory."""
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert peak_kb < 3_000_000, f"peak RSS {peak_kb} kB"
