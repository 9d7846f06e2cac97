"""SegAny wire framing: one binary frame format for every client and the backend.

Runs inside Blender, so it needs only the standard library and numpy.

A frame is
  preamble  20 bytes, little-endian: magic b"SGNY", version u16, reserved u16 (0), header length u32,
            payload length u64
  header    UTF-8 JSON object; key "arrays" lists {name, dtype, shape, offset, length} per array
  payload   the arrays' raw little-endian bytes, back to back (each starts on an 8-byte boundary)

Every size is checked against `Limits` before anything is allocated, so a peer that claims a 1 TB
payload is refused with `too_large` having cost nothing. Arrays come back as views into one receive
buffer (no copy). Error codes are the backend's stable codes (`bad_request`, `too_large`,
`unauthorized`).
"""

from __future__ import annotations

import itertools
import json
import math
import socket
import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO

import numpy as np

MAGIC = b"SGNY"
VERSION = 1
PREAMBLE = struct.Struct("<4sHHIQ")
ALIGN = 8
MAX_NDIM = 16
# Arrays up to this size are copied into the head buffer; bigger ones are sent from their own memory.
_COALESCE = 64 * 1024
# Error messages quote a peer's value at most this long: a reply must stay small whatever was sent.
QUOTE_CHARS = 60
_DISCARD_CHUNK = 1 << 20

DTYPES: dict[str, np.dtype] = {
    name: np.dtype(name).newbyteorder("<")
    for name in ("bool", "uint8", "int32", "int64", "float16", "float32", "float64")
}


class WireError(Exception):
    """A frame that cannot be accepted; `code` is one of the backend's stable error codes."""

    def __init__(self, code: str, message: str, header: dict[str, Any] | None = None, in_sync: bool = False) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message
        self.header = header  # the parsed header when the error came after it (carries the request id)
        self.in_sync = in_sync  # the whole frame was consumed: the next frame can be read
        self.consumed: int | None = None  # bytes of the frame read after its preamble, when known


def quote(value: Any) -> str:
    """repr() of a peer's value, cut short: messages that quote input must not grow with it."""
    text = repr(value)
    return text if len(text) <= QUOTE_CHARS else f"{text[: QUOTE_CHARS - 1]}… ({len(text):,} characters)"


@dataclass(frozen=True)
class Limits:
    """Upper bounds a receiver enforces before allocating. Defaults fit a 20M-Gaussian scene."""

    max_header: int = 1 << 20
    max_payload: int = 8 << 30
    max_arrays: int = 64
    max_elements: int = 2_000_000_000

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def _pad(n: int) -> int:
    return -n % ALIGN


def _le_contiguous(name: str, arr: Any) -> np.ndarray:
    a = np.asarray(arr)
    key = "bool" if a.dtype.kind == "b" else a.dtype.name
    if key not in DTYPES:
        raise WireError(
            "bad_request", f"array {quote(name)} has dtype {a.dtype}; the wire carries only {sorted(DTYPES)}"
        )
    want = DTYPES[key]
    if a.dtype != want or not a.flags.c_contiguous:
        a = np.ascontiguousarray(a, dtype=want)
    return a


def encode(
    header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None, limits: Limits | None = None
) -> list[bytes | bytearray | memoryview]:
    """Frame `header` and `arrays` as buffers to send in order; big arrays are not copied.

    With `limits`, the frame is refused here (too_large) rather than by the receiver, which would
    have to drop the connection.
    """
    if not isinstance(header, dict):
        raise WireError("bad_request", "a frame header must be a JSON object (dict)")
    if "arrays" in header:
        raise WireError("bad_request", "the header key 'arrays' is reserved for the array table")
    arrays = arrays or {}
    table: list[dict[str, Any]] = []
    bodies: list[np.ndarray] = []
    offset = 0
    for name, arr in arrays.items():
        if not isinstance(name, str):
            raise WireError("bad_request", f"array names must be strings, got {quote(name)}")
        a = _le_contiguous(name, arr)
        offset += _pad(offset)
        table.append(
            {"name": name, "dtype": _dtype_name(a.dtype), "shape": list(a.shape), "offset": offset, "length": a.nbytes}
        )
        bodies.append(a)
        offset += a.nbytes
    full = {**header, "arrays": table} if table else header
    try:
        head = json.dumps(full, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise WireError("bad_request", f"the header is not plain JSON: {e}") from e
    if limits is not None:
        _check_sizes(len(head), offset, len(table), limits)
        for entry in table:
            _check_elements(entry["name"], math.prod(entry["shape"]), limits)
    out: list[bytes | bytearray | memoryview] = []
    pending = bytearray(PREAMBLE.pack(MAGIC, VERSION, 0, len(head), offset))
    pending += head
    pos = 0
    for a in bodies:
        gap = _pad(pos)
        pending += b"\0" * gap
        pos += gap
        raw = memoryview(a.reshape(-1).view(np.uint8))
        if a.nbytes <= _COALESCE:
            pending += raw
        else:
            out.append(pending)
            pending = bytearray()
            out.append(raw)
        pos += a.nbytes
    if pending:
        out.append(pending)
    return out


def _dtype_name(dt: np.dtype) -> str:
    return "bool" if dt.kind == "b" else dt.name


def send_frame(
    sock: socket.socket,
    header: dict[str, Any],
    arrays: dict[str, np.ndarray] | None = None,
    limits: Limits | None = None,
) -> None:
    """Encode and send one frame; the caller serialises senders on one socket."""
    for buf in encode(header, arrays, limits):
        sock.sendall(buf)


def _check_sizes(header_len: int, payload_len: int, n_arrays: int, limits: Limits) -> None:
    if header_len > limits.max_header:
        raise WireError(
            "too_large", f"the frame header is {header_len:,} bytes, over the limit of {limits.max_header:,}"
        )
    if payload_len > limits.max_payload:
        raise WireError(
            "too_large", f"the frame payload is {payload_len:,} bytes, over the limit of {limits.max_payload:,}"
        )
    if n_arrays > limits.max_arrays:
        raise WireError("too_large", f"the frame carries {n_arrays} arrays, over the limit of {limits.max_arrays}")


def _check_elements(name: str, count: int, limits: Limits) -> None:
    if count > limits.max_elements:
        raise WireError(
            "too_large", f"array {name!r} has {count:,} elements, over the limit of {limits.max_elements:,}"
        )


def _fill(src: socket.socket | BinaryIO, view: memoryview) -> int:
    """Read into `view` until full or EOF; returns how many bytes arrived."""
    got = 0
    n = len(view)
    reader = src.recv_into if isinstance(src, socket.socket) else src.readinto
    while got < n:
        k = reader(view[got:])
        if not k:
            break
        got += k
    return got


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _parse_header(raw: bytes | bytearray) -> dict[str, Any]:
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise WireError("bad_request", f"the frame header is not UTF-8 JSON: {e}") from None
    if not isinstance(header, dict):
        raise WireError("bad_request", f"the frame header must be a JSON object, got {type(header).__name__}")
    return header


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _array_table(
    header: dict[str, Any], payload_len: int, limits: Limits
) -> list[tuple[str, np.dtype, tuple, int, int]]:
    """Validate the array table against the payload: names, dtypes, shapes, bounds, no overlaps."""
    table = header.pop("arrays", [])
    if not isinstance(table, list):
        raise WireError("bad_request", "header key 'arrays' must be a list")
    _check_sizes(0, 0, len(table), limits)
    out = []
    names = set()
    for i, entry in enumerate(table):
        if not isinstance(entry, dict):
            raise WireError("bad_request", f"arrays[{i}] must be an object")
        name, dtype, shape = entry.get("name"), entry.get("dtype"), entry.get("shape")
        offset, length = entry.get("offset"), entry.get("length")
        if not isinstance(name, str) or not name or len(name) > 256:
            raise WireError("bad_request", f"arrays[{i}] needs a name (a non-empty string up to 256 characters)")
        if name in names:
            raise WireError("bad_request", f"array {name!r} appears twice")
        names.add(name)
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise WireError("bad_request", f"array {name!r} has dtype {quote(dtype)}; allowed: {sorted(DTYPES)}")
        if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(_is_int(s) and s >= 0 for s in shape):
            raise WireError("bad_request", f"array {name!r} needs a shape: a list of at most {MAX_NDIM} sizes >= 0")
        count = math.prod(shape)
        _check_elements(name, count, limits)
        # A 0 beside huge sizes holds nothing, yet numpy refuses the shape: the other sizes obey the limit too.
        if count == 0 and math.prod(s for s in shape if s) > limits.max_elements:
            raise WireError(
                "bad_request", f"array {name!r} is empty, but its other sizes {shape} exceed {limits.max_elements:,}"
            )
        dt = DTYPES[dtype]
        if not (_is_int(offset) and _is_int(length) and offset >= 0 and length >= 0):
            raise WireError("bad_request", f"array {name!r} needs integer offset and length >= 0")
        if length != count * dt.itemsize:
            raise WireError(
                "bad_request", f"array {name!r}: length {length} != {count} elements × {dt.itemsize} bytes ({dtype})"
            )
        if offset + length > payload_len:
            raise WireError(
                "bad_request",
                f"array {name!r} spans bytes {offset}..{offset + length}, past the payload of {payload_len}",
            )
        out.append((name, dt, tuple(shape), offset, length))
    spans = sorted((off, off + ln, name) for name, _, _, off, ln in out if ln)
    for (_, end_a, a), (start_b, _, b) in itertools.pairwise(spans):
        if start_b < end_a:
            raise WireError("bad_request", f"arrays {a!r} and {b!r} overlap in the payload")
    return out


def _discard(src: socket.socket | BinaryIO, n: int) -> bool:
    """Read and drop `n` bytes in small pieces (nothing is kept); False if the stream ended first."""
    chunk = memoryview(bytearray(min(n, _DISCARD_CHUNK)))
    while n > 0:
        got = _fill(src, chunk[: min(n, len(chunk))])
        if not got:
            return False
        n -= got
    return True


Reserve = Callable[[int], None]


def read_frame(
    src: socket.socket | BinaryIO,
    limits: Limits | None = None,
    resync: bool = False,
    reserve: Reserve | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """Read one frame; None on a clean end of stream before its first byte.

    Waits follow the socket's own timeout (TimeoutError propagates); a stream that ends mid-frame is
    a `bad_request`. `reserve(payload_len)` runs before the payload is allocated and may refuse it
    with a WireError; the payload is then read and dropped, so that error is `in_sync`. With `resync`
    (for a peer trusted to frame honestly: the client reading its own backend) a frame refused after a
    good preamble is read to its end and dropped as well, so one bad reply does not end the stream.
    """
    limits = limits or Limits()
    pre = bytearray(PREAMBLE.size)
    got = _fill(src, memoryview(pre))
    if got == 0:
        return None
    if got != PREAMBLE.size:
        raise WireError("bad_request", "the stream ended inside a frame preamble")
    magic, version, reserved, header_len, payload_len = PREAMBLE.unpack(pre)
    if magic != MAGIC:
        raise WireError("bad_request", f"not a SegAny frame (magic {bytes(magic)!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise WireError(
            "bad_request",
            f"wire protocol version {version}, but this side speaks version {VERSION}: "
            "update the add-on and the backend to the same SegAny release",
        )
    if reserved != 0:
        raise WireError("bad_request", f"reserved preamble field is {reserved}, must be 0")
    try:
        return _read_rest(src, header_len, payload_len, limits, reserve)
    except WireError as e:
        if resync and not e.in_sync and e.consumed is not None:
            e.in_sync = _discard(src, header_len + payload_len - e.consumed)
        raise


def _read_rest(
    src: socket.socket | BinaryIO, header_len: int, payload_len: int, limits: Limits, reserve: Reserve | None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The frame after its preamble; a WireError says in `consumed` how much of it was read (None: unknown)."""
    try:
        _check_sizes(header_len, 0, 0, limits)
    except WireError as e:
        e.consumed = 0
        raise
    raw = bytearray(header_len)
    if _fill(src, memoryview(raw)) != header_len:
        raise WireError("bad_request", "the stream ended inside a frame header")
    try:
        header = _parse_header(raw)
    except WireError as e:
        e.consumed = header_len
        raise
    try:
        _check_sizes(0, payload_len, 0, limits)
        table = _array_table(header, payload_len, limits)
    except WireError as e:
        e.header, e.consumed = header, header_len
        raise
    if reserve is not None and payload_len:
        try:
            reserve(payload_len)
        except WireError as e:
            e.header, e.in_sync = header, _discard(src, payload_len)
            raise
    # np.empty skips the zero-fill a bytearray would pay; every byte is overwritten by the read.
    try:
        payload = np.empty(payload_len, dtype=np.uint8)
    except MemoryError:
        error = WireError("too_large", f"no memory for a payload of {payload_len:,} bytes", header)
        error.consumed = header_len
        raise error from None
    if _fill(src, memoryview(payload)) != payload_len:
        raise WireError("bad_request", "the stream ended inside a frame payload", header)
    arrays: dict[str, np.ndarray] = {}
    for name, dt, shape, offset, length in table:
        a = payload[offset : offset + length].view(dt).reshape(shape)
        if offset % dt.itemsize:
            a = a.copy()  # unaligned in a foreign sender's frame: one copy keeps every consumer safe
        if dt.kind == "b" and length and payload[offset : offset + length].max() > 1:
            raise WireError("bad_request", f"bool array {name!r} holds bytes other than 0 and 1", header, in_sync=True)
        arrays[name] = a
    return header, arrays
