"""Model files (SAM and CLIP weights): a catalogue, one model directory, resumable verified downloads.

Nothing here runs unless asked: priors take a checkpoint path and never download. `fetch` streams into
NAME.part with HTTP Range so an interrupted download continues where it stopped, checks the SHA-256
(and, for SAM, the MD5 prefix its file name carries) and only then renames the file into place, so a
file under its final name is always complete and verified.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import SegAnyError

ProgressFn = Callable[[int, int | None], None]  # (bytes done, total bytes or None when unknown)
CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelFile:
    """One downloadable weight file. `md5_prefix`: the hex digits SAM's file names carry."""

    name: str
    kind: str  # "sam" or "clip": the prior that reads it
    arch: str  # SAM model type or open_clip model name
    filename: str
    url: str
    sha256: str | None
    size: int | None = None
    md5_prefix: str | None = None
    description: str = ""


_SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
CATALOGUE: dict[str, ModelFile] = {
    m.name: m
    for m in (
        ModelFile(
            "sam_vit_b", "sam", "vit_b", "sam_vit_b_01ec64.pth", _SAM_URL + "sam_vit_b_01ec64.pth",
            "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912", 375_042_383, "01ec64",
            "Segment Anything ViT-B (smallest, ~16 s per view on a 2-core CPU)",
        ),
        ModelFile(
            "sam_vit_l", "sam", "vit_l", "sam_vit_l_0b3195.pth", _SAM_URL + "sam_vit_l_0b3195.pth",
            "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622", None, "0b3195",
            "Segment Anything ViT-L",
        ),
        ModelFile(
            "sam_vit_h", "sam", "vit_h", "sam_vit_h_4b8939.pth", _SAM_URL + "sam_vit_h_4b8939.pth",
            "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e", 2_564_550_879, "4b8939",
            "Segment Anything ViT-H (best masks, needs a GPU to be pleasant)",
        ),
        ModelFile(
            "clip_vit_b_16", "clip", "ViT-B-16", "open_clip_vit_b_16_laion2b_s34b_b88k.bin",
            "https://huggingface.co/laion/CLIP-ViT-B-16-laion2B-s34B-b88K/resolve/main/open_clip_pytorch_model.bin",
            None, None, None,
            "open_clip ViT-B-16 trained on LAION-2B (laion2b_s34b_b88k): language for the sas method",
        ),
    )
}  # fmt: skip


def model_dir() -> Path:
    """Where model files live: $SEGANY_MODELS, else ~/.cache/segany/models."""
    env = os.environ.get("SEGANY_MODELS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "segany" / "models"


def spec(name: str) -> ModelFile:
    if name not in CATALOGUE:
        raise SegAnyError("not_found", f"unknown model {name!r}; known models: {sorted(CATALOGUE)}")
    return CATALOGUE[name]


def where(name: str | None = None) -> Path:
    """The model directory, or the path a named model has (or would have) inside it."""
    return model_dir() if name is None else model_dir() / spec(name).filename


def checkpoint(name: str) -> Path:
    """The path of a downloaded model, or an error saying how to get it (never downloads)."""
    path = where(name)
    if not path.is_file():
        raise SegAnyError("not_found", f"model {name!r} is not in {model_dir()}; run `segany models fetch {name}`")
    return path


def list_models() -> list[dict]:
    """The catalogue with each file's path and whether it is present (hashes are not recomputed here)."""
    out = []
    for m in CATALOGUE.values():
        path = where(m.name)
        out.append({**asdict(m), "path": str(path), "present": path.is_file()})
    return out


def file_hashes(path: Path) -> tuple[str, str]:
    """(sha256, md5) of a file, read once in chunks."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def _check(model: ModelFile, path: Path) -> str:
    """Raise if the file's hashes disagree with the catalogue; return its SHA-256."""
    sha, md5 = file_hashes(path)
    if model.sha256 and sha != model.sha256:
        raise SegAnyError(
            "corrupt_file", f"{model.name}: SHA-256 of the downloaded file is {sha}, expected {model.sha256}"
        )
    if model.md5_prefix and not md5.startswith(model.md5_prefix):
        raise SegAnyError(
            "corrupt_file", f"{model.name}: MD5 {md5} does not start with {model.md5_prefix} (from its file name)"
        )
    return sha


def download(
    model: ModelFile,
    directory: Path,
    url: str | None = None,
    progress: ProgressFn | None = None,
    retries: int = 3,
    timeout: float = 30.0,
) -> Path:
    """Download `model` into `directory`, resuming a previous NAME.part; verified before it is renamed in."""
    directory.mkdir(parents=True, exist_ok=True)
    dest = directory / model.filename
    part = directory / (model.filename + ".part")
    url = url or model.url
    attempt = 0
    while not _stream(url, part, progress, timeout):
        attempt += 1
        if attempt > retries:
            raise SegAnyError(
                "io_error",
                f"{model.name}: the download from {url} kept breaking off; {part.stat().st_size:,} bytes are kept "
                f"in {part} and the next fetch resumes from there",
            )
    try:
        sha = _check(model, part)
    except SegAnyError as err:
        part.unlink()
        raise SegAnyError("corrupt_file", f"{err.message}; the file was removed, nothing was installed") from None
    if model.sha256 is None:
        (directory / (model.filename + ".sha256")).write_text(sha + "\n")
    os.replace(part, dest)
    return dest


def _stream(url: str, part: Path, progress: ProgressFn | None, timeout: float) -> bool:
    """Append the rest of `url` to `part`; False when the connection broke off (the part is kept)."""
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing left past what we have: the part is complete
            return True
        raise SegAnyError("io_error", f"downloading {url} failed: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        raise SegAnyError("io_error", f"cannot reach {url}: {err}") from None
    with resp:
        if resp.status != 206:
            have = 0  # the server ignored Range: start over
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        done = have
        try:
            with open(part, "ab" if have else "wb") as f:
                while chunk := resp.read(CHUNK):
                    f.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
        except (http.client.IncompleteRead, ConnectionError, TimeoutError):
            return False
    return total is None or done >= total


def fetch(name: str, url_override: str | None = None, progress: ProgressFn | None = None) -> Path:
    """Download a catalogue model into the model directory (resuming, verified); a present file is kept."""
    model = spec(name)
    dest = where(name)
    if dest.is_file():
        return dest
    return download(model, model_dir(), url_override, progress)


def verify(name: str) -> dict:
    """Re-hash a downloaded model against the catalogue (or the hash recorded at download time)."""
    model = spec(name)
    path = checkpoint(name)
    record = path.with_name(path.name + ".sha256")
    if model.sha256 is None and record.is_file():
        model = ModelFile(**{**asdict(model), "sha256": record.read_text().strip()})
    sha = _check(model, path)
    return {"name": name, "path": str(path), "sha256": sha, "size": path.stat().st_size, "checked": bool(model.sha256)}
