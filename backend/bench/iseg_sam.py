"""segany bench iseg_sam: iSeg's prepare with Segment Anything for 1,000 views on a GPU.

The issue's H100 figure. SAM is the real vit_h architecture with random weights, saved to a temporary
checkpoint and loaded the way a user's file is: the speed of a forward pass does not depend on the
weights. The mesh is the built-in stool at ~15K vertices; every other option is iSeg's GPU default.
The baseline, in the same run, is the SAM image encoder alone over the same rendered views — the floor
of any SAM-based prepare, since every view has to be encoded once.

`--quick` runs the same code on any device with vit_b and one small view, to check the path.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from ..errors import SegAnyError
from ..jobs import JobContext
from ..methods.iseg import ISeg
from ..methods.iseg.options import ISegOptions
from ..methods.iseg.rendering import views_around
from ..options import parse_options, preset_for
from ..priors import PriorContext, get_prior
from ..priors.sam import as_uint8
from ..samples import sample_mesh
from .iseg import EDGE_15K, QUICK
from .report import Row, write_report

VIEWS = 1000


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run(out_dir: Path, quick: bool = False) -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not quick:
        raise SegAnyError("unsupported", "bench iseg_sam times 1,000 SAM views on a CUDA GPU; --quick checks the path")
    from segment_anything import sam_model_registry

    model_type = "vit_b" if quick else "vit_h"
    scene = sample_mesh(max_edge=0.3 if quick else EDGE_15K)
    method = ISeg()
    given = {**QUICK, "views": 1, "resolution": 48} if quick else {"views": VIEWS}
    opts = parse_options(ISegOptions, given, preset=preset_for(device), scene=scene)
    with tempfile.TemporaryDirectory(prefix="segany-bench-sam-") as tmp:
        checkpoint = Path(tmp) / f"random_{model_type}.pth"
        torch.manual_seed(0)
        torch.save(sam_model_registry[model_type](checkpoint=None).state_dict(), checkpoint)
        prior = get_prior("sam", PriorContext(device, Path(tmp) / "features"), checkpoint=str(checkpoint))

        _sync(device)
        t0 = time.perf_counter()
        state = method.prepare(scene, prior, opts, JobContext(device=device))
        _sync(device)
        prepare_s = time.perf_counter() - t0

        views = views_around(scene, opts.views, opts.resolution, opts.seed).views
        images = [as_uint8(views.rgb[i]) for i in range(len(views))]
        prior.encode(images[0])  # warm-up: CUDA kernels and allocator
        _sync(device)
        t0 = time.perf_counter()
        for image in images:
            prior.encode(image)
        _sync(device)
        encoder_s = time.perf_counter() - t0

    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
    case = f"{len(views):,} views, SAM {model_type}, {gpu}"
    rows = [
        Row(case, "wall time of prepare", prepare_s, "s", "SAM image encoder alone, same views", encoder_s),
        *(Row(case, f"prepare stage: {stage}", seconds, "s") for stage, seconds in state.meta["timings"].items()),
    ]
    extra = {
        "device": device,
        "gpu": gpu,
        "model_type": model_type,
        "n_vertices": len(scene.vertices),
        "views": len(views),
        "options": state.meta["options"],
        "prepare_stages_s": state.meta["timings"],
        "training_samples": state.meta["samples"],
        "quick": quick,
    }
    return write_report("iseg_sam", out_dir, rows, extra)
