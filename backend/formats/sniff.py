"""Which reader a file needs: its first bytes decide where they are unambiguous, the extension otherwise.

Content wins over the name so a PLY saved as `scan.bin` still loads, and a file whose name promises a
format its bytes do not start with is reported as corrupt rather than handed to the wrong parser.
"""

from __future__ import annotations

import errno
import os
import stat
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
    """The path as a Path when it names a readable regular file; otherwise the code a person can act on.

    Special files are refused before anything opens them: a FIFO or a terminal would block the reader,
    and a device or directory is not a scene whatever its name says.
    """
    p = Path(path)
    try:
        st = p.stat()
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            raise SegAnyError(
                "not_found", f"the path is too long for the file system ({len(str(p)):,} characters)"
            ) from e
        if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            raise SegAnyError("not_found", f"no such file: {p} ({e.strerror})") from e
        raise SegAnyError("io_error", f"{p} cannot be looked at: {e.strerror} (check its permissions)") from e
    if stat.S_ISDIR(st.st_mode):
        raise SegAnyError("not_found", f"{p} is a directory, not a scene file")
    if not stat.S_ISREG(st.st_mode):
        raise SegAnyError("unknown_format", f"{p} is a {_special_kind(st.st_mode)}, not a regular file SegAny can read")
    if not os.access(p, os.R_OK):
        raise SegAnyError("io_error", f"{p} is not readable (check its permissions)")
    return p


def _special_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):  # fmt: skip
        if test(mode):
            return name
    return "special file"


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
