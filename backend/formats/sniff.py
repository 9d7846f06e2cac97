"""Which reader a file needs: its first bytes decide where they are unambiguous, the extension otherwise.

Content wins over the name so a PLY saved as `scan.bin` still loads, and a file whose name promises a
format its bytes do not start with is reported as corrupt rather than handed to the wrong parser.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import SegAnyError

FORMATS = ("ply", "obj", "off", "stl", "glb", "gltf", "xyz", "npz")
EXTENSIONS = {
    ".ply": "ply",
    ".obj": "obj",
    ".off": "off",
    ".stl": "stl",
    ".glb": "glb",
    ".gltf": "gltf",
    ".xyz": "xyz",
    ".txt": "xyz",
    ".pts": "xyz",
    ".npz": "npz",
}
_CHUNK = 1 << 24
# formats whose first bytes always identify them
_MAGIC = {"ply": (b"ply\n", b"ply\r"), "glb": (b"glTF",), "npz": (b"PK\x03\x04", b"PK\x05\x06")}


def check_readable(path: str | os.PathLike) -> Path:
    """The path as a Path, or not_found / io_error a person can act on."""
    p = Path(path)
    if not p.exists():
        raise SegAnyError("not_found", f"no such file: {p}")
    if not p.is_file():
        raise SegAnyError("not_found", f"{p} is not a regular file")
    if not os.access(p, os.R_OK):
        raise SegAnyError("io_error", f"{p} is not readable (check its permissions)")
    return p


def _content_format(head: bytes) -> str | None:
    for fmt, magics in _MAGIC.items():
        if head.startswith(magics):
            return fmt
    text = head.lstrip()
    if text[:3] in (b"OFF", b"COF", b"NOF") and head.split(None, 1)[0] in (b"OFF", b"COFF", b"NOFF", b"CNOFF"):
        return "off"
    return None


def detect_format(path: str | os.PathLike) -> str:
    """One of FORMATS, from magic bytes first and the file extension second."""
    p = check_readable(path)
    with open(p, "rb") as f:
        head = f.read(64)
    by_content = _content_format(head)
    by_name = EXTENSIONS.get(p.suffix.lower())
    if by_content is not None:
        return by_content
    if by_name is None:
        raise SegAnyError(
            "unknown_format",
            f"{p.name}: unknown format; SegAny reads {', '.join(sorted(set(EXTENSIONS)))} files",
        )
    if by_name in _MAGIC:
        raise SegAnyError("corrupt_file", f"{p.name} does not start like a {by_name.upper()} file (bad header)")
    return by_name


def count_occurrences(path: Path, needles: tuple[bytes, ...], start: bytes = b"") -> list[int]:
    """How often each byte string occurs, streamed in chunks so a huge file never sits in memory.

    `start` is prepended to the stream, e.g. a newline so that a line-start needle b"\\nv " also
    matches the first line.
    """
    counts = [0] * len(needles)
    carry = [start] * len(needles)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            for i, needle in enumerate(needles):
                buf = carry[i] + chunk
                counts[i] += buf.count(needle)
                carry[i] = buf[len(buf) - len(needle) + 1 :]  # shorter than the needle: never counted twice
    return counts
