"""Engagement service: users, boards, saves and events, handed to the feed engine in real time."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tastegraph.errors import InvalidInput
from tastegraph.recs.events import RowError, read_event_rows, validate

if TYPE_CHECKING:
    from tastegraph.app import App

__all__ = ["EngagementService"]

MAX_BATCH = 10_000


class EngagementService:
    """The one entry point for engagement writes (API, CLI and importers call it)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._listeners: list[Any] = []

    def subscribe(self, listener: Any) -> None:
        """``listener(events)`` is called with every accepted batch (the feed engine's observe)."""
        self._listeners.append(listener)

    def record(self, rows: Iterable[tuple[int, dict[str, Any]] | RowError]) -> dict[str, Any]:
        """Validate and store events; bad rows are reported, good ones kept, duplicates ignored."""
        parsed: list[tuple[int, dict[str, Any]]] = []
        errors: list[RowError] = []
        for r in rows:
            if isinstance(r, RowError):
                errors.append(r)
            else:
                parsed.append(r)
        if len(parsed) > MAX_BATCH:
            raise InvalidInput(f"at most {MAX_BATCH} events per batch", hint="split the batch")
        store = self.app.store
        users = store.existing_ids("users", (_maybe_int(r, "user") for _, r in parsed))
        pins = store.existing_ids("pins", (_maybe_int(r, "pin") for _, r in parsed))
        good, bad = validate(parsed, users, pins)
        errors.extend(bad)
        inserted = store.add_events(good)
        if inserted:
            for listener in self._listeners:
                listener(inserted)
        return {
            "accepted": len(inserted),
            "duplicates": len(good) - len(inserted),
            "rejected": len(errors),
            "errors": [e.to_dict() for e in sorted(errors, key=lambda e: e.row)[:1000]],
        }

    def import_file(self, path: Path, *, progress: bool = True) -> dict[str, Any]:
        """``tastegraph events import``: a CSV or JSONL file, in batches, every good row kept."""
        from tastegraph.progress import progress_bar

        totals = {"accepted": 0, "duplicates": 0, "rejected": 0}
        errors: list[dict[str, Any]] = []
        batch: list[tuple[int, dict[str, Any]] | RowError] = []
        t0 = time.perf_counter()

        def flush() -> None:
            res = self.record(batch)
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
        board = self.app.store.get_board(board_id)
        if board["user_id"] != user_id:
            raise InvalidInput(f"board {board_id} belongs to another user")
        new = self.app.store.save_pin(board_id, pin_id)
        now = time.time() if ts is None else ts
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
        return new


def _maybe_int(raw: dict[str, Any], name: str) -> int:
    v = raw.get(f"{name}_id", raw.get(name))
    try:
        return int(float(v))  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):  # OverflowError: inf, 1e999
        return -1
