"""Wire framing: round trips for every dtype, zero-copy views, and each limit's error code.

Frames go through real socket pairs (and BytesIO where a byte stream is all that matters).
"""

from __future__ import annotations

import io
import json
import socket
import struct
import threading

import numpy as np
import pytest

from segany.addon import wire
from segany.errors import CODES


def _bytes(header: dict, arrays: dict | None = None) -> bytes:
    return b"".join(bytes(b) for b in wire.encode(header, arrays))


def _raw(header: dict, payload: bytes = b"", version: int = wire.VERSION, magic: bytes = wire.MAGIC) -> bytes:
    head = json.dumps(header).encode()
    return wire.PREAMBLE.pack(magic, version, 0, len(head), len(payload)) + head + payload


def _read(data: bytes, limits: wire.Limits | None = None):
    return wire.read_frame(io.BytesIO(data), limits)


def _code(data: bytes, limits: wire.Limits | None = None) -> str:
    with pytest.raises(wire.WireError) as info:
        _read(data, limits)
    return info.value.code


def test_error_codes_are_backend_codes() -> None:
    for code in ("bad_request", "too_large", "unauthorized"):
        assert code in CODES


@pytest.mark.parametrize("dtype", sorted(wire.DTYPES))
def test_round_trip_every_dtype_over_a_socket(dtype: str) -> None:
    rng = np.random.default_rng(1)
    arrays = {
        "a": (rng.random((257, 3)) * 100).astype(dtype),
        "scalar": np.asarray(rng.random() > 0.5).astype(dtype),
        "empty": np.zeros((0, 5), dtype=dtype),
        "big": (rng.random(100_000) * 100).astype(dtype),  # over the coalescing size: sent from its own memory
        "odd": (rng.random(3) * 9).astype(dtype),
    }
    a, b = socket.socketpair()
    with a, b:
        sender = threading.Thread(
            target=wire.send_frame, args=(a, {"op": "x", "id": 7, "nested": {"k": [1, 2]}}, arrays)
        )
        sender.start()
        header, got = wire.read_frame(b)
        sender.join()
    assert header == {"op": "x", "id": 7, "nested": {"k": [1, 2]}}
    assert set(got) == set(arrays)
    for name, arr in arrays.items():
        assert got[name].dtype == np.dtype(dtype) and got[name].shape == arr.shape
        np.testing.assert_array_equal(got[name], arr)


def test_arrays_are_aligned_views_of_one_buffer() -> None:
    arrays = {"u": np.arange(3, dtype=np.uint8), "f": np.arange(6, dtype=np.float64), "i": np.arange(5, dtype=np.int32)}
    _, got = _read(_bytes({}, arrays))

    def root(a: np.ndarray) -> np.ndarray:
        while isinstance(a.base, np.ndarray):
            a = a.base
        return a

    roots = {id(root(g)) for g in got.values()}
    assert len(roots) == 1
    assert all(g.flags.aligned and g.flags.c_contiguous and g.flags.writeable for g in got.values())


def test_big_endian_and_non_contiguous_inputs_are_normalised() -> None:
    src = np.arange(24, dtype=">f8").reshape(4, 6)[:, ::2]
    _, got = _read(_bytes({}, {"x": src}))
    assert got["x"].dtype == np.dtype("<f8")
    np.testing.assert_array_equal(got["x"], src)


def test_clean_eof_is_none_and_mid_frame_eof_is_bad_request() -> None:
    assert _read(b"") is None
    data = _bytes({"op": "x"}, {"a": np.arange(10, dtype=np.float32)})
    for cut in (1, 5, wire.PREAMBLE.size, wire.PREAMBLE.size + 3, len(data) - 1):
        assert _code(data[:cut]) == "bad_request"


def test_sender_refuses_unsupported_dtypes_and_reserved_key() -> None:
    with pytest.raises(wire.WireError) as info:
        wire.encode({}, {"c": np.zeros(3, dtype=np.complex64)})
    assert info.value.code == "bad_request"
    with pytest.raises(wire.WireError):
        wire.encode({"arrays": []})
    with pytest.raises(wire.WireError):
        wire.encode({"x": float("nan")})
    with pytest.raises(wire.WireError) as info:
        wire.encode({}, {"a": np.zeros(100, np.float32)}, wire.Limits(max_payload=10))
    assert info.value.code == "too_large"


def test_limits_are_checked_with_their_codes() -> None:
    small = wire.Limits(max_header=200, max_payload=1000, max_arrays=2, max_elements=50)
    assert _code(_raw({"pad": "x" * 300}), small) == "too_large"
    assert _code(_bytes({}, {"a": np.zeros(300, np.float32)}), small) == "too_large"
    three = {k: np.zeros(1, np.uint8) for k in "abc"}
    assert _code(_bytes({}, three), small) == "too_large"
    assert _code(_bytes({}, {"a": np.zeros(60, np.uint8)}), small) == "too_large"


def test_too_large_carries_the_request_id() -> None:
    with pytest.raises(wire.WireError) as info:
        _read(_bytes({"id": 42}, {"a": np.zeros(300, np.float32)}), wire.Limits(max_payload=100))
    assert info.value.code == "too_large" and info.value.header["id"] == 42


def test_a_terabyte_claim_is_refused_before_allocation() -> None:
    head = b'{"op":"x"}'
    data = wire.PREAMBLE.pack(wire.MAGIC, wire.VERSION, 0, len(head), 1 << 40) + head
    assert _code(data) == "too_large"
    bad_header = wire.PREAMBLE.pack(wire.MAGIC, wire.VERSION, 0, 0xFFFFFFFF, 0)
    assert _code(bad_header) == "too_large"


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "a", "dtype": "float32", "shape": [2], "offset": 0, "length": 4},  # length != shape × itemsize
        {"name": "a", "dtype": "float32", "shape": [2], "offset": 4, "length": 8},  # past the payload
        {"name": "a", "dtype": "complex64", "shape": [1], "offset": 0, "length": 8},  # dtype not allowed
        {"name": "a", "dtype": ">f4", "shape": [2], "offset": 0, "length": 8},  # byte order is fixed
        {"name": "a", "dtype": "float32", "shape": [-2], "offset": 0, "length": 8},
        {"name": "a", "dtype": "float32", "shape": [True, 2], "offset": 0, "length": 8},
        {"name": "a", "dtype": "float32", "shape": [2.0], "offset": 0, "length": 8},
        {"name": "a", "dtype": "float32", "shape": [1] * 40, "offset": 0, "length": 4},
        {"name": "", "dtype": "float32", "shape": [2], "offset": 0, "length": 8},
        {"name": 5, "dtype": "float32", "shape": [2], "offset": 0, "length": 8},
        {"name": "a", "dtype": "float32", "shape": [2], "offset": -1, "length": 8},
        {"name": "a", "dtype": "float32", "shape": [2], "offset": "0", "length": 8},
        "not an object",
    ],
)
def test_bad_array_tables_are_bad_requests(entry: object) -> None:
    assert _code(_raw({"arrays": [entry]}, bytes(8))) == "bad_request"


def test_overlaps_duplicates_and_bad_bools_are_refused() -> None:
    overlap = [
        {"name": "a", "dtype": "float32", "shape": [2], "offset": 0, "length": 8},
        {"name": "b", "dtype": "uint8", "shape": [4], "offset": 6, "length": 4},
    ]
    assert _code(_raw({"arrays": overlap}, bytes(16))) == "bad_request"
    dup = [{"name": "a", "dtype": "uint8", "shape": [1], "offset": i, "length": 1} for i in range(2)]
    assert _code(_raw({"arrays": dup}, bytes(2))) == "bad_request"
    boolean = [{"name": "m", "dtype": "bool", "shape": [2], "offset": 0, "length": 2}]
    assert _code(_raw({"arrays": boolean}, b"\x01\x07")) == "bad_request"
    assert _code(_raw({"arrays": {"a": 1}})) == "bad_request"


def test_unaligned_arrays_from_foreign_senders_are_copied_aligned() -> None:
    table = [
        {"name": "u", "dtype": "uint8", "shape": [3], "offset": 0, "length": 3},
        {"name": "f", "dtype": "float32", "shape": [2], "offset": 3, "length": 8},
    ]
    payload = b"\x01\x02\x03" + struct.pack("<2f", 1.5, -2.0)
    _, got = _read(_raw({"arrays": table}, payload))
    assert got["f"].flags.aligned and got["f"].tolist() == [1.5, -2.0]


@pytest.mark.parametrize(
    "data",
    [
        _raw({"op": "x"}, magic=b"HTTP"),
        _raw({"op": "x"}, version=wire.VERSION + 1),
        wire.PREAMBLE.pack(wire.MAGIC, wire.VERSION, 3, 2, 0) + b"{}",  # reserved field set
        wire.PREAMBLE.pack(wire.MAGIC, wire.VERSION, 0, 3, 0) + b"[1]",  # header not an object
        wire.PREAMBLE.pack(wire.MAGIC, wire.VERSION, 0, 2, 0) + b"\xff\xfe",  # not UTF-8
        wire.PREAMBLE.pack(wire.MAGIC, wire.VERSION, 0, 7, 0) + b'{"a":NaN}'[:7],
        wire.PREAMBLE.pack(wire.MAGIC, wire.VERSION, 0, 20000, 0) + b"[" * 20000,  # deep nesting
        wire.PREAMBLE.pack(wire.MAGIC, wire.VERSION, 0, 9, 0) + b'{"a":NaN}',
    ],
)
def test_malformed_preambles_and_headers_are_bad_requests(data: bytes) -> None:
    assert _code(data) == "bad_request"


def test_version_mismatch_message_says_what_to_do() -> None:
    with pytest.raises(wire.WireError) as info:
        _read(_raw({}, version=9))
    assert "update the add-on and the backend" in info.value.message


@pytest.mark.parametrize("shape", [[0, 2**63 - 1], [2**40, 0, 2**40], [0, 2**31, 2**31]])
def test_an_empty_array_beside_huge_sizes_is_a_bad_request(shape: list[int]) -> None:
    """numpy refuses such shapes (ValueError); the reader answers with a WireError instead."""
    entry = {"name": "a", "dtype": "float32", "shape": shape, "offset": 0, "length": 0}
    assert _code(_raw({"arrays": [entry]})) == "bad_request"
    _, got = _read(_raw({"arrays": [{**entry, "shape": [0, 5, 7]}]}))
    assert got["a"].shape == (0, 5, 7)


def test_messages_quote_peer_values_only_briefly() -> None:
    entry = {"name": "a", "dtype": "d" * 100_000, "shape": [1], "offset": 0, "length": 1}
    with pytest.raises(wire.WireError) as info:
        _read(_raw({"arrays": [entry]}, bytes(1)))
    assert info.value.code == "bad_request" and len(info.value.message) < 200
    assert "100,002 characters" in info.value.message


def test_resync_drops_a_refused_frame_and_reads_the_next() -> None:
    """The client reads its own backend with resync: a frame over its limits costs that frame only."""
    small = wire.Limits(max_header=200, max_payload=1000)
    good = _bytes({"id": 3}, {"a": np.arange(4)})
    for bad in (
        _raw({"id": 1, "pad": "x" * 300}),  # header over the limit: read and dropped unparsed
        _bytes({"id": 2}, {"a": np.zeros(300, np.float64)}),  # payload over the limit
        _raw({"id": 4, "arrays": [{"name": "a", "dtype": "uint8", "shape": [0, 2**62], "offset": 0, "length": 0}]}),
    ):
        src = io.BytesIO(bad + good)
        with pytest.raises(wire.WireError) as info:
            wire.read_frame(src, small, resync=True)
        assert info.value.in_sync
        header, arrays = wire.read_frame(src, small, resync=True)
        assert header["id"] == 3 and arrays["a"].tolist() == [0, 1, 2, 3]
    src = io.BytesIO(_raw({"id": 1, "pad": "x" * 300}) + good)
    with pytest.raises(wire.WireError) as info:
        wire.read_frame(src, small)
    assert not info.value.in_sync, "without resync the refused frame is not read"


def test_a_refused_reservation_drops_the_payload_in_sync() -> None:
    def refuse(n: int) -> None:
        raise wire.WireError("busy", f"no room for {n} bytes")

    src = io.BytesIO(_bytes({"id": 1}, {"a": np.zeros(10)}) + _bytes({"id": 2}))
    with pytest.raises(wire.WireError) as info:
        wire.read_frame(src, reserve=refuse)
    assert info.value.code == "busy" and info.value.in_sync and info.value.header["id"] == 1
    assert wire.read_frame(src, reserve=refuse)[0]["id"] == 2, "a frame without payload reserves 0 bytes"
