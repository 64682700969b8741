"""Engagement service: users' saves and events, published on the event bus as they are stored."""

from __future__ import annotations

import itertools
import json
import os
import secrets
import time
from collections.abc import Iterable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

from tastegraph.engagement.bus import EventBus, EventsDeleted, EventsRecorded, PinHidden, PinSaved
from tastegraph.engagement.events import (
    EventFilter,
    RowError,
    TimeWindow,
    check_known,
    parse_rows,
    parse_time,
    read_event_rows,
)
from tastegraph.engagement.ports import EngagementStore
from tastegraph.errors import InvalidInput
from tastegraph.settings import Settings

__all__ = ["EngagementService"]

MAX_BATCH = 10_000


class EngagementService:
    """The one entry point for engagement writes (API, CLI and importers call it)."""

    def __init__(self, store: EngagementStore, settings: Settings, bus: EventBus) -> None:
        self.store = store
        self.settings = settings
        self.bus = bus

    def record(
        self,
        rows: Iterable[tuple[int, dict[str, Any]] | RowError],
        *,
        now: float | None = None,
        seen: MutableMapping[int, int] | None = None,
    ) -> dict[str, Any]:
        """Validate and store events; bad rows are reported, good ones kept, duplicates ignored.

        Times must lie in the window the settings give around ``now`` (the clock by default).
        ``seen`` carries the occurrence counts of derived keys across the batches of one file
        (see :mod:`tastegraph.engagement.events`); each call is one batch otherwise.
        """
        rows = list(rows)
        if sum(not isinstance(r, RowError) for r in rows) > MAX_BATCH:
            raise InvalidInput(f"at most {MAX_BATCH} events per batch", hint="split the batch")
        window = self.window(now)
        events, errors = parse_rows(rows, window, seen)
        store = self.store
        users = store.existing_ids("users", (e["user_id"] for _, e in events))
        pins = store.existing_ids("pins", (e["pin_id"] for _, e in events))
        good, bad = check_known(events, users, pins)
        errors.extend(bad)
        inserted = store.add_events(good)
        if inserted:
            self.bus.publish(EventsRecorded(tuple(inserted)))
            for e in inserted:
                if e.get("kind") == "hide":
                    self.bus.publish(PinHidden(int(e["user_id"]), int(e["pin_id"])))
        return {
            "accepted": len(inserted),
            "duplicates": len(good) - len(inserted),
            "rejected": len(errors),
            "errors": [e.to_dict() for e in sorted(errors, key=lambda e: e.row)[:1000]],
        }

    def window(self, now: float | None = None) -> TimeWindow:
        """The event times accepted now: ``events_min_time`` to ``events_max_future_s`` ahead."""
        return TimeWindow.from_settings(self.settings, time.time() if now is None else now)

    def import_file(self, path: Path, *, progress: bool = True) -> dict[str, Any]:
        """``tastegraph events import``: a CSV or JSONL file, in batches, every good row kept."""
        from tastegraph.progress import progress_bar

        totals = {"accepted": 0, "duplicates": 0, "rejected": 0}
        errors: list[dict[str, Any]] = []
        batch: list[tuple[int, dict[str, Any]] | RowError] = []
        t0 = time.perf_counter()
        now = time.time()  # one window for the whole file
        seen: dict[int, int] = {}  # identical rows anywhere in the file stay distinct events

        def flush() -> None:
            res = self.record(batch, now=now, seen=seen)
            for k in totals:
                totals[k] += res[k]
            errors.extend(res["errors"][: max(0, 1000 - len(errors))])
            bar.advance(len(batch))
            batch.clear()

        with progress_bar("events", None, unit="ev", enabled=progress) as bar:
            for r in read_event_rows(path):
                batch.append(r)
                if len(batch) >= 5000:
                    flush()
            if batch:
                flush()
        seconds = time.perf_counter() - t0
        return {
            **totals,
            "errors": errors,
            "seconds": round(seconds, 3),
            "events_per_s": round((totals["accepted"] + totals["duplicates"]) / seconds, 1)
            if seconds
            else 0.0,
        }

    def save(self, user_id: int, board_id: int, pin_id: int, ts: float | None = None) -> bool:
        """Save a pin to one of the user's boards; logs a ``save`` event too."""
        board = self.store.get_board(board_id)
        if board["user_id"] != user_id:
            raise InvalidInput(f"board {board_id} belongs to another user")
        now = time.time() if ts is None else ts
        try:  # before the save: a save whose event the log would refuse is no save
            parse_time(now, self.window())
        except ValueError as e:
            raise InvalidInput(str(e)) from e
        new = self.store.save_pin(board_id, pin_id)
        self.record(
            [
                (
                    0,
                    {
                        "user_id": user_id,
                        "pin_id": pin_id,
                        "type": "save",
                        "ts": now,
                        "surface": f"board:{board_id}",
                        "idempotency_key": f"save:{board_id}:{pin_id}",
                    },
                )
            ]
        )
        self.bus.publish(PinSaved(user_id, board_id, pin_id))
        return new

    # ------------------------------------------------------------ admin
    def find(
        self, where: EventFilter, limit: int = 100, now: float | None = None
    ) -> dict[str, Any]:
        """How many logged events ``where`` selects, and the first ``limit`` of them."""
        window = self.window(now)
        store = self.store
        return {
            "matched": store.count_events(where, window),
            "events": store.find_events(where, window, limit),
            "filter": where.to_dict(),
            "window": window.describe(),
        }

    def stats(self, now: float | None = None) -> dict[str, Any]:
        window = self.window(now)
        return {**self.store.event_stats(window), "window": window.describe()}

    def delete(
        self,
        where: EventFilter,
        *,
        actor: tuple[int | None, str],
        by: str,
        dry_run: bool = False,
        now: float | None = None,
    ) -> dict[str, Any]:
        """Delete the logged events ``where`` selects (``dry_run``: only count them), audited.

        The rows are first copied to ``<data dir>/deleted-events/<time>.jsonl`` (the format
        ``tastegraph events import`` reads), so a mistaken deletion can be undone. The feed
        engine forgets them at once in this process (``EventsDeleted`` on the bus); other
        processes (a running server) see the store's new event generation on their next
        catch-up and rebuild.
        """
        window = self.window(now)
        store = self.store
        if dry_run:
            found = self.find(where, 20, now)
            return {**found, "deleted": 0, "dry_run": True}
        folder = self.settings.data_dir / "deleted-events"
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = folder / f"{stamp}-{secrets.token_hex(3)}.jsonl"
        written = 0

        def keep(rows: Iterator[dict[str, Any]]) -> None:
            nonlocal written
            first = next(rows, None)
            if first is None:
                return
            folder.mkdir(parents=True, exist_ok=True)
            with path.open("w", encoding="utf-8") as f:
                for r in itertools.chain((first,), rows):
                    f.write(json.dumps(_importable(r), ensure_ascii=False) + "\n")
                    written += 1
                f.flush()
                os.fsync(f.fileno())  # on disk before the deletion commits

        note = {"by": by, "saved_to": str(path.name)}
        n = store.delete_events(where, window, actor=actor, note=note, keep=keep)
        if n:
            self.bus.publish(EventsDeleted(n))
        return {
            "matched": n,
            "deleted": n,
            "dry_run": False,
            "filter": where.to_dict(),
            "saved_to": str(path) if written else None,
        }


def _importable(row: dict[str, Any]) -> dict[str, Any]:
    """A stored event as a row ``events import`` reads back (its key kept, so no duplicates)."""
    out = {k: v for k, v in row.items() if k not in ("id", "key", "kind")}
    return {"idempotency_key": row["key"], "type": row["kind"], **out, "deleted_id": row["id"]}


def _maybe_int(raw: dict[str, Any], name: str) -> int:
    v = raw.get(f"{name}_id", raw.get(name))
    try:
        return int(float(v))  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):  # OverflowError: inf, 1e999
        return -1
