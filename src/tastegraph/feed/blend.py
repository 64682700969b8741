"""Blending ranked candidates into a feed: exploration, diversity, caps, penalties, fusion.

- :class:`ThompsonArms`: Beta posteriors over "exploit" (personal generators) and "explore"
  (popular, fresh) sources, per user; each feed slot draws from both and takes the arm whose
  draw is higher, so the explore share follows what the user actually engages with.
- :func:`hide_penalty`: pushes down look-alikes of pins the user hid.
- :func:`blend`: greedy maximal-marginal-relevance selection over image vectors, slot by slot,
  honouring the arm drawn for the slot, caps per board and per label in each window of 10, and
  one pin per near-duplicate group.
- :func:`rrf`: reciprocal-rank fusion of ranked lists (related pins).

Example
-------
>>> import numpy as np
>>> v = np.eye(4, dtype=np.float32)
>>> picks = blend(np.array([0.9, 0.8, 0.7, 0.1]), v, boards=np.array([0, 0, 0, 1]),
...               labels=np.zeros(4, np.int64), arms=np.zeros(4, np.int8), n=3, board_cap=2)
>>> picks.tolist()  # the third pin of board 0 is over the cap: the board-1 pin takes its place
[0, 1, 3]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "EXPLOIT",
    "EXPLORE",
    "ThompsonArms",
    "blend",
    "bound_slots",
    "hide_penalty",
    "lookalike_penalty",
    "penalty_from_similarity",
    "rrf",
]

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

EXPLOIT = 0
EXPLORE = 1


@dataclass
class ThompsonArms:
    """One user's Beta-Bernoulli evidence for the exploit and explore arms.

    A success is an engagement with a pin the arm served, a failure an impression without one
    (a hide counts as several failures). The posterior of arm ``a`` is
    ``Beta(prior_alpha[a] + wins[a], prior_beta[a] + losses[a])``; the prior is passed in at draw
    time so the engine can use the population's current rates (empirical Bayes: a new user
    starts from what works for everyone, and their own decisions take over as they accumulate).
    ``discount`` shrinks the user's evidence before every update, so the posterior tracks a
    person whose taste moves rather than averaging over their whole history.

    Examples
    --------
    >>> arms = ThompsonArms()
    >>> prior = (np.array([2.0, 1.0]), np.array([2.0, 3.0]))
    >>> rng = np.random.default_rng(0)
    >>> before = arms.explore_slots(1000, rng, *prior).mean()
    >>> for _ in range(30):
    ...     arms.update(EXPLORE, successes=1.0, failures=0.0)
    >>> after = arms.explore_slots(1000, rng, *prior).mean()
    >>> bool(after > before + 0.2)
    True
    """

    wins: F64 = field(default_factory=lambda: np.zeros(2))
    losses: F64 = field(default_factory=lambda: np.zeros(2))
    discount: float = 0.99
    updates: int = 0

    def update(self, arm: int, *, successes: float, failures: float) -> None:
        """Add evidence for one arm (the evidence of both arms decays first)."""
        self.wins *= self.discount
        self.losses *= self.discount
        self.wins[arm] += successes
        # Negative failures retract impressions counted before their engagement arrived.
        self.losses[arm] = max(self.losses[arm] + failures, 0.0)
        self.updates += 1

    def posterior(self, prior_alpha: F64, prior_beta: F64) -> tuple[F64, F64]:
        """Beta parameters ``(alpha, beta)`` of both arms under the given prior."""
        return np.asarray(prior_alpha + self.wins), np.asarray(prior_beta + self.losses)

    def explore_slots(
        self, n: int, rng: np.random.Generator, prior_alpha: F64, prior_beta: F64
    ) -> NDArray[np.bool_]:
        """Thompson draws for ``n`` feed slots: True where the explore arm wins the slot."""
        a, b = self.posterior(prior_alpha, prior_beta)
        exploit = rng.beta(a[EXPLOIT], b[EXPLOIT], size=n)
        explore = rng.beta(a[EXPLORE], b[EXPLORE], size=n)
        return np.asarray(explore > exploit)

    def explore_probability(
        self, prior_alpha: F64, prior_beta: F64, draws: int = 4000, seed: int = 0
    ) -> float:
        """Monte-Carlo estimate of P(explore wins a slot) under the posterior."""
        rng = np.random.default_rng(seed)
        return float(self.explore_slots(draws, rng, prior_alpha, prior_beta).mean())


def hide_penalty(
    vectors: F32, hidden: F32, *, threshold: float = 0.75, strength: float = 1.0
) -> F32:
    """Score penalty for candidates that look like pins the user hid.

    ``strength * clip((max_cos - threshold) / (1 - threshold), 0, 1)``: nothing below the
    threshold (a hide of one red dress should not bury all clothes), the full ``strength`` for a
    near-duplicate of the hidden pin.

    Parameters
    ----------
    vectors : (c, d) float32
        Candidate unit vectors.
    hidden : (h, d) float32
        Unit vectors of hidden pins (may be empty).
    threshold, strength : float

    Returns
    -------
    (c,) float32, in ``[0, strength]``.

    Examples
    --------
    >>> hide_penalty(np.eye(2, dtype=np.float32), np.array([[1.0, 0.0]], np.float32)).tolist()
    [1.0, 0.0]
    """
    if len(hidden) == 0 or len(vectors) == 0:
        return np.zeros(len(vectors), np.float32)
    sim = (vectors @ np.ascontiguousarray(hidden.T)).max(axis=1)
    return penalty_from_similarity(sim, threshold=threshold, strength=strength)


def penalty_from_similarity(sim: F32, *, threshold: float = 0.75, strength: float = 1.0) -> F32:
    """:func:`hide_penalty` from each candidate's best cosine to a hidden pin, already known.

    Examples
    --------
    >>> penalty_from_similarity(np.array([1.0, 0.875, 0.2], np.float32)).tolist()
    [1.0, 0.5, 0.0]
    """
    sim = np.asarray(sim, np.float32)
    frac: F32 = np.clip((sim - threshold) / max(1.0 - threshold, 1e-6), 0.0, 1.0)
    return (strength * frac).astype(np.float32)


def bound_slots(
    explore: NDArray[np.bool_], low: float, high: float, rng: np.random.Generator
) -> NDArray[np.bool_]:
    """Thompson slot draws held within a budget: between ``low`` and ``high`` of the slots.

    The bandit decides how much a person explores, but only within bounds: a new user whose
    first page drew no engagement yet, or five hides, made the explore arm win every slot and
    the feed turned into popular and new pins; a long run of explore successes must not push
    the person's own interests out either. Slots over the budget go back to exploit, slots under
    it are turned to explore, both drawn at random so explore slots stay spread over the page.

    Examples
    --------
    >>> out = bound_slots(np.ones(20, bool), 0.05, 0.25, np.random.default_rng(0))
    >>> int(out.sum())
    5
    """
    out = np.asarray(explore, bool).copy()
    n = len(out)
    hi = int(np.floor(high * n + 1e-9))
    lo = min(int(np.ceil(low * n - 1e-9)), hi)
    on = np.flatnonzero(out)
    if len(on) > hi:
        out[rng.choice(on, len(on) - hi, replace=False)] = False
    elif len(on) < lo:
        off = np.flatnonzero(~out)
        out[rng.choice(off, lo - len(on), replace=False)] = True
    return out


def lookalike_penalty(sims: F32, floors: F32, *, strength: float = 1.0) -> F32:
    """Penalty for candidates that look like a hidden pin, look-alike meaning *near neighbour*.

    ``sims`` holds each candidate's cosine to each hidden pin, ``floors`` per hidden pin the
    cosine from which on a pin counts as its look-alike (e.g. that of its k-th nearest
    neighbour in the catalog). A hide then pushes down the few pins that resemble the hidden
    one, however densely the catalog packs the person's interest, instead of every pin within a
    fixed cosine, which in a dense interest is the whole interest.

    Examples
    --------
    >>> pen = lookalike_penalty(np.array([[0.99], [0.9], [0.5]], np.float32), np.array([0.9]))
    >>> [round(float(x), 3) for x in pen]
    [0.9, 0.0, 0.0]
    """
    sims = np.asarray(sims, np.float32)
    if sims.size == 0:
        return np.zeros(len(sims), np.float32)
    f = np.asarray(floors, np.float32)[None, :]
    frac = np.clip((sims - f) / np.maximum(1.0 - f, 1e-6), 0.0, 1.0)
    out: F32 = (strength * frac.max(axis=1)).astype(np.float32)
    return out


def blend(
    scores: F64 | F32,
    vectors: F32,
    *,
    boards: I64,
    labels: I64,
    arms: NDArray[np.int8],
    n: int,
    explore: NDArray[np.bool_] | None = None,
    dup_groups: I64 | None = None,
    mmr_lambda: float = 0.8,
    board_cap: int = 2,
    label_cap: int = 3,
    window: int = 10,
    budget: NDArray[np.bool_] | None = None,
    budget_n: int = 0,
) -> I64:
    """Pick ``n`` candidates slot by slot: arm of the slot, caps, then maximal marginal relevance.

    For each slot: candidates of the slot's arm (``explore[slot]``) that keep the window's
    board and label counts within the caps are eligible, falling back to the other arm when the
    drawn arm has none left; among them the one maximising
    ``lambda * score - (1 - lambda) * max_cos(selected)`` is taken. Caps apply to each block of
    ``window`` slots (the first block is the "top 10"); they are relaxed only when no candidate
    fits them at all, so a catalog with too few boards still yields a full page.

    Parameters
    ----------
    scores : (c,) float
        Relevance, comparable across candidates (e.g. scaled to ``[0, 1]``).
    vectors : (c, d) float32
        Unit image vectors.
    boards, labels : (c,) int64
        Board and label codes (any non-negative ints; ``-1`` is never capped).
    arms : (c,) int8
        ``EXPLOIT`` or ``EXPLORE`` per candidate.
    n : int
        Slots to fill.
    explore : (n,) bool, optional
        Arm drawn for each slot (see :meth:`ThompsonArms.explore_slots`); default all exploit.
    dup_groups : (c,) int64, optional
        Near-duplicate group (``-1`` = none): at most one pin per group is picked.
    mmr_lambda : float
        Relevance weight; ``1.0`` disables diversity.
    board_cap, label_cap : int
        Maximum per board / label in each window.
    window : int
    budget : (c,) bool, optional
        Candidates that may fill at most ``budget_n`` slots in all (e.g. fresh pins), unless
        nothing else is left to fill the page.
    budget_n : int

    Returns
    -------
    (k,) int64
        Positions into the candidate arrays, in feed order, ``k <= n``.
    """
    c = len(scores)
    if c == 0 or n <= 0:
        return np.zeros(0, np.int64)
    s = np.asarray(scores, np.float64)
    lam = float(mmr_lambda)
    explore_slots = np.zeros(n, bool) if explore is None else np.asarray(explore, bool)
    _, b_code = np.unique(boards, return_inverse=True)
    _, l_code = np.unique(labels, return_inverse=True)
    b_code = b_code.ravel()
    l_code = l_code.ravel()
    b_free = np.asarray(boards) < 0
    l_free = np.asarray(labels) < 0
    b_list: list[int] = b_code.tolist()
    l_list: list[int] = l_code.tolist()
    b_count = [0] * (max(b_list) + 1)
    l_count = [0] * (max(l_list) + 1)
    # ``open_``: available and within both caps in the current window. Kept up to date as picks
    # fill boards and labels (only the members of the board or label just filled change), rather
    # than recomputed for every candidate at every slot.
    capped = np.zeros(c, bool)
    limited = None if budget is None else np.asarray(budget, bool)
    used = 0
    if limited is not None and budget_n <= 0:
        capped |= limited
    if board_cap <= 0:
        capped |= ~b_free
    if label_cap <= 0:
        capped |= ~l_free
    available = np.ones(c, bool)
    open_ = ~capped
    max_sim = np.zeros(c, np.float64)
    is_explore = np.asarray(arms) == EXPLORE
    is_exploit = ~is_explore
    relevance = lam * s
    diversity = 1.0 - lam
    dup = None if dup_groups is None else np.asarray(dup_groups)
    dup_list: list[int] | None = None if dup is None else dup.tolist()
    slot_explore: list[bool] = explore_slots.tolist()
    picked: list[int] = []
    for slot in range(min(n, c)):
        if slot % window == 0 and slot:
            b_count = [0] * len(b_count)
            l_count = [0] * len(l_count)
            open_ = available & ~capped
        value = relevance - diversity * max_sim
        # The slot's arm within the caps, else any arm within the caps, else anything left.
        j = -1
        for eligible in (open_ & (is_explore if slot_explore[slot] else is_exploit), open_):
            j = int(np.argmax(np.where(eligible, value, -np.inf)))
            if eligible[j]:
                break
        else:
            j = int(np.argmax(np.where(available, value, -np.inf)))
            if not available[j]:
                break
        picked.append(j)
        available[j] = False
        open_[j] = False
        if dup_list is not None and dup_list[j] >= 0:
            same = dup == dup_list[j]
            available &= ~same
            open_ &= ~same
        if limited is not None and limited[j]:
            used += 1
            if used >= budget_n:
                capped |= limited
                open_ &= ~limited
        bj, lj = b_list[j], l_list[j]
        b_count[bj] += 1
        l_count[lj] += 1
        if b_count[bj] >= board_cap and not b_free[j]:
            open_ &= b_code != bj
        if l_count[lj] >= label_cap and not l_free[j]:
            open_ &= l_code != lj
        np.maximum(max_sim, vectors @ vectors[j], out=max_sim)
    return np.asarray(picked, np.int64)


def rrf(
    lists: Sequence[I64], *, k: float = 60.0, weights: Sequence[float] | None = None
) -> dict[int, float]:
    """Reciprocal-rank fusion: ``sum_l w_l / (k + rank_l(x))`` over the lists containing ``x``.

    Examples
    --------
    >>> fused = rrf([np.array([7, 8]), np.array([8, 9])])
    >>> sorted(fused, key=fused.get, reverse=True)
    [8, 7, 9]
    """
    out: dict[int, float] = {}
    ws = [1.0] * len(lists) if weights is None else list(weights)
    for items, w in zip(lists, ws, strict=True):
        for r, item in enumerate(np.asarray(items).tolist()):
            out[item] = out.get(item, 0.0) + w / (k + r + 1)
    return out
