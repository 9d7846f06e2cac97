"""summary.jsonl (one line per asset, appended as each finishes so a killed batch keeps what it did) and a
Markdown contact sheet of the previews."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..formats.writers import atomic_write

SUMMARY = "summary.jsonl"
CONTACT = "contact.md"


class Summary:
    """The run's records: appended to summary.jsonl at once (flushed), rewritten in input order at the end."""

    def __init__(self, out: Path, order: list[str]) -> None:
        self.out, self.order = out, order
        self.records: dict[str, dict[str, Any]] = {}
        self._fh = open(out / SUMMARY, "w")  # noqa: SIM115 - held open for the run, closed by close()

    def add(self, record: dict[str, Any]) -> None:
        self.records[record["name"]] = record
        self._fh.write(json.dumps(record, default=str) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def counts(self) -> dict[str, int]:
        out = {"ok": 0, "failed": 0, "skipped": 0}
        for r in self.records.values():
            out[r["status"]] += 1
        return out

    def close(self) -> None:
        """summary.jsonl in input order (assets never reached are left out) and the contact sheet."""
        self._fh.close()
        done = [self.records[n] for n in self.order if n in self.records]
        atomic_write(
            self.out / SUMMARY, lambda f: f.write("".join(json.dumps(r, default=str) + "\n" for r in done).encode())
        )
        atomic_write(self.out / CONTACT, lambda f: f.write(contact_sheet(done, len(self.order)).encode()))


def contact_sheet(records: list[dict[str, Any]], total: int) -> str:
    """A Markdown page: per asset its preview (relative link), status, method and time, or its error."""
    ok = sum(r["status"] != "failed" for r in records)
    lines = [f"# Batch contact sheet: {ok} of {total} assets done, {len(records) - ok} failed", "",
             "| asset | preview | status | seconds |", "|---|---|---|---:|"]  # fmt: skip
    for r in records:
        name = r["name"].replace("|", "\\|")
        if r["status"] == "failed":
            err = r["error"]
            lines.append(f"| {name} | failed: `{err['code']}` {err['message'].replace('|', '/')} | failed | |")
            continue
        seconds = r.get("seconds", {}).get("total")
        took = f"{seconds:.1f}" if seconds is not None else ""
        lines.append(f"| {name} | ![{name}](<{r['name']}/preview.png>) | {r['status']} | {took} |")
    return "\n".join(lines) + "\n"
