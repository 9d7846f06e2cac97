"""Stable error codes: clients branch on `code`, people read `message`."""

from __future__ import annotations

CODES = {
    "bad_request": "the request is malformed or names an unknown op / field",
    "unauthorized": "the first frame did not carry the right token",
    "too_large": "a size limit was exceeded (header, payload, arrays, elements)",
    "not_found": "a file, scene, job, method or prior does not exist",
    "unknown_format": "a file's format is not one SegAny reads",
    "corrupt_file": "a file is truncated or malformed",
    "invalid_geometry": "NaN/Inf coordinates, indices out of range, empty geometry",
    "invalid_array": "an array has the wrong shape or dtype",
    "not_prepared": "a query needs a prepare job that has not run for this scene",
    "unsupported": "the method / prior cannot do this (scene kind, capability)",
    "cancelled": "the job was cancelled",
    "timeout": "a request ran past its deadline (a query that takes too long) and was stopped",
    "busy": "the resource is in use by another job",
    "io_error": "reading or writing the disk failed (full disk, permissions)",
    "worker_lost": "a batch worker died on every try at an asset (killed, out of memory, a crash in native code)",
    "internal": "a bug: the message says where",
}


class SegAnyError(Exception):
    """An error a person can act on, with a stable code for programs."""

    def __init__(self, code: str, message: str) -> None:
        if code not in CODES:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}
