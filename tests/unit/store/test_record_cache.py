"""The serving process's pin-record cache: hits skip the store, changes drop pins, the bound
holds, and a read that raced a change never puts a stale row back."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest

from tastegraph.store.record_cache import PinRecordCache


class FakeStore:
    """Rows by id (a version number stands for the rest of the record) and a change log."""

    def __init__(self, n: int) -> None:
        self.rows = {i: (i, 0) for i in range(1, n + 1)}
        self.log: list[tuple[int, int, str]] = []
        self.reads: list[list[int]] = []
        self.during_read: Callable[[], None] | None = None

    def pin_records(self, ids: Iterable[int]) -> list[tuple[Any, ...]]:
        ids = list(ids)
        self.reads.append(ids)
        out = [self.rows[i] for i in sorted(set(ids)) if i in self.rows]
        if self.during_read is not None:
            hook, self.during_read = self.during_read, None
            hook()
        return out

    def edit(self, pid: int) -> None:
        self.rows[pid] = (pid, self.rows[pid][1] + 1)
        self.log.append((len(self.log) + 1, pid, "upsert"))

    def delete(self, pid: int) -> None:
        del self.rows[pid]
        self.log.append((len(self.log) + 1, pid, "delete"))

    def changes_since(self, seq: int) -> tuple[int, list[int], list[int]]:
        new = [c for c in self.log if c[0] > seq]
        last = new[-1][0] if new else seq
        return (
            last,
            [p for _, p, op in new if op == "upsert"],
            [p for _, p, op in new if op == "delete"],
        )

    def last_change(self) -> int:
        return len(self.log)


def test_answers_like_the_store_and_reads_each_pin_once() -> None:
    store = FakeStore(10)
    cache = PinRecordCache(store, max_pins=100)
    assert cache.pin_records([3, 1, 99, 3]) == [(1, 0), (3, 0)]  # sorted, unknown left out
    assert cache.pin_records([1, 2, 3]) == [(1, 0), (2, 0), (3, 0)]
    assert store.reads == [[1, 3, 99], [2]]
    assert cache.stats() == {"pins": 3, "max_pins": 100, "hits": 2, "misses": 4}


def test_edits_and_deletes_are_read_afresh_after_apply_changes() -> None:
    store = FakeStore(5)
    cache = PinRecordCache(store, max_pins=100)
    cache.pin_records([1, 2, 3])
    store.edit(2)
    store.delete(3)
    assert cache.pin_records([2, 3]) == [(2, 0), (3, 0)]  # not caught up yet: as it was
    assert cache.apply_changes() == 2
    assert cache.apply_changes() == 0
    assert cache.pin_records([1, 2, 3]) == [(1, 0), (2, 1)]
    assert store.reads[-1] == [2, 3]


def test_a_read_that_raced_a_change_is_not_kept() -> None:
    store = FakeStore(3)
    cache = PinRecordCache(store, max_pins=100)

    def change_lands_and_is_applied() -> None:  # after the rows were read, before they are kept
        store.edit(1)
        cache.apply_changes()

    store.during_read = change_lands_and_is_applied
    assert cache.pin_records([1]) == [(1, 0)]  # what the read saw
    assert cache.pin_records([1]) == [(1, 1)]  # not the stale row: read again
    assert cache.pin_records([1]) == [(1, 1)] and len(store.reads) == 2


def test_holds_at_most_max_pins_least_recently_used_out_first() -> None:
    store = FakeStore(10)
    cache = PinRecordCache(store, max_pins=3)
    cache.pin_records([1, 2, 3])
    cache.pin_records([1])  # 1 is now the most recently used
    cache.pin_records([4])
    assert len(cache) == 3
    store.reads.clear()
    cache.pin_records([1, 3, 4])
    assert store.reads == []
    cache.pin_records([2])
    assert store.reads == [[2]]


def test_zero_reads_every_pin_from_the_store() -> None:
    store = FakeStore(3)
    cache = PinRecordCache(store, max_pins=0)
    cache.pin_records([1])
    cache.pin_records([1])
    assert len(store.reads) == 2 and len(cache) == 0


def test_clear_drops_everything() -> None:
    store = FakeStore(3)
    cache = PinRecordCache(store, max_pins=10)
    cache.pin_records([1, 2])
    cache.clear()
    assert len(cache) == 0


def test_a_negative_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="max_pins"):
        PinRecordCache(FakeStore(1), max_pins=-1)
