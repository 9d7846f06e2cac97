"""One SA3D query: a 2D mask from the clicks in the best view, then mask propagation across the others.

View order: the clicked view first, then the others by increasing angle to it, so each self-prompt
comes from a 3D mask already lifted from nearby views. A view's prior mask is kept only when its IoU
with the rendered 3D mask reaches the threshold (SA3D's rejection of inconsistent 2D answers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ... import deadline
from ...priors import Prior
from ...render import Renders
from .lifting import MaskVotes, element_pixels, membership_threshold, render_values
from .prompts import iou, self_prompts

FIRST_VIEW_TRIES = 3  # views tried, most visible first, until the prior answers the clicks with a mask
FILL_NEIGHBOURS = 8  # unseen elements take the mean confidence of this many nearest seen ones


@dataclass(frozen=True)
class Settings:
    """The query-time knobs of SA3D (chosen at prepare, stored with the state)."""

    prompts: int  # self-prompt points per view
    iou_threshold: float  # a view's 2D mask is rejected below this IoU with the rendered 3D mask
    negative_weight: float  # λ of SA3D's loss: how much weight outside the masks pushes an element out
    mask: str  # which of the prior's candidates answers the clicks: "best", "smallest" or "largest"
    fill_hidden: bool  # elements no view shows take their nearest seen neighbours' confidence


@dataclass
class Result:
    scores: np.ndarray  # (N,) float32 confidence in [0, 1]
    threshold: float
    accepted: np.ndarray  # (A,) int32 views whose masks were lifted, in order
    rejected: np.ndarray  # (R,) int32 views whose masks failed the IoU test


class Segmenter:
    """What queries on one captured scene share: the capture, element positions, the seen elements."""

    def __init__(self, capture: Renders, positions: np.ndarray) -> None:
        self.capture = capture
        self.positions = np.asarray(positions, dtype=np.float64)
        ids = capture.contrib_ids
        self.shown = np.bincount(ids[ids >= 0], minlength=len(self.positions)) > 0
        self._tree: cKDTree | None = None

    def visible_element(self, element: int) -> int:
        """The element itself when some view shows it, else the nearest element that is shown."""
        if self.shown[element]:
            return element
        seen = np.flatnonzero(self.shown)
        if self._tree is None:
            self._tree = cKDTree(self.positions[seen])
        return int(seen[self._tree.query(self.positions[element])[1]])

    def run(self, prior: Prior, elements: np.ndarray, positive: np.ndarray, settings: Settings) -> Result:
        n = len(self.positions)
        threshold = membership_threshold(settings.negative_weight)
        empty = np.zeros(0, dtype=np.int32)
        if not positive.any() or not self.shown.any():
            return Result(np.zeros(n, dtype=np.float32), threshold, empty, empty)
        cap = self.capture
        clicks = [(self.visible_element(int(e)), bool(p)) for e, p in zip(elements, positive, strict=True)]
        where = {e: element_pixels(cap.contrib_ids, cap.contrib_weights, e) for e, _ in clicks}
        votes = MaskVotes(n)
        first = self._first_view(prior, clicks, where, settings, votes)
        if first < 0:
            return Result(np.zeros(n, dtype=np.float32), threshold, empty, empty)
        forward = cap.views.cameras.viewmats[:, 2, :3].astype(np.float64)
        order = np.argsort(-(forward @ forward[first]), kind="stable")
        negatives = np.array([e for e, p in clicks if not p] + elements[~positive].tolist(), dtype=np.int64)
        accepted, rejected = [first], []
        for view in order:
            deadline.check()  # once per view: a query's deadline (or its client leaving) stops the sweep
            if view == first:
                continue
            conf = votes.confidence()
            conf[negatives] = 0.0
            member = (conf > threshold).astype(np.float64)
            rendered = render_values(cap.contrib_ids[view], cap.contrib_weights[view], cap.alpha[view], member)
            points = self_prompts(rendered - 0.5, cap.views.depth[view], settings.prompts)
            if len(points) == 0:
                continue
            pts, labels = self._click_prompts(clicks, where, int(view))
            answer = prior.prompt(
                cap.views, int(view), np.concatenate([points, pts]), np.concatenate([np.ones(len(points)), labels])
            )
            mask = _pick(answer.masks, answer.scores, settings.mask)
            if iou(mask, rendered > 0.5) < settings.iou_threshold:
                rejected.append(int(view))
                continue
            votes.add(cap.contrib_ids[view], cap.contrib_weights[view], mask)
            accepted.append(int(view))
        scores = votes.confidence()
        if settings.fill_hidden:
            scores = self._fill_hidden(scores, votes.total > 0)
        scores[negatives] = 0.0
        return Result(
            scores.astype(np.float32),
            threshold,
            np.asarray(accepted, dtype=np.int32),
            np.asarray(rejected, dtype=np.int32),
        )

    def _fill_hidden(self, scores: np.ndarray, seen: np.ndarray) -> np.ndarray:
        """Give elements that no captured view shows (inside the object) the mean confidence of their
        nearest elements seen in accepted views, so a selection is a solid object rather than a shell.

        Elements shown only in rejected views keep 0: there is evidence about them, none of it accepted.
        Not part of SA3D (there hidden Gaussians keep their initial mask value, out); a SegAny choice.
        """
        hidden = ~self.shown
        if not hidden.any() or not seen.any():
            return scores
        k = min(FILL_NEIGHBOURS, int(seen.sum()))
        _, idx = cKDTree(self.positions[seen]).query(self.positions[hidden], k=k)
        out = scores.copy()
        out[hidden] = scores[seen][idx.reshape(len(idx), -1)].mean(axis=1)
        return out

    def _click_prompts(self, clicks: list[tuple[int, bool]], where: dict, view: int) -> tuple[np.ndarray, np.ndarray]:
        """The clicks whose element is the front contributor in `view`, as pixel prompts and labels."""
        pts, labels = [], []
        for e, pos in clicks:
            pix, _, front = where[e]
            if front[view]:
                pts.append(pix[view] + 0.5)
                labels.append(1.0 if pos else 0.0)
        return np.asarray(pts, dtype=np.float64).reshape(-1, 2), np.asarray(labels, dtype=np.float64)

    def _first_view(
        self, prior: Prior, clicks: list[tuple[int, bool]], where: dict, settings: Settings, votes: MaskVotes
    ) -> int:
        """Prompt the view that shows the first positive click best; lift its mask. -1 when no view answers."""
        lead = next(e for e, p in clicks if p)
        _, weight, front = where[lead]
        order = np.lexsort((-weight, ~front))
        cap = self.capture
        for view in order[:FIRST_VIEW_TRIES]:
            if weight[view] <= 0:
                break
            pts, labels = self._click_prompts(clicks, where, int(view))
            if not front[view]:  # the element shows but never in front: click its strongest pixel anyway
                pts = np.concatenate([where[lead][0][view][None] + 0.5, pts])
                labels = np.concatenate([[1.0], labels])
            answer = prior.prompt(cap.views, int(view), pts, labels)
            mask = _pick(answer.masks, answer.scores, settings.mask)
            if mask.any():
                votes.add(cap.contrib_ids[view], cap.contrib_weights[view], mask)
                return int(view)
        return -1


def _pick(masks: np.ndarray, scores: np.ndarray, rule: str) -> np.ndarray:
    """The candidate answering the user's clicks: the prior's best-scored, or its smallest / largest non-empty."""
    nonempty = [i for i in range(len(masks)) if masks[i].any()]
    if not nonempty:
        return masks[0]
    if rule == "best":
        return masks[max(nonempty, key=lambda i: (float(scores[i]), -i))]
    area = [int(masks[i].sum()) for i in nonempty]
    return masks[nonempty[int(np.argmin(area) if rule == "smallest" else np.argmax(area))]]
