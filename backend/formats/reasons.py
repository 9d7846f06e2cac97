"""Why a parser failed, said without its own message: those quote the bytes they choked on.

A reader's exception text (numpy's "could not convert string 'root:x:0:0' to float", plyfile's header
line) can carry the file's contents, and error messages travel to clients and logs. What is kept is the
exception's kind and where it happened, from the attributes parsers set for that purpose.
"""

from __future__ import annotations

import re

# numpy's loadtxt names the row (counted from 0, data rows only) and column (from 1) in its message;
# numbers only, so they are safe to repeat
_NUMPY_ROW = re.compile(r"\bat row (\d+), column (\d+)")


def failure(e: BaseException) -> str:
    """`ValueError at line 3, column 7`: the kind of failure and its place in the file, never its text."""
    where = []
    for attr, label in (("lineno", "line"), ("line", "line"), ("row", "row"), ("colno", "column"), ("pos", "byte")):
        value = getattr(e, attr, None)
        if isinstance(value, int) and not isinstance(value, bool) and label not in (w.split()[0] for w in where):
            where.append(f"{label} {value}")
    found = _NUMPY_ROW.search(str(e))
    if found and not where:
        where = [f"data row {int(found[1]) + 1}", f"column {found[2]}"]
    return type(e).__name__ + (f" at {', '.join(where)}" if where else "")
