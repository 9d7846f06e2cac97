"""The label query's bf16 products with their exact fallback (`segany.kernels.labels`): labels equal to the
exact fp32 path's on scenes built so that bf16 rounding alone would flip labels (near-ties on purpose), with
and without `other`, relevancy and the 3D step; the fallback is counted; scores stay within the bound."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segany.kernels import label_loops
from segany.kernels.labels import EPS, fused_scores, label_elements, narrow
from segany.methods.sas.fusion import pack, text_table
from segany.methods.sas.spreading import spreading

pytestmark = pytest.mark.skipif(not label_loops.BF16, reason="this CPU has no bf16 dot products (avx512_bf16)")

WORDS = 6


def _bf16(x: np.ndarray) -> np.ndarray:
    """float32 rounded to bfloat16 (nearest even) and back: what the fast path's products see."""
    b = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return (((b + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)


def _near_ties(n: int, seed: int) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """Two sources whose features lie near their first word, with a second word a hair away from the first
    (score gaps ~1e-4, under bf16's rounding of ~1e-3), a tenth of the rows unseen by one source, 2 % by both
    (filled from 4 shown elements)."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, torch.Tensor] = {}
    texts = []
    seen_any = np.zeros(n, bool)
    for i in range(2):
        t = rng.standard_normal((WORDS + 4, 64)).astype(np.float32)
        t[1] = t[0] + 2e-4 * rng.standard_normal(64).astype(np.float32)  # word 1: a hair from word 0
        t /= np.linalg.norm(t, axis=1, keepdims=True)
        texts.append(torch.from_numpy(t))
        f = t[0] + 0.7 * rng.standard_normal((n, 64)).astype(np.float32) / 8
        f /= np.linalg.norm(f, axis=1, keepdims=True)
        f[rng.random(n) < 0.1] = 0.0
        f[: n // 50] = 0.0
        tensors[f"source{i}.features"] = torch.from_numpy(f.astype(np.float16))
        seen_any |= np.abs(f).sum(axis=1) > 0
    unseen, shown = np.flatnonzero(~seen_any), np.flatnonzero(seen_any)
    tensors["unseen"] = torch.from_numpy(unseen.astype(np.int32))
    tensors["fill"] = torch.from_numpy(shown[rng.integers(0, len(shown), (len(unseen), 4))].astype(np.int32))
    tensors["sample"] = torch.arange(0, n, 3, dtype=torch.int32)
    return tensors, texts


def _chain(n: int, seed: int):  # type: ignore[no-untyped-def]
    """A graph linking each element to the next two, random affinities and coverage (spreading.py's operator)."""
    rng = np.random.default_rng(seed)
    pairs = np.concatenate([np.stack([np.arange(n - d), np.arange(d, n)], axis=1) for d in (1, 2)]).astype(np.int32)
    weights = torch.from_numpy(rng.uniform(0.1, 1.0, len(pairs)).astype(np.float32))
    coverage = torch.from_numpy(rng.uniform(0.1, 2.0, n).astype(np.float32))
    return spreading(torch.from_numpy(pairs), weights, coverage)


@pytest.mark.parametrize("mode", ["capability", "average", "source"])
@pytest.mark.parametrize("other", [False, True])
@pytest.mark.parametrize("step", [False, True])
def test_labels_equal_the_exact_path_where_bf16_alone_flips_them(mode: str, other: bool, step: bool) -> None:
    n = 4001
    tensors, texts = _near_ties(n, seed=7)
    packed = pack(tensors, 2)
    table = text_table(texts, packed.channels)
    cap = np.random.default_rng(2).random((2, WORDS)).astype(np.float32)
    keys = {"mode": mode, "source": 1, "capability": cap, "fill": packed.fill, "other": other, "relevancy": True}
    spread = _chain(n, seed=3) if step else None
    exact = label_elements(packed.rows, packed.seen, table, WORDS, **keys, spread=spread, exact=True)
    fast = label_elements(packed.rows, packed.seen, table, WORDS, **keys, spread=spread, fast=packed.fast)
    # on purpose: source 1's plain bf16 argmax differs from its exact one on some shown elements
    f = tensors["source1.features"].float().numpy()
    shown = np.abs(f).sum(axis=1) > 0
    bf = (_bf16(f) @ _bf16(texts[1].numpy()[:WORDS]).T).argmax(axis=1)
    flips = int((bf != (f @ texts[1].numpy()[:WORDS].T).argmax(axis=1))[shown].sum())
    assert flips >= 10
    assert fast.redone >= 10  # the fallback fired
    np.testing.assert_array_equal(fast.labels, exact.labels)
    assert (exact.labels == 1).sum() > 100 and (exact.labels == 0).sum() > 100  # both tied words are answers
    # scores and relevancy: within the bound (sigmoid's slope ≤ 10/4 times twice the scores' bound)
    assert np.abs(fast.relevancy - exact.relevancy).max() <= 10 / 4 * 2 * 2 * EPS
    assert np.abs(fast.scores - exact.scores).max() <= 10 / 4 * 2 * 2 * EPS


def test_far_apart_words_need_no_fallback() -> None:
    """Where every decision has a margin over the bound, nothing is redone and the labels are the same."""
    tensors, texts = _near_ties(2000, seed=4)
    for t in texts:
        t[1] = -t[0]  # the tied word now points away
    packed = pack(tensors, 2)
    table = text_table(texts, packed.channels)
    cap = np.ones((2, WORDS), np.float32)
    fast = label_elements(packed.rows, packed.seen, table, WORDS, capability=cap, fill=packed.fill)
    exact = label_elements(packed.rows, packed.seen, table, WORDS, capability=cap, fill=packed.fill, exact=True)
    assert fast.redone == 0
    np.testing.assert_array_equal(fast.labels, exact.labels)


def test_narrow_rounds_to_nearest_even_and_bounds_the_norms() -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((37, 2 * 64)) / 8).astype(np.float16)
    x[3, 5] = np.float16(1 + 2**-8)  # exactly between two bf16 values: to the even one, 1.0
    x[3, 6] = np.float16(1 + 3 * 2**-8)  # between 1 + 2^-7 and 1 + 2^-6: to the even one, 1 + 2^-6
    got = narrow(np.ascontiguousarray(x.view(np.int16)), 2)
    assert got is not None
    halves = got.pairs.view(np.uint16).reshape(37, 128)  # little-endian: channel 2k in the low half
    np.testing.assert_array_equal(halves.astype(np.uint32) << 16, _bf16(x.astype(np.float32)).view(np.uint32))
    assert halves[3, 5] == 0x3F80 and halves[3, 6] == 0x3F82
    wide = x.astype(np.float64).reshape(37, 2, 64)
    lost = wide - _bf16(x.astype(np.float32)).astype(np.float64).reshape(37, 2, 64)
    for got_norm, true in zip(got.norms, (np.linalg.norm(wide, axis=2).T, np.linalg.norm(lost, axis=2).T), strict=True):
        assert (got_norm >= true).all() and (got_norm <= true * (1 + 1e-5)).all()
    assert (got.norms[1] < 2.0**-8 * got.norms[0]).all()  # the residual: under half a bf16 ulp per component


def test_evidence_weighs_each_source_capability_sum() -> None:
    """Two sources, two words: A says word 1, B word 0. A's capability sum 0.1 + 0.2 and B's 0.9 + 0.8, times
    the evidence (1.0 for A, 0.1 for B) before the normalisation: then A dominates at T = 0.05."""
    a, b = np.array([[0.25, 0.875, 0.0]]), np.array([[0.75, 0.25, 0.0]])
    rows = np.ascontiguousarray(
        np.concatenate([a.astype(np.float16).view(np.int16), b.astype(np.float16).view(np.int16)], axis=1)
    )
    seen = np.array([3], np.uint8)
    eye = np.stack([np.eye(3, dtype=np.float32)] * 2)
    cap = np.array([[0.1, 0.2], [0.9, 0.8]], np.float32)
    evidence = np.array([[1.0], [0.1]], np.float32)
    fused = fused_scores(rows, seen, eye, 2, capability=cap, evidence=evidence)
    weight = np.array([0.3 * 1.0, 1.7 * 0.1])
    soft = torch.softmax(torch.tensor(weight / weight.sum()) / 0.05, dim=0).numpy()
    np.testing.assert_allclose(fused, soft[0] * a + soft[1] * b, rtol=1e-5)
    assert label_elements(rows, seen, eye, 2, capability=cap, evidence=evidence).labels[0] == 1
    assert label_elements(rows, seen, eye, 2, capability=cap).labels[0] == 0
