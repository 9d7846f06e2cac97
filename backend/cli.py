"""`segany` command line: info, serve, demo, segment, cache, bench, eval, models."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .bench import BENCHES
from .errors import SegAnyError


class _Typer(typer.Typer):
    """A Typer app on which every SegAnyError ends as one `error [code] message` line and exit status 2.

    Catching here, around the whole command, covers errors raised while the engine starts (an unknown
    or absent --device) as well as those of the work itself, so no command can end in a traceback.
    """

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except SegAnyError as exc:
            typer.echo(f"error [{exc.code}] {exc.message}", err=True)
            sys.exit(2)


app = _Typer(add_completion=False, no_args_is_help=True, help="SegAny: click-to-segment meshes, splats and points.")
cache_app = typer.Typer(no_args_is_help=True, help="List and clear the on-disk cache.")
models_app = typer.Typer(no_args_is_help=True, help="Model files (SAM, CLIP): list, fetch, verify, where.")
app.add_typer(cache_app, name="cache")
app.add_typer(models_app, name="models")
console = Console()

CacheOpt = Annotated[
    Path | None, typer.Option("--cache-dir", help="cache directory (default $SEGANY_CACHE or ~/.cache/segany)")
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N")]
# the options segment, everything and label share, declared once so their help reads the same everywhere
SceneArg = Annotated[Path, typer.Argument(help="mesh / splat / point file")]
PriorOpt = Annotated[str | None, typer.Option(help="2D prior (default: the method's)")]
OptionsOpt = Annotated[
    str | None, typer.Option(help='method options for prepare, as JSON, e.g. \'{"preset": "tiny"}\'')
]
OutOpt = Annotated[Path, typer.Option(help="output directory")]
ReferencesOpt = Annotated[
    bool, typer.Option(help="read the other files the scene file names (OBJ materials, glTF .bin buffers)")
]


def _engine(cache_dir: Path | None = None, device: str = "auto"):
    from segany.kernels import tune_cpu_allocator

    from .engine import Engine
    from .priors import checkpoints_from_env

    tune_cpu_allocator()
    return Engine(cache_dir=cache_dir, device=device, checkpoints=checkpoints_from_env())


def run_prepare(
    engine, method: str, sid: str, prior: str | None, options: dict | None = None, prior_options: dict | None = None
) -> dict:
    """Prepare with a progress bar; Ctrl+C cancels the job cleanly."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(f"prepare {method}", total=1.0)

        def show(job) -> None:
            bar.update(task, completed=job.fraction, description=f"prepare {method}: {job.message}"[:70])

        job = engine.submit(method, sid, prior=prior, options=options, prior_options=prior_options, on_progress=show)
        try:
            while not job.wait(0.2):
                pass
        except KeyboardInterrupt:
            job.cancel()
            job.wait()
        return job.result()


@app.command()
def info(cache_dir: CacheOpt = None, device: DeviceOpt = "auto") -> None:
    """Versions, device, methods, priors, checkpoints found and the cache place."""
    engine = _engine(cache_dir, device)
    data = engine.info()
    data["priors"] = engine.priors()
    data["methods"] = engine.methods()
    from .models import list_models

    data["models"] = list_models()
    console.print_json(json.dumps(data, default=str))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []})
def serve(ctx: typer.Context) -> None:
    """Run the backend server (what the Blender add-on starts): same options as `python -m segany.server --help`.

    --host (loopback by default), --port (0 = chosen by the OS), --state-file (port, pid, token; mode 0600),
    --parent-pid (exit when Blender dies), --cache-dir, --device.
    """
    from .server import main

    main(ctx.args)


@app.command()
def demo(
    out: OutOpt = Path("segany-demo"),
    cache_dir: CacheOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """The main job on the built-in sample: prepare iSeg, click a part, write a coloured PLY and a PNG."""
    from .demo import run_demo

    paths = run_demo(_engine(cache_dir, device), out, prepare=run_prepare)
    for label, path in paths.items():
        console.print(f"{label}: {path}")


@app.command()
def segment(
    path: SceneArg,
    click: Annotated[list[str], typer.Option(help="element index with sign, e.g. 120 or -45 (negative click); repeat")],
    method: str = "iseg",
    prior: PriorOpt = None,
    out: OutOpt = Path("segany-out"),
    allow_references: ReferencesOpt = False,
    scale: Annotated[
        str | None, typer.Option(help='part size in scene units, or "auto" (methods with a scale: saga)')
    ] = None,
    options: OptionsOpt = None,
    cache_dir: CacheOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Segment a file from clicks: writes result.ply (scores + colours) and result.png."""
    from .demo import write_result
    from .methods.queries import parse_query

    query: dict = {"clicks": [_click(c) for c in click]}
    if scale is not None:
        query["scale"] = _scale(scale, "--scale")
    engine = _engine(cache_dir, device)
    sid = engine.load_scene(path, allow_references=allow_references)
    # an unknown method, bad clicks and a scale the method does not take are named now, not after a prepare
    parse_query(engine.method(method).Query, query, engine.get_scene(sid))
    run_prepare(engine, method, sid, prior, _json_object(options, "--options") if options else None)
    sel = engine.query(method, sid, query, prior=prior)
    clicks = query["clicks"]
    paths = write_result(engine.get_scene(sid), sel, out, clicks)
    for label, p in paths.items():
        console.print(f"{label}: {p}")


@app.command()
def everything(
    path: SceneArg,
    scale: Annotated[
        str,
        typer.Option(
            help='part size in scene units, "auto" (half the prepare\'s largest mask), or several sizes '
            "separated by commas for a hierarchy (the finest is written)"
        ),
    ] = "auto",
    method: str = "saga",
    prior: PriorOpt = None,
    min_cluster_size: Annotated[int | None, typer.Option(help="fewest sampled elements a part holds")] = None,
    sample: Annotated[int | None, typer.Option(help="elements clustered; the rest join the nearest part")] = None,
    parts: Annotated[
        int | None,
        typer.Option(help="merge touching parts down to this many, costliest to keep apart first; default: automatic"),
    ] = None,
    options: OptionsOpt = None,
    out: OutOpt = Path("segany-parts"),
    allow_references: ReferencesOpt = False,
    cache_dir: CacheOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Split a whole file into parts: writes parts.ply (an int `part` + colour per element) and parts.png."""
    from .demo import write_parts
    from .methods.base import check_everything

    sizes = [_scale(s, "--scale") for s in scale.split(",")]
    query: dict = {"scale": sizes[0]} if len(sizes) == 1 else {"scales": sizes}
    given = (("min_cluster_size", min_cluster_size), ("sample", sample), ("parts", parts))
    query.update({k: v for k, v in given if v is not None})
    engine = _engine(cache_dir, device)
    check_everything(engine.method(method))  # named now, not after a prepare
    sid = engine.load_scene(path, allow_references=allow_references)
    run_prepare(engine, method, sid, prior, _json_object(options, "--options") if options else None)
    parts = engine.everything(method, sid, query, prior=prior)
    scene = engine.get_scene(sid)
    paths = write_parts(scene, parts, out)
    used = ", ".join(f"{s:.4g}" for s in parts.extras.get("scales", np.array([])).tolist()) or "?"
    k = len(parts.colours)
    console.print(f"{k} parts of {scene.n_elements:,} elements ({scene.kind}) at scale {used} ({method}): "
                  f"{paths['ply']}, {paths['png']}")  # fmt: skip


@app.command()
def label(
    path: SceneArg,
    words: Annotated[str, typer.Option(help='the labels, separated by commas, e.g. "seat, leg, back"')],
    other: Annotated[
        bool, typer.Option(help='label -1 (other) what is closer to "object", "stuff"… than to every word')
    ] = False,
    method: str = "sas",
    prior: Annotated[str | None, typer.Option(help="language source prior (default: the method's)")] = None,
    options: OptionsOpt = None,
    prior_options: Annotated[
        str | None, typer.Option(help='prior options as JSON, e.g. \'{"clip": {"model_name": "ViT-L-14"}}\'')
    ] = None,
    out: OutOpt = Path("segany-labels"),
    calibration: Annotated[
        Path | None, typer.Option(help="capability table from `segany calibrate` (else estimated on the scene)")
    ] = None,
    allow_references: ReferencesOpt = False,
    cache_dir: CacheOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Label a whole file from words: labels.ply (a word index `part` + colour per element), labels.png, labels.json."""
    from .eval.calibration import load_table
    from .label_files import split_words, write_labels
    from .methods.sas.options import parse_label_query

    query = {"words": split_words(words), "other": other}
    if calibration is not None:
        query["calibration"] = load_table(calibration)
    parse_label_query(query)  # empty, duplicate or too many words are named now, not after a prepare
    engine = _engine(cache_dir, device)
    sid = engine.load_scene(path, allow_references=allow_references)
    popts = _json_object(prior_options, "--prior-options") if prior_options else None
    run_prepare(engine, method, sid, prior, _json_object(options, "--options") if options else None, popts)
    sel = engine.query(method, sid, query, prior=prior)
    scene = engine.get_scene(sid)
    paths = write_labels(scene, sel, query["words"], out)
    console.print(f"{scene.n_elements:,} {scene.kind} elements labelled with {len(query['words'])} words ({method}): "
                  f"{paths['ply']}, {paths['png']}, {paths['json']}")  # fmt: skip
    if calibration is not None:
        measured = np.asarray(sel.extras["calibrated"], dtype=bool)
        scene_words = [w for w, m in zip(query["words"], measured, strict=True) if not m]
        console.print(f"capability from {calibration} for {int(measured.sum())} of {len(measured)} words"
                      + (f"; estimated on the scene for {scene_words}" if scene_words else ""))  # fmt: skip


@app.command()
def calibrate(
    data: Annotated[Path, typer.Argument(help="labelled scenes: PSB layout or labelled PLYs, with part_names.json")],
    out: Annotated[Path, typer.Option(help="the capability table to write (JSON)")] = Path("capability.json"),
    method: str = "sas",
    prior: Annotated[
        str, typer.Option(help="the language source prior the scenes will be labelled with (sas's default)")
    ] = "clip_crops",
    ids: Annotated[str | None, typer.Option(help="comma-separated shape ids (default: all)")] = None,
    options: Annotated[str | None, typer.Option(help="method options for prepare, as JSON")] = None,
    prior_options: Annotated[str | None, typer.Option(help="prior options as JSON")] = None,
    cache_dir: CacheOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Each language source's per-word IoU on labelled scenes: the capability `segany label --calibration` uses."""
    from .eval.label import run_calibrate

    table = run_calibrate(
        method,
        prior,
        data,
        ids.split(",") if ids else None,
        out,
        _engine(cache_dir, device),
        prior_options=_json_object(prior_options, "--prior-options") if prior_options else None,
        method_options=_json_object(options, "--options") if options else None,
    )
    words = sorted({w for s in table["sources"] for w in s["words"]})
    console.print(f"{len(table['sources'])} sources × {len(words)} words measured: {out}")


def _scale(text: str, flag: str) -> float | str:
    """`auto` or a number > 0 (a part size in scene units); anything else is a bad_request naming the flag."""
    body = text.strip()
    if body == "auto":
        return body
    try:
        value = float(body)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value != float("inf")):
        raise SegAnyError("bad_request", f'{flag} {text!r} must be a number > 0 in scene units or "auto"')
    return value


def _click(text: str) -> list[int]:
    """`120` → [120, +1], `-45` → [45, -1]; anything else is a bad_request naming the flag."""
    body = text.strip()
    digits = body[1:] if body[:1] in "+-" else body
    if not (digits.isascii() and digits.isdigit()):
        raise SegAnyError("bad_request", f"--click {text!r} is not an element index like 120 or -45 (a negative click)")
    return [int(digits), -1 if body.startswith("-") else 1]


@cache_app.command("list")
def cache_list(cache_dir: CacheOpt = None) -> None:
    """Cached prepare results, newest first."""
    from .cache import Cache

    cache = Cache(cache_dir)
    table = Table(title=f"cache {cache.root}")
    for col in ("scene", "method", "prior", "key", "created"):
        table.add_column(col)
    for e in sorted(cache.entries(), key=lambda e: e.record.get("created", 0), reverse=True):
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.record.get("created", 0)))
        table.add_row(e.scene_id[:12], e.method, str(e.record.get("prior")), e.key, created)
    console.print(table)
    console.print(f"{cache.size_bytes() / 1e6:.1f} MB")


@cache_app.command("clear")
def cache_clear(
    scene: Annotated[str | None, typer.Option(help="only this scene id")] = None, cache_dir: CacheOpt = None
) -> None:
    """Remove cached results (all, or one scene's)."""
    from .cache import Cache

    n = Cache(cache_dir).clear(scene)
    console.print(f"removed {n} entries")


@app.command()
def bench(
    name: Annotated[str, typer.Argument(help=" | ".join(BENCHES))],
    out: Annotated[Path, typer.Option(help="output directory for NAME.json and NAME.png")] = Path("bench-out"),
    quick: Annotated[bool, typer.Option(help="tiny sizes: a smoke test, not a measurement")] = False,
) -> None:
    """Run a benchmark: prints a table, writes OUT/NAME.json and OUT/NAME.png."""
    from .bench import run_bench

    run_bench(name, out, quick=quick)
    console.print(f"wrote {out / (name + '.json')}, {out / (name + '.md')} and {out / (name + '.png')}")


def _json_object(text: str, flag: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SegAnyError("bad_request", f"{flag} must be a JSON object: {exc}") from exc
    if not isinstance(value, dict):
        raise SegAnyError("bad_request", f"{flag} must be a JSON object, got {text!r}")
    return value


@app.command("eval")
def evaluate(
    task: Annotated[
        str,
        typer.Option(
            help="clicks (simulated clicks, mIoU/NoC) | everything (all parts, Rand Index error) | "
            "label (words per part, mIoU; sas with --prior oracle_text)"
        ),
    ] = "clicks",
    method: Annotated[str, typer.Option(help="method to evaluate")] = "iseg",
    prior: Annotated[str, typer.Option(help="2D prior")] = "geometric",
    data: Annotated[
        Path | None, typer.Option(help="PSB-layout or labelled-PLY directory (default: shared psb)")
    ] = None,
    ids: Annotated[str | None, typer.Option(help="comma-separated shape ids")] = None,
    clicks: Annotated[int, typer.Option(help="clicks per target")] = 20,
    noise: Annotated[str | None, typer.Option(help="oracle noise: 'default' or none")] = None,
    prior_options: Annotated[
        str | None, typer.Option(help="prior options as JSON, e.g. '{\"confusion\": 0.5}' (--noise adds its key)")
    ] = None,
    query: Annotated[
        str | None, typer.Option(help="extra keys for every query, as JSON, e.g. '{\"refine\": false}'")
    ] = None,
    options: Annotated[
        str | None, typer.Option(help='method options for prepare, as JSON, e.g. \'{"decoder": "full"}\'')
    ] = None,
    out: OutOpt = Path("eval-out"),
    calibration: Annotated[
        Path | None, typer.Option(help="label task: also fuse by this `segany calibrate` table (fused:calibrated)")
    ] = None,
    cache_dir: CacheOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Evaluate a method (simulated clicks, all parts, or labels from words); writes results.json, report.md, PNG."""
    from .eval import run_eval
    from .eval.everything import run_everything_eval
    from .eval.label import run_label_eval
    from .samples import shared_data_dir

    tasks = {"clicks": run_eval, "everything": run_everything_eval, "label": run_label_eval}
    if task not in tasks:
        raise SegAnyError("bad_request", f"--task must be clicks, everything or label, got {task!r}")
    popts = _json_object(prior_options, "--prior-options") if prior_options else {}
    if noise:
        popts["noise"] = noise
    given = {
        "method": method,
        "prior": prior,
        "data": data or shared_data_dir() / "psb",
        "ids": ids.split(",") if ids else None,
        "out": out,
        "prior_options": popts or None,
        "method_options": _json_object(options, "--options") if options else None,
    }
    if task != "label":  # labels take words, not query keys
        given["query_options"] = _json_object(query, "--query") if query else None
    if calibration is not None:
        if task != "label":
            raise SegAnyError("bad_request", "--calibration is for --task label (capability tables rank word labels)")
        given["calibration"] = calibration
    if task == "clicks":
        given["clicks"] = clicks
    tasks[task](engine=_engine(cache_dir, device), **given)
    console.print((out / "report.md").read_text())


@app.command("generate-labelled")
def generate_labelled_cmd(
    data: Annotated[Path, typer.Option(help="PSB-layout directory of labelled meshes")],
    out: Annotated[Path, typer.Option(help="output directory: OUT/splats/*.ply, OUT/points/*.ply")],
    kinds: Annotated[str, typer.Option(help="comma-separated: splats, points")] = "splats,points",
    ids: Annotated[str | None, typer.Option(help="comma-separated shape ids")] = None,
) -> None:
    """Turn labelled meshes into labelled splat scenes and point clouds (labels never leak into colours)."""
    from .eval.generate import generate_labelled

    written = generate_labelled(data, out, kinds=tuple(kinds.split(",")), ids=ids.split(",") if ids else None)
    for kind, paths in written.items():
        console.print(f"{kind}: {len(paths)} files in {out / kind}")


@app.command("generate-named-parts")
def generate_named_parts_cmd(
    out: Annotated[Path, typer.Option(help="output directory: OUT/meshes, OUT/splats, OUT/points")],
    per_category: Annotated[int, typer.Option(help="shapes per category (table, chair, lamp, mug, bottle)")] = 4,
    seed: Annotated[int, typer.Option(help="first seed of the proportions; shape k of a category uses seed + k")] = 0,
    kinds: Annotated[str, typer.Option(help="comma-separated: splats, points, or none")] = "splats,points",
) -> None:
    """Make procedural named-part assets (every face names its part) for `segany eval --task label`."""
    from .eval.named_parts import generate_named_parts

    chosen = tuple(k for k in kinds.split(",") if k and k != "none")
    for kind, paths in generate_named_parts(out, per_category, seed, chosen).items():
        console.print(f"{kind}: {len(paths)} files in {out / kind}")


@app.command()
def batch(
    inputs: Annotated[list[str], typer.Argument(help="scene files, folders, globs or .csv / .jsonl manifests")],
    out: Annotated[Path, typer.Option(help="output folder: one folder per asset, summary.jsonl, contact.md")],
    spec: Annotated[Path | None, typer.Option(help="job spec JSON (docs/batch.md); flags override it")] = None,
    task: Annotated[str | None, typer.Option(help="clicks | everything | label")] = None,
    method: Annotated[str | None, typer.Option(help="method (default: the first that fits, saga, sas)")] = None,
    prior: PriorOpt = None,
    click: Annotated[list[str] | None, typer.Option(help="element index with sign, e.g. 120 or -45; repeat")] = None,
    scale: Annotated[str | None, typer.Option(help='part size in scene units or "auto" (task everything)')] = None,
    words: Annotated[str | None, typer.Option(help="words separated by commas, as segany label (task label)")] = None,
    options: Annotated[str | None, typer.Option(help='method options as JSON, e.g. \'{"preset": "tiny"}\'')] = None,
    workers: Annotated[int, typer.Option(help="processes on this machine (or Ray tasks at once with --ray local)")] = 1,
    ray: Annotated[str | None, typer.Option(help="run on Ray: auto (a `ray start` cluster), local, or ADDRESS")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads per worker (default: cores // workers)")] = None,
    gpus_per_task: Annotated[float, typer.Option(help="GPUs each Ray task declares")] = 0.0,
    cache_dir: CacheOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Label many assets with one spec on a process pool or Ray; a rerun skips what is finished."""
    from .batch import collect_assets, load_spec, parse_spec, run_batch
    from .label_files import split_words

    given = load_spec(spec).to_dict() if spec else {}
    flags = {"task": task, "method": method, "prior": prior, "scale": _scale(scale, "--scale") if scale else None}
    given.update({k: v for k, v in flags.items() if v is not None})
    if click:
        given["clicks"] = [_click(c) for c in click]
    if words is not None:
        given["words"] = split_words(words)
    if options is not None:
        given["options"] = _json_object(options, "--options")
    job = parse_spec(given)
    assets = collect_assets(inputs, job)
    outcome = run_batch(assets, out, workers=workers, ray=ray, gpus=gpus_per_task, cache_dir=cache_dir,
                        device=device, threads=threads, console=console)  # fmt: skip
    c = outcome.counts
    console.print(f"{c['ok']} ok, {c['failed']} failed, {c['skipped']} skipped of {len(assets)}: "
                  f"{out / 'summary.jsonl'}, {out / 'contact.md'}")  # fmt: skip
    if outcome.interrupted:
        console.print("interrupted: finished assets are kept; run the same command again to do the rest")
        sys.exit(130)
    sys.exit(1 if c["failed"] else 0)


@models_app.command("list")
def models_list() -> None:
    """Known model files and whether they are present."""
    from .models import list_models

    console.print_json(json.dumps(list_models(), default=str))


@models_app.command("where")
def models_where(name: Annotated[str, typer.Argument()]) -> None:
    """Path a model file is (or would be) stored at."""
    from .models import where

    console.print(str(where(name)))


@models_app.command("fetch")
def models_fetch(name: Annotated[str, typer.Argument()], url: Annotated[str | None, typer.Option()] = None) -> None:
    """Download (resuming) and verify a model file."""
    from rich.progress import DownloadColumn, TransferSpeedColumn

    from .models import fetch

    with Progress(TextColumn(name), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console) as bar:
        task = bar.add_task(name, total=None)
        path = fetch(name, url_override=url, progress=lambda done, total: bar.update(task, completed=done, total=total))
    console.print(f"verified: {path}")


@models_app.command("verify")
def models_verify(name: Annotated[str, typer.Argument()]) -> None:
    """Re-hash a downloaded model file against its known SHA-256."""
    from .models import verify

    console.print(str(verify(name)))


if __name__ == "__main__":
    app()
