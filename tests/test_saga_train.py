"""SAGA's training step pieces against their plain definitions: the pair loss, the pixel blend with the KNN
smoothing folded in, and the row-wise ("lazy") Adam. Each fast form must give the same numbers as the
obvious slow one, gradients included."""

from __future__ import annotations

import torch

from segany.methods.saga.train import PixelBlend, RowAdam, blended, correspondence_loss, smoothed


def pairwise_loss(features: torch.Tensor, gates: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
    """The loss as the training module's docstring states it, over the (S, P, P) pairs."""
    h = torch.nn.functional.normalize(features[None] * gates[:, None], dim=-1)
    sim = h @ h.transpose(1, 2)
    a, b = parts[:, :, None], parts[:, None, :]
    same = (a == b) & (a >= 0)
    same.diagonal(dim1=1, dim2=2).fill_(False)
    differ = a != b  # one of them may have no part; both without one count as equal, so are left out
    pull = ((1 - sim) * same).sum() / max(int(same.sum()), 1)
    return pull + (torch.relu(sim) * differ).sum() / max(int(differ.sum()), 1)


def test_the_loss_and_its_gradient_match_the_pairwise_definition() -> None:
    gen = torch.Generator().manual_seed(0)
    for parts_hi in (1, 4, 30):  # one part, a few, mostly singletons
        features = torch.randn(48, 6, dtype=torch.float64, generator=gen, requires_grad=True)
        gates = torch.rand(3, 6, dtype=torch.float64, generator=gen, requires_grad=True)
        parts = torch.randint(-1, parts_hi, (3, 48), generator=gen)
        fast, slow = correspondence_loss(features, gates, parts), pairwise_loss(features, gates, parts)
        assert fast is not None
        torch.testing.assert_close(fast, slow)
        for g_fast, g_slow in zip(
            torch.autograd.grad(fast, [features, gates]), torch.autograd.grad(slow, [features, gates]), strict=True
        ):
            torch.testing.assert_close(g_fast, g_slow)


def test_the_loss_is_none_when_no_pixel_has_a_part() -> None:
    assert correspondence_loss(torch.randn(5, 4), torch.rand(2, 4), torch.full((2, 5), -1)) is None


def test_the_blend_is_the_weighted_sum_of_smoothed_contributors() -> None:
    gen = torch.Generator().manual_seed(1)
    n, k, p = 40, 3, 12
    near = torch.cat([torch.arange(n)[:, None], torch.randint(0, n, (n, 5), generator=gen)], dim=1)
    ids = torch.randint(0, n, (30, k), generator=gen)
    weights = torch.rand(30, k, generator=gen)
    features = torch.randn(n, 4, generator=gen)
    pix, half = torch.randperm(30, generator=gen)[:p], torch.tensor([0, 2, 5])
    blend = PixelBlend(ids, weights, near)
    for _ in range(2):  # the marking buffer must be clean for the next step
        rows, mix = blend(pix, half)
        assert rows.unique().tolist() == rows.tolist() and set(rows.tolist()) == set(
            near[ids[pix]][:, :, half].flatten().tolist()
        )
        got = mix @ torch.nn.functional.normalize(features[rows], dim=-1)
        want = (weights[pix, :, None] * smoothed(features, near[ids[pix]][:, :, half])).sum(1)
        torch.testing.assert_close(got, want)
        unit = torch.randn(len(rows), 4, generator=gen, requires_grad=True)
        out = torch.randn(p, 4, generator=gen)
        (grad,) = torch.autograd.grad((blended(mix, unit) * out).sum(), unit)
        (torch_grad,) = torch.autograd.grad((mix @ unit * out).sum(), unit)  # torch's own CSR gradient
        torch.testing.assert_close(grad, torch_grad)


def test_row_adam_is_adam_on_the_rows_it_reads_and_leaves_the_others() -> None:
    gen = torch.Generator().manual_seed(2)
    start = torch.randn(10, 3, generator=gen)
    reference = torch.nn.Parameter(start[:6].clone())
    adam = torch.optim.Adam([reference], lr=0.05)
    rows = RowAdam(start.clone(), lr=0.05)
    read = torch.arange(6)
    for _ in range(5):
        grad = torch.randn(6, 3, generator=gen)
        reference.grad = grad.clone()
        adam.step()
        block, values = rows.read(read)
        torch.testing.assert_close(values, block[:, 0])
        rows.step(read, block, grad)
    torch.testing.assert_close(rows.table[:6], reference.detach())
    assert torch.equal(rows.table[6:], start[6:])
