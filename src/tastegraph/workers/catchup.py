"""Catch-up: take in what other processes changed while this one runs; cheap when nothing did.

Other processes (``tastegraph ingest``, ``reindex``, ``events delete`` or another server on the
same data) change the store; this process's in-memory state (indexes, the feed engine) follows:

- pins added or deleted elsewhere reach the open indexes (so search finds them) and the feed
  engine;
- a new whitening projection means the vectors changed space: the indexes are reopened from
  disk, where that process saved them, and the feed engine is rebuilt on its next use;
- logged events deleted: the feed engine follows the log by id and cannot un-learn them, so it
  is rebuilt from the log as it now is on its next use;
- pins edited or deleted leave the process's pin-record cache (``store.record_cache``).

Only what is already loaded is touched: catch-up never loads models or builds an engine.

Read-your-writes across processes (``tastegraph serve --workers N``, or several servers on one
store): before a feed, related or search request, :meth:`CatchUp.if_behind` reads the tips of
the two ordered logs (``store.log_tips()``: on SQLite one ``PRAGMA data_version`` call, a few
µs, unless some connection committed since, then one read) and, only when
either moved since this process last looked, applies what is new before the request is
answered. A client that writes through one process and reads through another sees its write.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from tastegraph.index.spaces import PROJECTION_KEY
from tastegraph.lazy import Loaded

__all__ = ["CatchUp"]


class CatchUpStore(Protocol):
    def get_kv(self, key: str, default: Any = None) -> Any: ...

    def events_generation(self) -> str | None: ...

    def log_tips(self) -> tuple[int, int]: ...


class CaughtUpRecords(Protocol):
    def apply_changes(self) -> int: ...


class CaughtUpIndexes(Protocol):
    projection_record: str | None

    def sync(self, save: bool = True) -> dict[str, int]: ...


class CaughtUpFeeds(Protocol):
    events_generation: str | None

    def catch_up_catalog(self) -> int: ...

    def catch_up(self) -> int: ...


class CatchUp:
    """Keeps this process's loaded indexes and feed engine in step with the store."""

    def __init__(
        self,
        store: CatchUpStore,
        indexes: Loaded[CaughtUpIndexes],
        feeds: Loaded[CaughtUpFeeds],
        lock: threading.RLock | None = None,
        records: CaughtUpRecords | None = None,
    ) -> None:
        self.store = store
        self.indexes = indexes
        self.feeds = feeds
        self.records = records
        self._lock = lock or threading.RLock()
        # The tips of the change and event logs when this process last caught up to them.
        self._seen: tuple[int, int] | None = None

    def events(self) -> bool:
        """Drop the feed engine if logged events were deleted since it was made (by this process
        or another). True when it was dropped."""
        with self._lock:
            feeds = self.feeds.peek()
            if feeds is None or self.store.events_generation() == feeds.events_generation:
                return False
            self.feeds.reset()
            return True

    def run(self) -> dict[str, int]:
        """Apply every pending change; returns the changes applied per index (``{"reopened":
        1}`` after a projection change, ``"events_deleted"`` when the engine was dropped)."""
        with self._lock:
            if self.records is not None:
                self.records.apply_changes()  # edited and deleted pins are read afresh
            dropped = self.events()
            idx = self.indexes.peek()
            if idx is None:
                return {"events_deleted": 1} if dropped else {}
            rec = self.store.get_kv(PROJECTION_KEY)
            want = rec.get("digest") if rec else None
            if want is not None and want != idx.projection_record:
                self.indexes.reset()
                self.feeds.reset()
                return {"reopened": 1}
        applied: dict[str, int] = idx.sync(save=False)
        if dropped:
            applied["events_deleted"] = 1
        feeds = self.feeds.peek()
        if feeds is not None:
            applied["feeds"] = feeds.catch_up_catalog()
        return applied

    def if_behind(self) -> bool:
        """Catch up when the store's change or event log is ahead of what this process last
        applied (one read of both log tips; nothing more when nothing is new). True when it
        caught up.

        The tips are read before applying: whatever is logged after that read is picked up by
        the next call, never skipped.
        """
        tips = self.store.log_tips()
        if tips == self._seen:
            return False
        with self._lock:
            if tips == self._seen:
                return False
            self.run()
            feeds = self.feeds.peek()
            if feeds is not None:
                feeds.catch_up()
            self._seen = tips
        return True
