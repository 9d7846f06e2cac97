"""Hypothesis strategies for wire fuzzing: junk, generated frames, and mutations of valid requests.

Shared by the parser fuzz (tests/test_wire_fuzz.py) and the live-server fuzz
(tests/test_server_live.py). The generator is plain `random.Random` code so that it is cheap; Hypothesis
supplies the Random. Seeds are valid requests for every op except `shutdown`, including a
scene upload followed by jobs and queries on that scene, so mutations reach deep into the server.
Shapes that once broke a reader are generated on purpose: an empty array whose other sizes are huge
(numpy refuses the shape), and bulk strings that an error message might quote.
"""

from __future__ import annotations

import json
import random
import struct

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from segany.addon import wire
from segany.scene import scene_from_arrays, scene_id

OPS = [
    "hello", "info", "echo", "scene.add", "scene.load", "scene.drop", "scene.list",
    "job.submit", "job.status", "job.cancel", "job.result", "query", "everything",
]  # fmt: skip
FIELDS = [
    "op", "id", "token", "kind", "path", "scene_id", "method", "prior", "options", "prior_options",
    "job", "wait", "query", "return_arrays", "arrays",
]  # fmt: skip
BOUNDARY = [0, 1, 7, 8, 255, 256, 2**16 - 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40, 2**63 - 1, 2**64 - 1]
BULK = "q" * 100_000  # a value no error message may quote in full


def _frame(header: dict, arrays: dict | None = None) -> bytes:
    return b"".join(bytes(b) for b in wire.encode(header, arrays))


def _seeds() -> list[bytes]:
    rng = np.random.default_rng(5)
    xyz = rng.random((40, 3), dtype=np.float32)
    sid = scene_id(scene_from_arrays("points", {"xyz": xyz}))
    mesh = {"vertices": rng.random((4, 3), dtype=np.float32), "faces": np.array([[0, 1, 2], [0, 2, 3]], np.int64)}
    splats = {
        "means": rng.random((3, 3), dtype=np.float32),
        "quats": np.tile(np.float32([1, 0, 0, 0]), (3, 1)),
        "log_scales": np.full((3, 3), -3, np.float32),
        "logit_opacities": np.zeros(3, np.float32),
        "sh": np.zeros((3, 1, 3), np.float32),
    }
    return [
        _frame({"op": "info", "id": 1}),
        _frame({"op": "hello", "id": 2, "token": "0" * 64}),
        _frame({"op": "echo", "id": 3}, {"a": np.arange(6, dtype=np.int32), "m": np.array([True, False])}),
        _frame({"op": "echo", "id": 4, "return_arrays": False}, {"h": np.ones((2, 2), np.float16)}),
        _frame({"op": "scene.add", "id": 5, "kind": "points"}, {"xyz": xyz}),
        _frame({"op": "scene.add", "id": 6, "kind": "mesh"}, mesh),
        _frame({"op": "scene.add", "id": 7, "kind": "splats"}, splats),
        _frame({"op": "scene.list", "id": 8}),
        _frame({"op": "scene.load", "id": 9, "path": "/nonexistent/segany/fuzz.ply"}),
        _frame({"op": "job.submit", "id": 10, "method": "test_sleep", "scene_id": sid, "options": {"seconds": 0.05}}),
        _frame({"op": "job.status", "id": 11, "job": "j1"}),
        _frame({"op": "job.cancel", "id": 12, "job": "j1"}),
        _frame({"op": "job.result", "id": 13, "job": "j1", "wait": 0.05}),
        _frame({"op": "query", "id": 14, "method": "test_sleep", "scene_id": sid, "query": {"value": 0.7}}),
        _frame({"op": "query", "id": 15, "method": "test_sleep", "scene_id": sid}, {"weights": xyz[:, 0]}),
        _frame({"op": "scene.drop", "id": 16, "scene_id": sid}),
    ]


SEEDS = _seeds()
SCENE_ADD = SEEDS[4]
DTYPE_NAMES = [*wire.DTYPES, "complex64", ">f4", "object", "", None, 3]
VALUES = [
    None, True, False, 0, -1, 1, 0.5, -0.0, 1e308, -1e308, 2**53, 2**63, 2**64, -(2**70), "", "x", "é\u0000",
    "test_sleep", "points", "mesh", "splats", "j1", "../../etc/passwd", [], {}, [1, 2, 3], [[0, 1]], {"seconds": 0.05},
    {"value": 0.3}, {"seconds": 600, "state_mb": 10**9}, {"a": {"b": {"c": [None]}}}, [[[[[[[[[[[[]]]]]]]]]]]],
    "x" * 300, BULK, [BULK], {"clicks": [[i, 1] for i in range(20_000)]}, *OPS, *BOUNDARY,
]  # fmt: skip


def _value(rnd: random.Random) -> object:
    pick = rnd.random()
    if pick < 0.7:
        return rnd.choice(VALUES)
    if pick < 0.85:
        return rnd.randint(-(2**40), 2**40)
    return "".join(chr(rnd.randint(0, 0x2FF)) for _ in range(rnd.randint(0, 10)))


def _empty_entry(rnd: random.Random) -> dict:
    """An honest entry (length 0 at offset 0) for an empty array whose other sizes are huge."""
    shape = [rnd.choice([2**31, 2**32, 2**40, 2**62, 2**63 - 1]) for _ in range(rnd.randint(1, 3))]
    shape.insert(rnd.randint(0, len(shape)), 0)
    return {"name": rnd.choice(["a", "weights"]), "dtype": rnd.choice(list(wire.DTYPES)), "shape": shape,
            "offset": 0, "length": 0}  # fmt: skip


def _entry(rnd: random.Random) -> object:
    if rnd.random() < 0.05:
        return _value(rnd)
    if rnd.random() < 0.1:
        return _empty_entry(rnd)
    entry = {
        "name": rnd.choice(["a", "b", "xyz", "weights", "", 7]),
        "dtype": rnd.choice(DTYPE_NAMES),
        "shape": [rnd.choice([*BOUNDARY, -1, 2, 3, 5]) for _ in range(rnd.randint(0, 4))],
        "offset": rnd.choice([*BOUNDARY, -8, 3, 16, 24]),
        "length": rnd.choice([*BOUNDARY, -8, 3, 16, 24]),
    }
    for key in rnd.sample(sorted(entry), rnd.randint(0, 2)):
        entry[key] = _value(rnd) if rnd.random() < 0.5 else entry.pop(key)
    return entry


def _header(rnd: random.Random) -> dict:
    header = {"op": rnd.choice(OPS) if rnd.random() < 0.8 else _value(rnd), "id": rnd.randint(0, 10**6)}
    for name in rnd.sample(FIELDS, rnd.randint(0, 5)):
        header[name] = [_entry(rnd) for _ in range(rnd.randint(0, 4))] if name == "arrays" else _value(rnd)
    return header


def _preamble(header_len: int, payload_len: int, version: int = wire.VERSION, reserved: int = 0) -> bytes:
    return wire.PREAMBLE.pack(wire.MAGIC, version, reserved, header_len % 2**32, payload_len % 2**64)


def generated(rnd: random.Random) -> bytes:
    """A frame built from generated parts, with honest or dishonest lengths."""
    head = json.dumps(_header(rnd)).encode()
    payload = rnd.randbytes(rnd.randint(0, 400))
    header_len = len(head) if rnd.random() < 0.7 else rnd.choice(BOUNDARY)
    payload_len = len(payload) if rnd.random() < 0.7 else rnd.choice(BOUNDARY)
    version = wire.VERSION if rnd.random() < 0.9 else rnd.choice([0, 2, 65535])
    reserved = 0 if rnd.random() < 0.9 else rnd.choice([1, 65535])
    return _preamble(header_len, payload_len, version, reserved) + head + payload


def mutated(rnd: random.Random) -> bytes:
    """A valid request, then a few byte-level mutations (flips, field overwrites, cuts, inserts)."""
    data = bytearray(rnd.choice(SEEDS))
    for _ in range(rnd.randint(1, 4)):
        what = rnd.randrange(6)
        pos = rnd.randrange(max(len(data), 1))
        if what == 0 and data:
            data[pos] ^= 1 << rnd.randrange(8)
        elif what == 1:
            at, fmt = rnd.choice([(4, "<H"), (6, "<H"), (8, "<I"), (12, "<Q")])
            size = struct.calcsize(fmt)
            data[at : at + size] = struct.pack(fmt, rnd.choice(BOUNDARY) % (1 << (8 * size)))
        elif what == 2:
            del data[pos:]
        elif what == 3:
            data[pos:pos] = rnd.randbytes(rnd.randint(1, 16))
        elif what == 4:
            end = min(len(data), pos + rnd.randint(1, 32))
            data[pos:end] = rnd.randbytes(end - pos)
        else:
            data[pos : pos + 1] = rnd.choice([b"0", b"9", b"-1", b"4294967296", b"1e308", b"[]", b'"x"', b"null", b"{"])
    return bytes(data)


def sequence(rnd: random.Random) -> bytes:
    """Valid requests back to back (a scene upload first, so jobs and queries find it), maybe a bad tail."""
    body = SCENE_ADD + b"".join(rnd.choice(SEEDS[7:]) for _ in range(rnd.randint(1, 3)))
    tail = rnd.choice([b"", b"", mutated(rnd), generated(rnd)])
    return body + tail


def make_frame(rnd: random.Random) -> bytes:
    """One fuzz input: junk, a generated frame, a mutated request, or a valid sequence with a bad tail."""
    pick = rnd.random()
    if pick < 0.1:
        return rnd.randbytes(rnd.randint(0, 300))
    if pick < 0.4:
        return generated(rnd)
    if pick < 0.85:
        return mutated(rnd)
    return sequence(rnd)


def batches(size: int) -> st.SearchStrategy[list[bytes]]:
    """`size` fuzz inputs per Hypothesis example, from a seed Hypothesis draws (a failure prints it).

    A plain seeded Random, not st.randoms(): Hypothesis records every call of its own Random, which
    costs far more than parsing the frame.
    """

    def batch(seed: int) -> list[bytes]:
        rnd = random.Random(seed)
        return [make_frame(rnd) for _ in range(size)]

    return st.integers(0, 2**64 - 1).map(batch)


def fixed_settings(examples: int) -> settings:
    """Hypothesis settings that send the same frames on every run (CI's fixed subset and the soak tier alike)."""
    return settings(
        max_examples=examples, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
    )
