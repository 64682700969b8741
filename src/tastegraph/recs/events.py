"""Engagement events: parsing and validation of rows from the API or a file (pure).

Each row either becomes a clean event dict ready for the store or a ``RowError`` naming the row
and what is wrong with it, so one bad row never stops the others.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tastegraph.errors import InvalidInput

__all__ = ["EVENT_KINDS", "RowError", "parse_event", "parse_time", "read_event_rows", "validate"]

EVENT_KINDS = ("impression", "closeup", "click", "save", "hide", "dwell")
# Epoch values above this are milliseconds (year 2286 in seconds).
_MS_THRESHOLD = 1e10


@dataclass
class RowError:
    row: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "message": self.message}


def parse_time(value: Any) -> float:
    """ISO 8601 (``Z`` or offset; naive means UTC) or epoch seconds/milliseconds -> epoch seconds.

    >>> parse_time("2024-01-02T03:04:05Z"), parse_time(1704164645000)
    (1704164645.0, 1704164645.0)
    """
    if isinstance(value, bool) or value is None or value == "":
        raise ValueError("missing time")
    if isinstance(value, int | float) or (isinstance(value, str) and _is_number(value)):
        x = float(value)
        if not math.isfinite(x) or x < 0:
            raise ValueError(f"bad epoch time {value!r}")
        return x / 1000.0 if x > _MS_THRESHOLD else x
    if not isinstance(value, str):
        raise ValueError(f"bad time {value!r}")
    try:
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as e:
        raise ValueError(f"bad time {value!r}: use ISO 8601 or epoch seconds") from e
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer id")
    try:
        f = float(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be an integer id, got {value!r}") from e
    if not f.is_integer():
        raise ValueError(f"{name} must be an integer id, got {value!r}")
    return int(f)


def parse_event(raw: dict[str, Any], row: int) -> dict[str, Any] | RowError:
    """One raw row -> an event dict (store columns) or the reason it is rejected."""
    try:
        kind = str(raw.get("type") or raw.get("kind") or "").strip().lower()
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event type {kind!r}; known: {', '.join(EVENT_KINDS)}")
        user = _int(raw.get("user_id", raw.get("user")), "user_id")
        pin = _int(raw.get("pin_id", raw.get("pin")), "pin_id")
        ts = parse_time(raw.get("ts", raw.get("timestamp", raw.get("time"))))
        dwell_raw = raw.get("dwell_ms", raw.get("dwell")) or 0
        dwell = float(dwell_raw)
        if not math.isfinite(dwell) or dwell < 0:
            raise ValueError(f"dwell_ms must be a non-negative number, got {dwell_raw!r}")
        if kind == "dwell" and dwell == 0:
            raise ValueError("a dwell event needs dwell_ms > 0")
        pos_raw = raw.get("position")
        position = None if pos_raw in (None, "") else _int(pos_raw, "position")
        if position is not None and position < 0:
            raise ValueError("position must be >= 0")
        surface = str(raw.get("surface") or "")[:32]
        request_id = str(raw.get("request_id") or "")[:64]
        key = str(raw.get("idempotency_key") or raw.get("key") or "")[:64]
        if not key:
            # Without a client key the event's own content identifies it, so a re-sent file
            # or batch is still recognised.
            basis = f"{user}|{pin}|{kind}|{ts:.3f}|{dwell:.1f}|{request_id}|{position}"
            key = "h:" + hashlib.sha256(basis.encode()).hexdigest()[:40]
    except (ValueError, TypeError) as e:
        return RowError(row, str(e))
    return {
        "key": key,
        "user_id": user,
        "pin_id": pin,
        "kind": kind,
        "ts": ts,
        "dwell_ms": dwell,
        "surface": surface,
        "position": position,
        "request_id": request_id,
    }


def validate(
    rows: Iterable[tuple[int, dict[str, Any]]], known_users: set[int], known_pins: set[int]
) -> tuple[list[dict[str, Any]], list[RowError]]:
    """Parse and check ids; returns the good events and one error per bad row."""
    good: list[dict[str, Any]] = []
    bad: list[RowError] = []
    for row, raw in rows:
        ev = parse_event(raw, row)
        if isinstance(ev, RowError):
            bad.append(ev)
        elif ev["user_id"] not in known_users:
            bad.append(RowError(row, f"unknown user {ev['user_id']}"))
        elif ev["pin_id"] not in known_pins:
            bad.append(RowError(row, f"unknown pin {ev['pin_id']}"))
        else:
            good.append(ev)
    return good, bad


def read_event_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]] | RowError]:
    """Rows of a CSV (header required) or JSONL file, with their line numbers."""
    if not path.is_file():
        raise InvalidInput(f"{path} does not exist")
    suffix = path.suffix.lower()
    with path.open(encoding="utf-8-sig", newline="") as f:
        if suffix in (".jsonl", ".ndjson", ".json"):
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    yield RowError(i, f"malformed JSON: {e.msg}")
                    continue
                if not isinstance(obj, dict):
                    yield RowError(i, "each line must be a JSON object")
                    continue
                yield i, obj
        elif suffix in (".csv", ".tsv"):
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
            if not reader.fieldnames:
                return
            for i, rec in enumerate(reader, 2):
                if None in rec:
                    yield RowError(i, "row has more fields than the header")
                    continue
                yield i, {k.strip().lower(): v for k, v in rec.items() if k}
        else:
            raise InvalidInput(f"{path}: unknown events format", hint="use .csv or .jsonl")
