"""Export and erasure of one person's data: the store's rows (one transaction), the copies of
deleted events kept in the data dir, and what this process's feed engine learned from them."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from tastegraph.engagement.bus import EventBus, EventsDeleted
from tastegraph.errors import NotFound
from tastegraph.store.ports import PersonalData

__all__ = ["EXPORT_FORMAT", "PeopleService", "scrub_event_copies"]

EXPORT_FORMAT = "tastegraph-user-export/1"


def scrub_event_copies(folder: Path, user_id: int) -> int:
    """Remove the user's rows from the copies ``events delete`` keeps (``deleted-events/``),
    each file rewritten whole and swapped in atomically; returns how many rows went."""
    removed = 0
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [ln for ln in lines if not _belongs(ln, user_id)]
        if len(kept) == len(lines):
            continue
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".scrub-", suffix=".jsonl")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(kept)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        removed += len(lines) - len(kept)
    return removed


def _belongs(line: str, user_id: int) -> bool:
    try:
        row = json.loads(line)
    except ValueError:
        return False  # not ours to judge: left as it is
    return isinstance(row, dict) and row.get("user_id") == user_id


class PeopleService:
    def __init__(self, store: PersonalData, data_dir: Path, bus: EventBus) -> None:
        self.store = store
        self.data_dir = data_dir
        self.bus = bus

    def export(self, user_id: int) -> dict[str, Any]:
        """Everything tastegraph stores about the user, as one JSON-ready document."""
        return {"format": EXPORT_FORMAT, **self.store.user_export(user_id)}

    def erase(self, user_id: int, *, actor: tuple[int | None, str]) -> dict[str, Any]:
        """Erase the user: account, boards, saves and events in one store transaction, then
        the kept copies of their deleted events; feeds here forget them at once, other
        serving processes on their next catch-up (the store announces a new events
        generation). Run again after a crash, it finishes the copies (the store part either
        happened whole or not at all). Unknown or already erased: ``NotFound``."""
        copies = self.data_dir / "deleted-events"
        try:
            record = self.store.erase_user(user_id, actor=actor)
        except NotFound:
            scrub_event_copies(copies, user_id)  # a rerun after a crash: finish the copies
            raise
        if record["events"] or record["boards"]:  # this process's feed engine rebuilds
            self.bus.publish(EventsDeleted(record["events"]))
        record["event_copies_scrubbed"] = scrub_event_copies(copies, user_id)
        return record
