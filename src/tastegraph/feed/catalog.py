"""The engine's pin catalog: one dense row per pin, as aligned arrays.

Every other part of the feed works on these rows (``0..n-1``); :meth:`PinCatalog.rows_of` maps
store ids to rows. Boards and labels are integer codes (``-1`` for none), so that walks, caps
and affinities compare integers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from tastegraph.feed.data import PinTable
from tastegraph.feed.sources.clusters import kmeans

__all__ = ["PinCatalog"]

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
BOOL = NDArray[np.bool_]

_COARSE_BLOCK = 16384  # rows per block when assigning coarse clusters


class PinCatalog:
    """Pins as aligned arrays (ids, unit vectors, board and label codes, titles, times, flags).

    Parameters
    ----------
    dim : int
        Vector dimension.
    coarse_clusters : int
        Coarse visual clusters of the catalog (cold-start spread, per-cluster popularity); found
        by k-means once the catalog holds twice as many pins.
    seed : int
        Seeds that k-means.
    """

    def __init__(self, dim: int, *, coarse_clusters: int, seed: int) -> None:
        self.dim = dim
        self.coarse_clusters = coarse_clusters
        self.seed = seed
        self.ids: I64 = np.zeros(0, np.int64)
        self.vec: F32 = np.zeros((0, dim), np.float32)
        self.board: I64 = np.zeros(0, np.int64)
        self.label: I64 = np.zeros(0, np.int64)
        self.titles: list[str] = []
        self.created: F64 = np.zeros(0)
        self.dup: I64 = np.zeros(0, np.int64)
        self.blocked: BOOL = np.zeros(0, bool)
        self.coarse: I64 = np.zeros(0, np.int64)
        self.centroids: F32 | None = None
        self.board_names: list[str] = []
        self.board_code: dict[str, int] = {}
        self.label_names: list[str] = []
        self.label_code: dict[str, int] = {}
        self.sorted_ids: I64 = np.zeros(0, np.int64)
        self.sorted_rows: I64 = np.zeros(0, np.int64)
        self.by_created: I64 = np.zeros(0, np.int64)
        self.created_sorted: F64 = np.zeros(0)

    @property
    def n(self) -> int:
        return len(self.ids)

    def add(self, pins: PinTable) -> I64:
        """Append the pins not known yet; returns their new rows (empty when none are new)."""
        known = self.rows_of(pins.ids) >= 0
        new = np.flatnonzero(~known)
        if not len(new):
            return np.zeros(0, np.int64)
        start = self.n
        new_l = new.tolist()
        self.ids = np.concatenate([self.ids, pins.ids[new]])
        self.vec = np.concatenate([self.vec, pins.vectors[new]])
        boards = _codes(self.board_code, self.board_names, [pins.boards[i] for i in new_l])
        labels = _codes(self.label_code, self.label_names, [pins.labels[i] for i in new_l])
        self.board = np.concatenate([self.board, boards]).astype(np.int64)
        self.label = np.concatenate([self.label, labels]).astype(np.int64)
        assert pins.titles is not None
        assert pins.created_at is not None and pins.dup_group is not None
        assert pins.blocked is not None
        self.titles.extend(str(pins.titles[i]) for i in new_l)
        self.created = np.concatenate([self.created, pins.created_at[new]])
        self.dup = np.concatenate([self.dup, pins.dup_group[new]])
        self.blocked = np.concatenate([self.blocked, pins.blocked[new]])
        order = np.argsort(self.ids, kind="stable")
        self.sorted_ids = self.ids[order]
        self.sorted_rows = order.astype(np.int64)
        self.by_created = np.argsort(self.created, kind="stable").astype(np.int64)
        self.created_sorted = self.created[self.by_created]
        rows = np.arange(start, self.n, dtype=np.int64)
        self._assign_coarse(rows)
        return rows

    def board_code_of(self, name: str) -> int:
        """Code of board ``name`` (a new board gets the next code)."""
        code = self.board_code.get(name)
        if code is None:
            code = self.board_code[name] = len(self.board_names)
            self.board_names.append(name)
        return code

    def _assign_coarse(self, rows: I64) -> None:
        if self.centroids is None:
            if self.n < 2 * self.coarse_clusters:
                self.coarse = np.zeros(self.n, np.int64)
                return
            self.centroids = kmeans(self.vec, self.coarse_clusters, seed=self.seed)
            rows = np.arange(self.n, dtype=np.int64)
            self.coarse = np.zeros(self.n, np.int64)
        self.coarse = np.concatenate([self.coarse, np.zeros(self.n - len(self.coarse), np.int64)])
        for lo in range(0, len(rows), _COARSE_BLOCK):
            part = rows[lo : lo + _COARSE_BLOCK]
            self.coarse[part] = np.argmax(self.vec[part] @ self.centroids.T, axis=1)

    def rows_of(self, ids: I64) -> I64:
        """Rows of pin ids (``-1`` for unknown ids)."""
        ids = np.asarray(ids, np.int64)
        if not len(self.sorted_ids):
            return np.full(len(ids), -1, np.int64)
        pos = np.searchsorted(self.sorted_ids, ids)
        pos = np.minimum(pos, len(self.sorted_ids) - 1)
        return np.where(self.sorted_ids[pos] == ids, self.sorted_rows[pos], -1)

    def words(self, row: int) -> tuple[str, str]:
        """The pin's title and board name, the words a reason may use (``""`` when none)."""
        code = int(self.board[row])
        return self.titles[row], self.board_names[code] if code >= 0 else ""


def _codes(table: dict[str, int], names: list[str], values: Sequence[str]) -> list[int]:
    """Codes of ``values`` in ``table`` (new names get the next codes, appended to ``names``).

    An empty name is "none" (code -1), not a board or label that every such pin shares: pins
    without a board must not be linked to each other for the walks, nor share a diversity cap.
    """
    out: list[int] = []
    get = table.get
    for name in values:
        if not name:
            out.append(-1)
            continue
        code = get(name)
        if code is None:
            code = table[name] = len(names)
            names.append(name)
        out.append(code)
    return out
