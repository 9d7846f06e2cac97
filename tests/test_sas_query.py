"""SAS's label query kernel (`segany.kernels.labels`) against the torch rule it replaced, kept here as the
reference: random features with unseen elements, `other`, one source, two and three sources, sources of
different widths, relevancy on and off; and the 3D step on the frontier only against the step everywhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segany.errors import SegAnyError
from segany.kernels.labels import Neighbours, fused_scores, label_elements
from segany.methods.sas.fusion import consensus, pack, text_table

RELEVANCY_SCALE = 10.0


def reference_fuse(scores, seen, capability, n_words, temperature):  # type: ignore[no-untyped-def]
    """The torch fusion rule as the query ran it before the kernel (an (S, S, N) gather of capabilities)."""
    seen_all = torch.stack(seen)
    preds = torch.stack([s[:, :n_words].argmax(dim=1) for s in scores])
    weight = (capability[:, preds] * seen_all[None].to(torch.float32)).sum(dim=1)
    total = weight.sum(dim=0, keepdim=True)
    weight = torch.where(total > 0, weight / total.clamp_min(1e-30), torch.full_like(weight, 1.0 / len(scores)))
    logits = torch.where(seen_all, weight / temperature, torch.full_like(weight, -torch.inf))
    soft = torch.softmax(logits, dim=0).nan_to_num(0.0)
    fused = scores[0] * soft[0, :, None]
    for s in range(1, len(scores)):
        fused.addcmul_(scores[s], soft[s, :, None])
    return fused


def reference_average(scores, seen):  # type: ignore[no-untyped-def]
    stacked = torch.stack(scores)
    seen_all = torch.stack(seen).to(stacked.dtype)
    return (stacked * seen_all[:, :, None]).sum(dim=0) / seen_all.sum(dim=0).clamp_min(1.0)[:, None]


def reference_answer(fused, n_words, other):  # type: ignore[no-untyped-def]
    words, negatives = fused[:, :n_words], fused[:, n_words:]
    worst = negatives.max(dim=1).values
    relevancy = torch.sigmoid(RELEVANCY_SCALE * (words - worst[:, None]))
    best, labels = words.max(dim=1)
    if other:
        labels = torch.where(worst > best, -1, labels)
    score = torch.where(labels >= 0, relevancy.gather(1, labels.clamp_min(0)[:, None])[:, 0], 0.0)
    return labels.to(torch.int32).numpy(), score.numpy(), relevancy.numpy()


def _state(n: int, widths: list[int], k: int, seed: int) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """State tensors as SAS's prepare stores them: fp16 features (a tenth of the rows zero per source, some
    zero in every source: unseen, filled from 4 shown elements) and per source unit text rows (k, C_i)."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, torch.Tensor] = {}
    seen_any = np.zeros(n, bool)
    for i, c in enumerate(widths):
        f = rng.standard_normal((n, c)).astype(np.float32)
        f /= np.linalg.norm(f, axis=1, keepdims=True)
        f[rng.random(n) < 0.1] = 0.0
        f[: n // 50] = 0.0  # the first 2 % nobody saw
        tensors[f"source{i}.features"] = torch.from_numpy(f.astype(np.float16))
        seen_any |= np.abs(f).sum(axis=1) > 0
    unseen, shown = np.flatnonzero(~seen_any), np.flatnonzero(seen_any)
    order = rng.permutation(len(unseen))  # in no particular order
    tensors["unseen"] = torch.from_numpy(unseen[order].astype(np.int32))
    tensors["fill"] = torch.from_numpy(shown[rng.integers(0, len(shown), (len(unseen), 4))].astype(np.int32))
    tensors["sample"] = torch.from_numpy(np.sort(rng.choice(n, n // 3, replace=False)).astype(np.int32))
    texts = []
    for c in widths:
        t = torch.from_numpy(rng.standard_normal((k, c)).astype(np.float32))
        texts.append(torch.nn.functional.normalize(t, dim=1))
    return tensors, texts


def _reference(tensors, texts, n_words, mode, source, capability, temperature, other):  # type: ignore[no-untyped-def]
    n_sources = len(texts)
    feats = [tensors[f"source{i}.features"].float() for i in range(n_sources)]
    seen = [f.abs().sum(dim=1) > 0 for f in feats]
    scores = [f @ t.T for f, t in zip(feats, texts, strict=True)]
    if mode == "source":
        fused = scores[source].clone()
    elif mode == "average":
        fused = reference_average(scores, seen)
    else:
        fused = reference_fuse(scores, seen, torch.from_numpy(capability), n_words, temperature)
    unseen, fill = tensors["unseen"].long(), tensors["fill"].long()
    fused[unseen] = fused[fill].mean(dim=1)
    return fused, reference_answer(fused, n_words, other)


CASES = [
    ("capability", [64, 64], 20, False),
    ("capability", [64, 64], 20, True),
    ("average", [64, 64], 20, False),
    ("source", [64, 64], 20, True),
    ("capability", [64], 5, False),  # one source
    ("capability", [48, 64, 17], 13, True),  # three sources of different widths, 17 columns (not whole vectors)
    ("capability", [64, 64], 60, False),  # 64 columns: more than one tile of 24
]


@pytest.mark.parametrize(("mode", "widths", "n_words", "other"), CASES)
def test_kernel_answers_as_the_torch_rule(mode: str, widths: list[int], n_words: int, other: bool) -> None:
    n, k = 3001, n_words + 4  # not a multiple of 8 rows nor of a block
    tensors, texts = _state(n, widths, k, seed=len(widths) * 100 + n_words)
    capability = np.random.default_rng(1).random((len(widths), n_words)).astype(np.float32)
    source = len(widths) - 1
    fused, (labels, score, relevancy) = _reference(tensors, texts, n_words, mode, source, capability, 0.05, other)
    packed = pack(tensors, len(widths))
    table = text_table(texts, packed.channels)
    keys = {"mode": mode, "source": source, "capability": capability, "temperature": 0.05}
    keys["fill"] = packed.fill
    got = label_elements(packed.rows, packed.seen, table, n_words, **keys, other=other, relevancy=True)
    # fp rounding only: the kernel sums products in another order and its exp is a polynomial (2 ulp)
    near_tie = np.sort(fused[:, :n_words].numpy(), axis=1)[:, -2:].ptp(axis=1) < 1e-5
    assert (got.labels == labels)[~near_tie].all() and (got.labels != labels).sum() <= near_tie.sum()
    np.testing.assert_allclose(got.scores, score, atol=2e-5)
    np.testing.assert_allclose(got.relevancy, relevancy, atol=2e-5)
    if other:
        assert (labels == -1).any()
    quiet = label_elements(packed.rows, packed.seen, table, n_words, **keys, other=other)
    assert quiet.relevancy is None
    np.testing.assert_array_equal(quiet.labels, got.labels)
    whole = fused_scores(packed.rows, packed.seen, table, n_words, **keys)
    np.testing.assert_allclose(whole, fused.numpy(), atol=2e-5)


def _graph(key: np.ndarray, seed: int) -> tuple[Neighbours, np.ndarray, np.ndarray]:
    """A random graph as spreading.py builds it, with its dense P and own shares: each element linked to 3
    random elements of its own key (regions, as parts make them) and half of them to any element, so that
    some elements have neighbours of other keys and some not; the last 20 elements have no link."""
    from segany.methods.sas.spreading import spreading

    rng = np.random.default_rng(seed)
    n = len(key)
    order = np.argsort(key[: n - 20], kind="stable")
    sorted_key = key[order]
    start = np.searchsorted(sorted_key, sorted_key, side="left")
    size = np.searchsorted(sorted_key, sorted_key, side="right") - start
    same = order[start[:, None] + (rng.random((n - 20, 3)) * size[:, None]).astype(np.int64)]
    pairs = np.concatenate(
        [np.stack([np.repeat(order, 3), same.ravel()], axis=1), rng.integers(0, n - 20, (n // 2, 2))]
    )
    pairs = np.unique(np.sort(pairs[pairs[:, 0] != pairs[:, 1]], axis=1), axis=0)
    weights = rng.uniform(0.01, 1.0, len(pairs)).astype(np.float32)
    coverage = np.where(rng.random(n) < 0.2, 0.0, rng.uniform(0.1, 2.0, n)).astype(np.float32)
    op = spreading(torch.as_tensor(pairs.astype(np.int32)), torch.as_tensor(weights), torch.as_tensor(coverage))
    p = np.zeros((n, n))
    p[np.repeat(np.arange(n), np.diff(op.indptr)), op.indices] = op.weights
    return op, p, op.own.astype(np.float64)[:, None]


@pytest.mark.parametrize(("mode", "widths", "n_words", "other"), CASES)
def test_3d_step_on_the_frontier_labels_as_the_step_everywhere(
    mode: str, widths: list[int], n_words: int, other: bool
) -> None:
    """The step on the elements with a neighbour of another key against the step on every element (dense, in
    float64, from the reference's fused scores): the same labels but at near-ties; a frontier element's score
    is its spread score's, an element whose neighbours all agree keeps its own score."""
    n, k = 1501, n_words + 4
    tensors, texts = _state(n, widths, k, seed=len(widths) * 10 + n_words)
    capability = np.random.default_rng(3).random((len(widths), n_words)).astype(np.float32)
    fused, (own_labels, own_score, own_rel) = _reference(
        tensors, texts, n_words, mode, len(widths) - 1, capability, 0.05, other
    )
    key = np.where(own_labels >= 0, own_labels, n_words + fused[:, n_words:].argmax(dim=1).numpy())
    if not other:
        key = fused[:, :n_words].argmax(dim=1).numpy()
    op, p, own = _graph(key, seed=n_words)
    spread = own * fused.double().numpy() + (1 - own) * p @ fused.double().numpy()
    labels, score, relevancy = reference_answer(torch.from_numpy(spread), n_words, other)
    packed = pack(tensors, len(widths))
    keys = {"mode": mode, "source": len(widths) - 1, "capability": capability, "temperature": 0.05}
    table = text_table(texts, packed.channels)
    got = label_elements(packed.rows, packed.seen, table, n_words, **keys, fill=packed.fill, other=other,
                         relevancy=True, spread=op)  # fmt: skip
    top2 = np.sort(spread[:, :n_words], axis=1)[:, -2:]
    near_tie = (top2[:, 1] - top2[:, 0] < 1e-4) | (np.abs(spread[:, n_words:].max(axis=1) - top2[:, 1]) < 1e-4)
    assert (labels != own_labels).sum() >= 10  # the step changes labels here
    assert (got.labels == labels)[~near_tie].all()
    # the frontier: an element with a neighbour of another key
    rows = np.repeat(np.arange(n), np.diff(op.indptr))
    frontier = np.zeros(n, bool)
    frontier[rows[key[rows] != key[op.indices]]] = True
    assert 0.05 < frontier.mean() < 0.95
    np.testing.assert_allclose(got.scores[frontier], score[frontier], atol=1e-4)
    np.testing.assert_allclose(got.relevancy[frontier], relevancy[frontier], atol=1e-4)
    np.testing.assert_allclose(got.scores[~frontier], own_score[~frontier], atol=2e-5)
    np.testing.assert_allclose(got.relevancy[~frontier], own_rel[~frontier], atol=2e-5)
    assert (got.labels[~frontier] == own_labels[~frontier]).mean() > 0.999


def test_consensus_is_the_sources_mean_argmax_on_the_sample() -> None:
    tensors, texts = _state(2000, [64, 32], 9, seed=3)
    packed = pack(tensors, 2)
    feats = [tensors[f"source{i}.features"].float() for i in range(2)]
    seen = [f.abs().sum(dim=1) > 0 for f in feats]
    sample = tensors["sample"].long()
    mean = reference_average([(f @ t.T)[sample] for f, t in zip(feats, texts, strict=True)], [s[sample] for s in seen])
    want = torch.where(torch.stack(seen)[:, sample].any(dim=0), mean[:, :5].argmax(dim=1), -1).numpy()
    got = consensus(packed, text_table(texts, packed.channels), 5)
    assert (got == -1).any()
    np.testing.assert_array_equal(got, want)


def _identity(scores: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hand-made per-source scores as features against identity texts, so the kernel sees them as they are."""
    k = scores[0].shape[1]
    rows = np.concatenate([s.astype(np.float16).view(np.int16) for s in scores], axis=1)
    seen = np.zeros(len(rows), np.uint8)
    for i, s in enumerate(scores):
        seen |= (np.abs(s).sum(axis=1) > 0).astype(np.uint8) << i
    return np.ascontiguousarray(rows), seen, np.stack([np.eye(k, dtype=np.float32)] * len(scores))


def test_fusion_follows_sas_rule() -> None:
    """Two sources, two words (+ a negative): A says word 1, B says word 0 at the element. A's weight is its
    capability for both candidates (0.2 + 0.1), B's (0.9 + 0.8); normalised and sharpened at T = 0.05, B
    dominates; a high temperature is the plain average."""
    a, b = np.array([[0.25, 0.875, 0.0]]), np.array([[0.75, 0.25, 0.0]])  # exact in fp16
    rows, seen, eye = _identity([a, b])
    cap = np.array([[0.1, 0.2], [0.9, 0.8]], np.float32)
    fused = fused_scores(rows, seen, eye, 2, capability=cap, temperature=0.05)
    soft = torch.softmax(torch.tensor([0.3 / 2.0, 1.7 / 2.0]) / 0.05, dim=0).numpy()
    np.testing.assert_allclose(fused, soft[0] * a + soft[1] * b, rtol=1e-5)
    assert label_elements(rows, seen, eye, 2, capability=cap).labels[0] == 0
    flat = fused_scores(rows, seen, eye, 2, capability=cap, temperature=1e6)
    np.testing.assert_allclose(flat, fused_scores(rows, seen, eye, 2, mode="average"), rtol=1e-5)


def test_fusion_skips_a_source_that_did_not_see_the_element() -> None:
    a = np.array([[0.875, 0.125, 0.0], [0.0, 0.0, 0.0]])
    b = np.array([[0.125, 0.875, 0.0], [0.25, 0.75, 0.0]])
    rows, seen, eye = _identity([a, b])
    cap = np.array([[0.1, 0.1], [1.0, 1.0]], np.float32)  # B is better everywhere
    np.testing.assert_allclose(fused_scores(rows, seen, eye, 2, capability=cap)[1], b[1], rtol=1e-6)
    np.testing.assert_allclose(fused_scores(rows, seen, eye, 2, mode="average")[1], b[1], rtol=1e-6)
    nobody = fused_scores(rows, np.zeros(2, np.uint8), eye, 2, capability=cap)
    assert (nobody == 0).all()


def test_queries_from_several_threads_answer_alike() -> None:
    """Queries run on their callers' threads (the server's): concurrent calls give the serial answers."""
    from concurrent.futures import ThreadPoolExecutor

    tensors, texts = _state(5000, [64, 64], 24, seed=5)
    packed = pack(tensors, 2)
    table = text_table(texts, packed.channels)
    capability = np.random.default_rng(2).random((2, 20)).astype(np.float32)

    def ask(_: int) -> np.ndarray:
        return label_elements(packed.rows, packed.seen, table, 20, capability=capability, fill=packed.fill).labels

    serial = ask(0)
    with ThreadPoolExecutor(4) as pool:
        for got in pool.map(ask, range(8)):
            np.testing.assert_array_equal(got, serial)


def test_evidence_weighs_each_source_capability_sum() -> None:
    """Two sources, two words: A says word 1, B word 0. A's capability sum 0.1 + 0.2 and B's 0.9 + 0.8, times
    the evidence (1.0 for A, 0.1 for B) before the normalisation: then A dominates at T = 0.05."""
    a, b = np.array([[0.25, 0.875, 0.0]]), np.array([[0.75, 0.25, 0.0]])  # exact in fp16
    rows, seen, eye = _identity([a, b])
    cap = np.array([[0.1, 0.2], [0.9, 0.8]], np.float32)
    evidence = np.array([[1.0], [0.1]], np.float32)
    fused = fused_scores(rows, seen, eye, 2, capability=cap, evidence=evidence)
    weight = np.array([0.3 * 1.0, 1.7 * 0.1])
    soft = torch.softmax(torch.tensor(weight / weight.sum()) / 0.05, dim=0).numpy()
    np.testing.assert_allclose(fused, soft[0] * a + soft[1] * b, rtol=1e-5)
    assert label_elements(rows, seen, eye, 2, capability=cap, evidence=evidence).labels[0] == 1
    assert label_elements(rows, seen, eye, 2, capability=cap).labels[0] == 0
    with pytest.raises(SegAnyError, match="evidence"):
        label_elements(rows, seen, eye, 2, capability=cap, evidence=np.ones((2, 5), np.float32))


def test_threads_and_the_reused_step_buffer_answer_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    """A scene above SERIAL_ROWS runs on numba's threads, one below on one thread: the same answers (blocks are
    independent). The 3D step's fused scores live in a buffer kept between queries: a query of another size
    in between changes nothing, and `fused_scores` hands back its own copy."""
    from segany.kernels import labels
    from segany.methods.sas.spreading import spreading

    n = labels.SERIAL_ROWS + 1000
    tensors, texts = _state(n, [64, 32], 24, seed=11)
    packed = pack(tensors, 2)
    table = text_table(texts, packed.channels)
    capability = np.random.default_rng(4).random((2, 20)).astype(np.float32)
    rng = np.random.default_rng(5)
    pairs = rng.integers(0, n, (4 * n, 2))
    pairs = np.unique(np.sort(pairs[pairs[:, 0] != pairs[:, 1]], axis=1), axis=0).astype(np.int32)
    weights = torch.as_tensor(rng.uniform(0.01, 1.0, len(pairs)).astype(np.float32))
    op = spreading(torch.as_tensor(pairs), weights, torch.as_tensor(rng.uniform(0.1, 2.0, n).astype(np.float32)))

    def ask() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        got = label_elements(packed.rows, packed.seen, table, 20, capability=capability, fill=packed.fill,
                             other=True, relevancy=True, spread=op)  # fmt: skip
        return got.labels, got.scores, got.relevancy

    threaded = ask()
    fused = fused_scores(packed.rows, packed.seen, table, 20, capability=capability, fill=packed.fill)
    kept = fused.copy()
    small, small_texts = _state(3000, [64, 64], 9, seed=12)
    small_packed = pack(small, 2)
    inside = pairs.max(axis=1) < 3000
    small_op = spreading(torch.as_tensor(pairs[inside]), weights[inside], torch.ones(3000))
    label_elements(small_packed.rows, small_packed.seen, text_table(small_texts, 64), 5, mode="average",
                   fill=small_packed.fill, spread=small_op)  # fmt: skip
    np.testing.assert_array_equal(fused, kept)
    for got, want in zip(ask(), threaded, strict=True):
        np.testing.assert_array_equal(got, want)
    monkeypatch.setattr(labels, "SERIAL_ROWS", n + 1)
    for got, want in zip(ask(), threaded, strict=True):
        np.testing.assert_array_equal(got, want)
