"""What a batch does to every asset (the job spec) and which assets it does it to (folder, glob or manifest).

One spec drives `segany batch` on a process pool, on Ray and (through the same JSON) a Blender script. A
manifest row may override the spec's clicks, words or scale for its asset; everything is checked before the
first asset starts, so a typo costs nothing.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import SegAnyError
from ..methods.queries import MAX_CLICKS
from ..options import listed, option, parse_options, plain, shown

TASKS = ("clicks", "everything", "label")
MAX_WORDS = 64  # a label query's word list; longer is a mistake, and SAS's cost grows with it
MAX_ASSETS = 1_000_000  # a manifest past this is a mistake, refused before it is held in memory
MANIFESTS = (".csv", ".jsonl")
SCENE_SUFFIXES = (".obj", ".ply", ".off", ".stl", ".glb", ".gltf", ".xyz", ".npz")
DEFAULT_METHOD = {"everything": "saga", "label": "sas"}  # clicks: the first registered method for the scene kind


@dataclass(frozen=True)
class Work:
    """The checked part of a spec: the task, its inputs, the method and the prior."""

    task: str = option("clicks", choices=TASKS, doc="what to do per asset: clicks, everything at a scale, label")
    method: str | None = option(None, doc="method name; default: the first that fits (clicks), saga, sas")
    prior: str | None = option(None, doc="2D prior; default: the method's")
    clicks: tuple[tuple[int, ...], ...] = option((), most=MAX_CLICKS, doc="[[element, sign], ...] (task clicks)")
    scale: float | str | None = option(None, 0.0, doc='part size in scene units above 0, or "auto" (task everything)')
    words: tuple[str, ...] = option((), most=MAX_WORDS, doc="the words to label with (task label)")
    allow_references: bool = option(False, doc="read other files the scene names (OBJ materials, glTF buffers)")
    retries: int = option(2, 0, 10, doc="times an asset whose worker died is tried again")


@dataclass(frozen=True)
class Spec:
    """The per-asset work plus the method's and prior's options (JSON objects the engine checks on prepare)."""

    work: Work = field(default_factory=Work)
    options: dict[str, Any] = field(default_factory=dict)
    prior_options: dict[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        """What makes two runs' outputs the same: a finished asset is reused only under the same key."""
        doc = {k: v for k, v in self.to_dict().items() if k != "retries"}
        return hashlib.blake2b(json.dumps(doc, sort_keys=True).encode(), digest_size=12).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """The JSON object parse_spec reads back to this spec."""
        return {**plain(self.work), "options": self.options, "prior_options": self.prior_options}


def parse_spec(given: Mapping[str, Any] | None) -> Spec:
    """A spec from its JSON object, every field checked; bad_request naming the field otherwise."""
    if given is not None and not isinstance(given, Mapping):
        raise SegAnyError("bad_request", f"a batch spec must be a JSON object, got {type(given).__name__}")
    values = dict(given or {})
    free = {k: values.pop(k, None) or {} for k in ("options", "prior_options")}
    for k, v in free.items():
        if not isinstance(v, Mapping):
            raise SegAnyError("bad_request", f"batch spec '{k}' must be a JSON object, got {shown(v)}")
    work = parse_options(Work, values, owner="batch spec")
    return Spec(check_work(work, "batch spec"), **{k: dict(v) for k, v in free.items()})


def check_work(work: Work, where: str) -> Work:
    """The task has what it needs: clicks as [element, ±1] pairs, a scale above 0, at least one word."""
    for i, c in enumerate(work.clicks):
        if len(c) != 2 or c[0] < 0 or c[1] not in (1, -1):
            raise SegAnyError("bad_request", f"{where}: click {i} must be [element >= 0, +1 or -1], got {list(c)}")
    if work.task == "clicks" and not work.clicks:
        raise SegAnyError("bad_request", f"{where}: task 'clicks' needs clicks, e.g. [[120, 1], [45, -1]]")
    scale = work.scale
    if work.task == "everything" and (scale is None or (scale != "auto" if isinstance(scale, str) else scale <= 0)):
        raise SegAnyError(
            "bad_request", f"{where}: task 'everything' needs a scale above 0 in scene units or \"auto\", got {scale!r}"
        )
    if work.task == "label" and not [w for w in work.words if w.strip()]:
        raise SegAnyError("bad_request", f'{where}: task \'label\' needs words, e.g. ["chair leg", "seat"]')
    return work


def load_spec(path: Path) -> Spec:
    """A spec from a JSON file."""
    try:
        return parse_spec(json.loads(Path(path).read_text()))
    except FileNotFoundError as exc:
        raise SegAnyError("not_found", f"no batch spec file {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SegAnyError("io_error", f"the batch spec {path} could not be read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise SegAnyError("bad_request", f"the batch spec {path} is not JSON: {exc}") from exc


@dataclass(frozen=True)
class Asset:
    """One input file, the spec it runs under (a manifest row's overrides applied) and its output name."""

    path: Path
    name: str
    spec: Spec


# A manifest row's columns besides `path`: per-asset overrides of the spec
_OVERRIDES = ("clicks", "words", "scale")


def collect_assets(inputs: list[str], spec: Spec) -> list[Asset]:
    """Every input (a folder: its scene files, sorted; a glob; a scene file; a .csv / .jsonl manifest) as
    assets in order, each named for its file (the stem, with a short hash of the path when stems repeat)."""
    rows: list[tuple[Path, Spec]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in SCENE_SUFFIXES)
            rows += [(f, spec) for f in files]
        elif p.suffix.lower() in MANIFESTS and p.is_file():
            rows += _manifest(p, spec)
        elif p.exists():
            rows.append((p, spec))  # a scene file; a bad one fails as its own asset, not the batch
        elif glob.has_magic(item):
            rows += [(Path(f), spec) for f in sorted(glob.glob(item)) if Path(f).is_file()]
        else:
            raise SegAnyError("not_found", f"batch input {item!r} is no file, folder, glob or manifest")
        if len(rows) > MAX_ASSETS:
            raise SegAnyError("too_large", f"a batch takes at most {MAX_ASSETS} assets")
    if not rows:
        raise SegAnyError("not_found", f"no scene files in {listed(inputs)}")
    stems = [p.stem for p, _ in rows]
    return [
        Asset(p, p.stem if stems.count(p.stem) == 1 else f"{p.stem}-{_short(str(p.resolve()))}", s) for p, s in rows
    ]


def _short(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=4).hexdigest()


def _manifest(path: Path, spec: Spec) -> list[tuple[Path, Spec]]:
    """Rows of a CSV (header `path` plus any of clicks, words, scale; clicks / words as JSON lists or
    `120 -45` / `seat;leg`) or a JSONL manifest (one object per line); relative paths are to the manifest."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SegAnyError("io_error", f"the manifest {path} could not be read: {exc}") from exc
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if "path" not in (reader.fieldnames or []):
            raise SegAnyError("bad_request", f"the manifest {path} needs a header line with a 'path' column")
        records = [(reader.line_num, {k: v for k, v in r.items() if v not in (None, "")}) for r in reader]
    else:
        records = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append((n, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise SegAnyError("bad_request", f"{path.name} line {n} is not JSON: {exc}") from exc
    out = []
    for n, rec in records:
        where = f"{path.name} line {n}"
        if not isinstance(rec, dict) or not isinstance(rec.get("path"), str):
            raise SegAnyError("bad_request", f"{where}: each row needs a 'path', got {shown(rec)}")
        unknown = sorted(set(rec) - {"path", *_OVERRIDES})
        if unknown:
            raise SegAnyError(
                "bad_request", f"{where}: unknown columns {listed(unknown)}; known: path, clicks, words, scale"
            )
        file = Path(rec["path"])
        out.append((file if file.is_absolute() else path.parent / file, _override(spec, rec, where)))
        if len(out) > MAX_ASSETS:
            raise SegAnyError("too_large", f"a batch takes at most {MAX_ASSETS} assets")
    return out


def _override(spec: Spec, rec: dict[str, Any], where: str) -> Spec:
    """The spec with a row's clicks, words or scale (CSV cells are text: parsed here)."""
    given = {k: rec[k] for k in _OVERRIDES if k in rec}
    if not given:
        return spec
    for k, v in list(given.items()):
        if isinstance(v, str):
            given[k] = _cell(k, v, where)
    work = parse_options(Work, {**plain(spec.work), **given}, owner=where)
    return replace(spec, work=check_work(work, where))


def _cell(key: str, text: str, where: str) -> Any:
    """A CSV cell: JSON when it looks like it, else `120 -45` (clicks), `seat;leg` (words), `0.2` (scale)."""
    text = text.strip()
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise SegAnyError("bad_request", f"{where}: {key} is not JSON: {exc}") from exc
    if key == "words":
        return [w.strip() for w in text.split(";") if w.strip()]
    if key == "scale":
        try:
            return text if text == "auto" else float(text)
        except ValueError:
            raise SegAnyError("bad_request", f"{where}: scale must be a number, got {shown(text)}") from None
    return [_signed(c, where) for c in text.split()]


def _signed(text: str, where: str) -> list[int]:
    """`120` → [120, 1], `-45` → [45, -1] (the CLI's --click form)."""
    digits = text[1:] if text[:1] in "+-" else text
    if not (digits.isascii() and digits.isdigit()):
        raise SegAnyError("bad_request", f"{where}: click {text!r} is not an element index like 120 or -45")
    return [int(digits), -1 if text.startswith("-") else 1]
