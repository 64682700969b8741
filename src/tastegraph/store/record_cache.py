"""Pin records kept in the serving process, current through the change log.

A feed or related-pins response carries 20 to 50 whole pins; reading them from the store each
time cost about a tenth of the request's CPU (SQLite through SQLAlchemy, row by row). Pins
change only through the store's writers, and every write to a pin row appends to the change
log, which a serving process replays before it answers a read (``workers.catchup``). So the
records are kept here, least recently used first out past ``max_pins``, and each pin the change
log names is dropped (read again on next use) when catch-up calls :meth:`apply_changes`.

A read that raced a change cannot put a stale row back: a miss is stored only if no change was
applied between the moment it was read and the moment it is stored.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Protocol

__all__ = ["PinRecordCache"]


class RecordSource(Protocol):
    def pin_records(self, ids: Iterable[int]) -> list[tuple[Any, ...]]: ...

    def changes_since(self, seq: int) -> tuple[int, list[int], list[int]]: ...

    def last_change(self) -> int: ...


class PinRecordCache:
    """``pin_records(ids)`` as the store answers it (the pins that exist, sorted by id), from
    memory where it can; at most ``max_pins`` records (0: every call goes to the store)."""

    def __init__(self, store: RecordSource, max_pins: int) -> None:
        if max_pins < 0:
            raise ValueError("max_pins must be >= 0")
        self.store = store
        self.max_pins = max_pins
        self._rows: OrderedDict[int, tuple[Any, ...]] = OrderedDict()
        self._lock = threading.Lock()
        # Changes applied so far (the change log's seq), and how many times pins were dropped.
        self._seq = store.last_change()
        self._generation = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._rows)

    def pin_records(self, ids: Iterable[int]) -> list[tuple[Any, ...]]:
        wanted = sorted({int(i) for i in ids})
        if not self.max_pins:
            return self.store.pin_records(wanted)
        rows = self._rows
        found: dict[int, tuple[Any, ...]] = {}
        with self._lock:
            for pid in wanted:
                row = rows.get(pid)
                if row is not None:
                    rows.move_to_end(pid)
                    found[pid] = row
            generation = self._generation
            self.hits += len(found)
        missing = [pid for pid in wanted if pid not in found]
        if missing:
            fresh = self.store.pin_records(missing)
            with self._lock:
                self.misses += len(missing)
                if generation == self._generation:  # nothing dropped since the read
                    for row in fresh:
                        rows[int(row[0])] = row
                    while len(rows) > self.max_pins:
                        rows.popitem(last=False)
            for row in fresh:
                found[int(row[0])] = row
        return [found[pid] for pid in wanted if pid in found]

    def apply_changes(self) -> int:
        """Drop the pins upserted or deleted since the last call; returns how many were named."""
        last, ups, dels = self.store.changes_since(self._seq)
        with self._lock:
            if last == self._seq:
                return 0
            self._generation += 1
            for pid in (*ups, *dels):
                self._rows.pop(pid, None)
            self._seq = max(self._seq, last)
        return len(ups) + len(dels)

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._rows.clear()

    def stats(self) -> dict[str, int]:
        return {
            "pins": len(self._rows),
            "max_pins": self.max_pins,
            "hits": self.hits,
            "misses": self.misses,
        }
