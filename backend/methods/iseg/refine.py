"""Crease refinement: the decoder's answer snapped to the mesh's concave creases, every click kept.

iSeg's decoder answers with what the 2D prior taught it. With SAM that is a part; with a weight-free
prior it is a soft region whose edge wanders across faces, and the decoder, trained on one or two
clicks, answers later clicks weakly. This stage walks on the concavity-weighted face graph
(`segany.graphwalk`), where part boundaries cost little to cut:

- first click: the walk from the clicked faces (no pull towards the decoder), then, among its level
  sets holding up to `FIRST_MAX_SHARE` of the surface, the one whose conductance plus `AGREEMENT` ×
  (1 − IoU with the decoder's confident answer, ≥ `CONFIDENT`) plus `RIM_CREASE` × the share of its rim
  off concave creases (`CreaseGraph.rim_crease`) is lowest — the crease-bounded region closest to the
  decoder's answer (a spill at 0.6 onto flat ground is not followed). The rim term is there because the
  geometric prior's masks end where one view stops seeing a part, so its decoder answers a large part only
  in part, and the agreement term alone followed that edge across flat ground (journal, session 12). Conductance alone
  often picks the smallest crease next to the click (a leg's hoof, not the leg); a size cap of half the
  surface, as the baseline has, would leave a cup's body unreachable, and a walk pulled towards the
  decoder's partial answer bent every level set towards it. On separate pieces of the mesh, which no walk
  from the click reaches (a cup's inner wall), the decoder's own answer.
  A loose convex piece under the click (a leg modelled as its own cylinder) is one part and is taken
  whole (`CreaseGraph.convex_piece`): the decoder, trained through views, never sees the far side of a
  convex part together with the click and leaves it out, and a cut along the facets of a thin piece is
  cheap enough for the agreement term to follow that half answer.
  A decoder answer that leaves the clicked faces out (below 0.5 there) answers some other click: then
  conductance alone chooses (the cut around a cup's handle, seen from the body, is the body, which a
  decoder trained on the geometric prior answers with nothing);
- each later click refines the answer to the clicks before it, as an interactive tool keeps its
  selection: a random walk seeded by all clicks (positive 1, negative 0) with the previous answer as a
  weak prior, so each click moves the boundary to the creases between it and the other clicks. A
  positive click only adds and a negative one only takes away (with the walk alone, cutting one chair leg
  off a seat lets the next leg grow back in), the connected piece of that change under the click: whole
  when the click is at its middle and it is compact around the click (`CreaseGraph.asked`), else only within `REACH`
  times the click's distance to the other side of the selection's edge, as on the decoder's path (`CreaseGraph.near`);
  a negative click's piece past that reach only where its walk is decided (below `BEYOND_DECIDED`) or the
  decoder puts it with the click;
- a negative click also takes away the part under it — the geometric first answer to a click there, when
  it holds no positive click, only the faces the decoder's answer to that point holds too
  (`_decoder_part`), and only when the click is at its middle (`CreaseGraph.asked`), whole — except where a
  walk between the clicks alone, its prior a neutral 0.5, leans to the positive clicks (≥ 0.75): a negative
  click on a handle whose crease the sweep misses must not cut the cup body it runs into. The follow walk
  is not used for this: its pull towards the previous answer keeps much of a wrongly selected large part
  after a negative click on it;
- islands a negative click cut off from every positive click are dropped (`drop_cut_islands`);
- a click on a vertex an earlier click gave the other sign takes back at most what that click changed and
  the faces around the vertex (`_clicked_back`), on either path.

Answers to click prefixes are memoised per mesh, so a query stays a pure function of its click list.

With a strong prior the decoder needs none of the crease cuts: trained on the oracle's masks its first
answer beats any walk (docs/methods/iseg.md). A query's default, "auto", refines when the decoder could
not fit its prior's masks — its final training loss (BCE + dice) above `WEAK_PRIOR_LOSS` — which is where
the prior's masks disagree across views: the geometric prior and the noisy oracle, not the clean oracle
(losses per prior in docs/methods/iseg.md) — and always with a prior whose masks are the mesh's shape alone
(`Prior.shape_only`): a decoder that fits those is no better than they are. Unrefined, the first answer is the
decoder's with its ragged edge smoothed along the surface (`_smoothed`), a loose convex piece under the click
taken whole as on the refined path (the decoder cannot see its faces buried in another piece), and later
clicks are still the decoder's, but each only adds or takes away the region under it (`_follow_decoder`): the
decoder's own answer to several clicks, trained on one or two, could undo a near-perfect first answer.

Answers are built one click at a time from the longest memoised prefix (`_answer`), a loop rather than a
recursion, so any number of clicks is answered.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from ... import deadline
from ...graphwalk import AGREEMENT, CONFIDENT, FIRST_MAX_SHARE, FIRST_PULL, FOLLOW_PULL, RIM_CREASE
from ..walk.solve import SeededCreaseGraph

Click = tuple[int, int]
Decode = Callable[..., np.ndarray]  # (clicks, rows=None) → the decoder's probability per vertex (of rows)

MEMO_SIZE = 256
PART_HOLD = 0.75  # a negative click's part stays where the neutral walk is at least this (PSB dev shapes)
WEAK_PRIOR_LOSS = 0.2  # "auto" refines when the decoder's final training loss is above this
REFINED_THRESHOLD = 0.5  # refined scores are area shares of selected faces around each vertex
BEYOND_DECIDED = 0.45  # past its reach a negative click takes only faces its walk holds below this (fitted: PSB 1, 61)
SMOOTH_PULL = 0.1  # the decoder's answer smoothed over about 1/√0.1 ≈ 3 face steps (fitted: PSB 1, 2, 21)


def wants_refinement(decoder_loss: float | None, shape_only: bool) -> bool:
    """The "auto" rule: refine unless the decoder fitted the masks of a prior that knows more than the mesh's
    shape (`Prior.shape_only`; unknown loss: refine). A decoder that fits a shape-only prior's masks is at best
    as good as those masks, and the crease cuts are the same geometry without the views' disagreement: on PSB
    the geometric prior's decoder alone reached 66.7 at five clicks against 91.4 refined; held out, a bottle
    whose geometric decoder fitted (loss 0.15) was answered unrefined and its neck never recovered (4.3 at
    five clicks, 99.9 refined)."""
    return decoder_loss is None or decoder_loss > WEAK_PRIOR_LOSS or shape_only


def _clicked_back(clicks: tuple[Click, ...]) -> int | None:
    """The index of the latest earlier click on the last click's vertex with the other sign, if any. A click
    back there takes back at most what that click changed (and no later click changed again), and the faces
    around the vertex: it says the earlier click went wrong there, nothing about the rest. The protocol clicks
    such a vertex when the error is a sliver with no vertex inside, the vertex on the part's edge and its faces
    on both sides; its change taken under the usual rules went further (noisy oracle, PSB 381: IoU 99.3 →
    93.9 when a vertex whose positive click added 4 faces was clicked negative: 20 faces went, 88 % of them
    the target's)."""
    vertex, sign = clicks[-1]
    return next((i for i in range(len(clicks) - 2, -1, -1) if clicks[i] == (vertex, -sign)), None)


class CreaseRefiner:
    """Per mesh: the crease graph and the answers to click prefixes seen so far, with or without the
    crease refinement (`creases`)."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, threshold: float = 0.5) -> None:
        self.faces = np.asarray(faces, dtype=np.int64)
        self.threshold = threshold  # a face is in the decoder's answer when its corners' mean probability is this
        self.n_vertices = len(vertices)
        self.graph = SeededCreaseGraph.for_mesh(vertices, self.faces)  # a click: triangular passes, no full solves
        self._memo: OrderedDict[tuple[bool, tuple[Click, ...]], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def warm(self, creases: bool) -> None:
        """Build what that path's walks need before a click needs it: the factorisations (about a second
        each on a 30K-face mesh) and the process's first load of the compiled walk kernels. Without this the
        first later click on a mesh paid 1.2-1.6 s (journal, session 8)."""
        if self.graph.n == 0:
            return
        gammas = (FIRST_PULL, FOLLOW_PULL) if creases else (FOLLOW_PULL, SMOOTH_PULL)
        seed = np.zeros(self.graph.n, dtype=np.int64)
        seed[0] = 1
        for gamma in gammas:
            self.graph.walk(0.5, seed, gamma)  # factors γ on first use; the walk loads the kernels

    def __call__(self, clicks: list[Click], decode: Decode, creases: bool = True) -> np.ndarray:
        """Per-vertex scores in [0, 1] (threshold 0.5) for `clicks`; `decode` gives the decoder's per-vertex
        probabilities for a click list. With `creases` the decoder answers only the first click and walks
        answer the rest; without, the decoder answers every click and `_follow_decoder` keeps each answer
        monotone."""
        key = tuple((int(v), 1 if s > 0 else -1) for v, s in clicks)
        if not any(s > 0 for _, s in key):
            return np.zeros(self.n_vertices, dtype=np.float32)
        return self.graph.element_scores(self._answer(key, decode, creases)).astype(np.float32)

    def _answer(self, clicks: tuple[Click, ...], decode: Decode, creases: bool) -> np.ndarray:
        """The answer built one click at a time from the longest memoised prefix: a loop, not a recursion,
        so a query may hold any number of clicks. With each answer the memo keeps, per face, the index of the
        click that last changed it (-1: none), which is what a click back takes back (`_clicked_back`)."""
        n = self.graph.n
        with self._lock:
            done = next((i for i in range(len(clicks), 0, -1) if (creases, clicks[:i]) in self._memo), 0)
            chosen, setter = self._memo[(creases, clicks[:done])] if done else (None, np.full(n, -1, np.int32))
        seed = self.graph.seeds(clicks[:done])
        positive_before = any(s > 0 for _, s in clicks[:done])
        for i in range(done, len(clicks)):  # the per-click loop
            deadline.check()  # a query's deadline (or its client leaving) stops a long click list here
            prefix = clicks[: i + 1]
            seed[self.graph.seeds(prefix[-1:]) != 0] = prefix[-1][1]  # a later click wins, as in `seeds`
            before = np.zeros(n) if chosen is None else chosen
            if not positive_before and prefix[-1][1] < 0:
                chosen = np.zeros(n)
            else:
                previous = chosen if positive_before else None
                chosen = self._step(previous, prefix, seed, decode, creases).astype(np.float64)
                back = _clicked_back(prefix)
                if previous is not None and back is not None:  # at most the faces around it and what it undoes
                    chosen = np.where((self.graph.seeds(prefix[-1:]) != 0) | (setter == back), chosen, previous)
            setter = np.where((chosen >= 0.5) != (before >= 0.5), np.int32(i), setter)
            positive_before = positive_before or prefix[-1][1] > 0
            with self._lock:
                self._memo[(creases, prefix)] = (chosen, setter)
                while len(self._memo) > MEMO_SIZE:
                    self._memo.popitem(last=False)
        return chosen

    def _step(
        self,
        previous: np.ndarray | None,
        clicks: tuple[Click, ...],
        seed: np.ndarray,
        decode: Decode,
        creases: bool,
    ) -> np.ndarray:
        """The answer to `clicks` (their seeds `seed`) given the answer to all but the last of them, None
        when the last click is the first positive one."""
        g = self.graph
        if not creases:
            if previous is None:  # a loose convex piece under the click is one part, as on the refined path
                answer = self._smoothed(self._face_probs(decode(list(clicks))), seed)
                piece = g.convex_piece(g.seeds([c for c in clicks if c[1] > 0][:1]))
                return answer if piece is None or (piece & (seed < 0)).any() else answer | piece
            return self._follow_decoder(previous >= 0.5, clicks, seed, decode)
        if previous is None:
            positives = [c for c in clicks if c[1] > 0]
            first_seed = g.seeds(positives[:1])
            if not first_seed.any():  # a loose vertex that no face uses: no face to start from
                return np.zeros(g.n, dtype=bool)
            return self._first(decode(positives[:1]), first_seed, seed)
        return self._next(previous >= 0.5, clicks[-1], seed, decode)

    def _smoothed(self, face_probs: np.ndarray, seed: np.ndarray) -> np.ndarray:
        """The decoder's per-face answer with its ragged edge smoothed along the surface, the clicked faces
        held: a walk pulled towards the decoder's probabilities at `SMOOTH_PULL`, which averages a face with
        its neighbours out to about three face steps except across a crease (where the graph's weights are
        small). With the clean oracle the decoder's errors are slivers one or two faces wide along a part's
        edge, too many and too small for clicks to mend (PSB 1, 2, 21: 11–121 error pieces per target after
        the first click, the largest 0.7 % of the target); smoothing moved mIoU@1 there 97.6 → 98.3."""
        return self.graph.walk(face_probs, seed, SMOOTH_PULL) >= self.threshold

    def _face_probs(self, vertex_probs: np.ndarray) -> np.ndarray:
        return np.asarray(vertex_probs, dtype=np.float64)[self.faces].mean(axis=1)

    def _follow_decoder(
        self,
        previous: np.ndarray,
        clicks: tuple[Click, ...],
        seed: np.ndarray,
        decode: Decode,
    ) -> np.ndarray:
        """A later click answered by the decoder: a positive click adds, a negative one takes away, the
        connected region under the click where the decoder's answer to all the clicks differs from the
        previous answer in the click's direction. The decoder was trained on one or two clicks; its answer to
        more can drop a good part elsewhere (the click speaks only for the region it is on) or swing a whole
        part across at a boundary click, so a walk between the clicks alone (neutral prior) arbitrates: a
        negative click takes nothing that walk holds at ≥ `PART_HOLD`, a positive one adds nothing it holds
        at ≤ 1 − `PART_HOLD`. The decoder's answer there is smoothed as the first one is (`_smoothed`, the
        previous answer standing in beyond the faces the click may change): a raw ragged edge near the click
        came along with what the click asked for (clean oracle, PSB 1, 2, 21: mIoU@5 98.4 → 98.7, the
        largest drop after a click 3.4 → 2.0 points).
        Where the decoder does not follow the click, the part under it (its answer to that point as a first
        click) is used instead, and failing that the faces around the click."""
        g = self.graph
        here = g.seeds(clicks[-1:]) != 0
        grow = clicks[-1][1] > 0
        hold = g.walk(0.5, seed, FOLLOW_PULL)
        held = hold > 1.0 - PART_HOLD if grow else hold < PART_HOLD
        allowed = held & g.near(here, ~previous if grow else previous)
        rows = np.unique(self.faces[allowed])  # the decoder answers only where the click may change something
        probs = np.zeros(self.n_vertices)

        def under_click(answer: np.ndarray) -> np.ndarray:
            change = (answer & ~previous if grow else previous & ~answer) & allowed
            comp = g.components(change)
            return change & np.isin(comp, comp[here & change])

        region = np.zeros(g.n, dtype=bool)
        if len(rows):
            probs[rows] = decode(list(clicks), rows)
            proposal = previous.astype(np.float64)  # the decoder speaks only where the click may change something
            proposal[allowed] = self._face_probs(probs)[allowed]
            region = under_click(self._smoothed(proposal, seed))
        if len(rows) and not region.any():
            part = self._decoder_part(clicks[-1][0], allowed, decode)
            region = under_click(part if grow else ~part)
        if not region.any():
            region = here & (~previous if grow else previous)
        return previous | region if grow else previous & ~region

    def _next(self, previous: np.ndarray, click: Click, seed: np.ndarray, decode: Decode) -> np.ndarray:
        """A later click's answer: the follow walk, growing only on a positive click and shrinking only on a
        negative one, the piece of that change under the click, limited to `REACH` of the click (`CreaseGraph.near`)
        unless the click is at its middle (`CreaseGraph.asked`): without a limit a click in a sliver along the edge
        flooded a neighbouring part or took half a good selection away (a geometric-prior IoU fell by up to
        49.8 points after a click). A negative click also takes away the part under it where the clicks alone
        do not hold it, but only whole, when the click is at that part's middle: a reach-limited share of a
        part the sweep drew across the target's edge took target faces along (a cup's IoU 98.9 → 91.5, the
        largest drop on the geometric prior's run, session 10), and of that part only what the decoder puts
        with the click (`_decoder_part`). Past its reach a negative click's whole piece keeps only the faces its walk
        holds below `BEYOND_DECIDED` or the decoder puts with the click: one positive click against five negative
        ones left half of such a piece's faces past the reach at 0.45–0.5, undecided, and the piece took target
        faces along (geometric prior, PSB 1 part 0, sixth click: 18.6 % of the target with 21.4 % of wrongly
        selected area, IoU 58.6 → 53.0)."""
        g = self.graph
        grow = click[1] > 0
        here = g.seeds([click]) != 0
        near = g.near(here, ~previous if grow else previous)
        x = g.follow_walk(previous, seed)
        if grow:
            return previous | g.asked(here, ~previous & (x >= 0.5), near)
        taken = g.asked(here, previous & (x < 0.5), near)
        if (taken & ~near).any():  # taken whole past its reach: there only what the walk or the decoder decides
            taken &= near | (x < BEYOND_DECIDED) | self._decoder_part(click[0], taken & ~near, decode)
        part = g.first_region(g.seeds([(click[0], 1)]))
        if not (part & (seed > 0)).any():  # the part under the click: whole when the click is at its middle, else none
            part &= self._decoder_part(click[0], part, decode)  # and only where the decoder puts it with the click
            taken |= g.asked(here, previous & part & (g.walk(0.5, seed, FOLLOW_PULL) < PART_HOLD), None)
        return g.drop_cut_islands(previous & ~taken, previous, seed)

    def _decoder_part(self, vertex: int, faces: np.ndarray, decode: Decode) -> np.ndarray:
        """Of `faces`, those the decoder's answer to `vertex` as a lone positive click holds: the part it learned
        from the prior around that point. The geometric part under a negative click is the sweep's guess and
        can run across the target's edge; taken whole it took target faces along (noisy oracle, PSB 61: IoU
        54.0 → 36.7 after one click, session 10). The decoder answers only those faces' vertices."""
        rows = np.unique(self.faces[faces])
        probs = np.zeros(self.n_vertices)
        if len(rows):
            probs[rows] = decode([(vertex, 1)], rows)
        return self._face_probs(probs) >= self.threshold

    def _first(self, vertex_probs: np.ndarray, first_seed: np.ndarray, seed: np.ndarray) -> np.ndarray:
        """The crease cut from the first positive click nearest the decoder's answer to it: the level sets of
        the walk from the click, any size up to `FIRST_MAX_SHARE`, scored by conductance plus disagreement
        with the decoder's confident faces. The walk is not pulled towards the decoder's answer and no size
        cap stands in for it: the pull bent every level set towards a partial answer, and the former cap (half
        the surface) left a part larger than that (a cup's body, a table's top) unreachable (journal,
        session 9)."""
        g = self.graph
        face_probs = self._face_probs(vertex_probs)
        covers = face_probs[first_seed > 0].mean() >= 0.5  # else it answers some other click: geometry decides
        unclicked = ~np.isin(g.pieces, g.pieces[first_seed > 0])
        chosen = g.convex_piece(first_seed)
        if chosen is None:
            x = g.walk(0.0, first_seed, FIRST_PULL)
            x[unclicked] = -1.0  # the sweep stays on the clicked piece
            guide = face_probs >= CONFIDENT if covers else None
            chosen = g.sweep_scored(x, first_seed, FIRST_MAX_SHARE, guide, AGREEMENT, RIM_CREASE)[0]
        if covers:
            chosen |= unclicked & (face_probs >= 0.5)  # no walk reaches a separate piece: the decoder decides there
        if (seed < 0).any():
            chosen = g.follow(chosen, seed)
        return chosen
