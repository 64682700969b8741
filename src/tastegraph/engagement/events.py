"""Engagement events: parsing and validation of rows from the API or a file (pure).

Each row either becomes a clean event dict ready for the store or a ``RowError`` naming the row
and what is wrong with it, so one bad row never stops the others. Every value that reaches the
store is bounded here: times inside a :class:`TimeWindow` (the caller passes the clock), ids in
``1 .. 2**63 - 1``, positions and dwell times in ranges the feed engine's columns hold, and text
that SQLite can store. Nothing a client sends can make these functions raise.

Idempotency: a row's ``idempotency_key`` (or ``key``) identifies it. Without one, the key is
derived from the row's content, plus its occurrence index among identical rows of the same
batch or file: re-sending a batch or re-importing a file inserts nothing twice, yet two
identical clicks in one batch (a real double click) stay two events. Identical rows sent in
separate requests without a key look like a retry and are kept once: send a key to tell them
apart.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from collections.abc import Iterable, Iterator, MutableMapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tastegraph.domain import EVENT_KINDS, MAX_DWELL_MS, MAX_POSITION
from tastegraph.errors import InvalidInput

__all__ = [
    "EVENT_KINDS",
    "MAX_DWELL_MS",
    "MAX_ID",
    "MAX_POSITION",
    "EventFilter",
    "RowError",
    "TimeWindow",
    "check_known",
    "parse_event",
    "parse_rows",
    "parse_time",
    "read_event_rows",
]

MAX_ID = 2**63 - 1  # SQLite INTEGER and the engine's int64 id columns
# Epoch units told apart by magnitude: a value below 1e11 is seconds (up to year 5138), below
# 1e14 milliseconds, below 1e17 microseconds, below 1e20 nanoseconds (from 1973 on in each). The
# window then rejects whatever lands outside it, so a misread unit cannot slip through.
_UNITS: tuple[tuple[float, int, str], ...] = (
    (1e11, 1, "seconds"),
    (1e14, 10**3, "milliseconds"),
    (1e17, 10**6, "microseconds"),
    (1e20, 10**9, "nanoseconds"),
)
_SHOW = 60  # characters of a bad value echoed in a message
_INTEGER = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True)
class TimeWindow:
    """The event times accepted, in epoch seconds (both ends included)."""

    min_ts: float
    max_ts: float

    @classmethod
    def around(cls, now: float, min_time: datetime, max_future_s: float) -> TimeWindow:
        """From ``min_time`` to ``max_future_s`` seconds after ``now`` (the server's clock)."""
        return cls(_aware(min_time).timestamp(), now + max_future_s)

    @classmethod
    def from_settings(cls, settings: Any, now: float) -> TimeWindow:
        return cls.around(now, settings.events.min_time, settings.events.max_future_s)

    @classmethod
    def unbounded(cls) -> TimeWindow:
        """Any time from 1970 to year 9999: for filters over what is already stored."""
        return cls(0.0, 253402300799.0)

    def describe(self) -> str:
        return f"{_iso(self.min_ts)} to {_iso(self.max_ts)}"


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)


def _iso(ts: float) -> str:
    try:
        return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"epoch {ts:.6g}"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOW else text[: _SHOW - 1] + "…"


@dataclass
class RowError:
    row: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "message": self.message}


def parse_time(value: Any, window: TimeWindow) -> float:
    """ISO 8601 or epoch seconds/milliseconds/microseconds/nanoseconds -> epoch seconds.

    ISO times take ``Z`` or an offset; a naive one is read as UTC. The result must lie in
    ``window``; anything else raises ``ValueError`` with a message that says what was received
    and what is accepted.

    >>> w = TimeWindow(946684800.0, 1800000000.0)
    >>> parse_time("2024-01-02T03:04:05Z", w), parse_time(1704164645000, w)
    (1704164645.0, 1704164645.0)
    """
    if isinstance(value, bool) or value is None or value == "":
        raise ValueError("missing time: send ts as ISO 8601 (e.g. 2024-05-01T10:00:00Z) or epoch")
    received = value  # quoted in messages as it was sent, before any conversion
    if isinstance(value, str) and len(value) <= 64:
        number = _number(value)
        if number is not None:
            value = number
    if isinstance(value, int | float):
        ts, unit = _epoch(value)
        if ts is None:
            raise ValueError(
                f"bad epoch time {_show(received)}: {unit}; accepted: {window.describe()}"
            )
    elif isinstance(value, str):
        ts, unit = _iso_time(value), ""
    else:
        raise ValueError(f"bad time {_show(received)}: use ISO 8601 or epoch seconds")
    if not window.min_ts <= ts <= window.max_ts:
        side = "before the earliest" if ts < window.min_ts else "after the latest"
        read_as = f" (epoch {unit})" if unit else ""
        raise ValueError(
            f"time {_show(received)}{read_as} is {_iso(ts)}, {side} accepted: the window is "
            f"{window.describe()} (TASTEGRAPH_EVENTS_MIN_TIME to TASTEGRAPH_EVENTS_MAX_FUTURE_S "
            "past the server clock)"
        )
    return ts


def _number(s: str) -> int | float | None:
    """A number written as text (CSV cells, JSON strings); integers kept exact."""
    s = s.strip()
    if _INTEGER.fullmatch(s):
        return int(s)
    try:
        return float(s)
    except ValueError:
        return None


def _epoch(x: float) -> tuple[float | None, str]:
    """Epoch seconds of ``x`` in the unit its magnitude says, and that unit (or what is wrong)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None, "not a finite number"
    if x < 0:
        return None, "before 1970"
    for limit, per_second, unit in _UNITS:
        if x < limit:
            # int / int is exact-rounded in Python, so nanosecond integers keep their precision.
            return x / per_second, unit
    return None, "too large for epoch seconds, milliseconds, microseconds or nanoseconds"


def _iso_time(text: str) -> float:
    s = text.strip()
    if s[-1:] in ("Z", "z"):  # Python < 3.11 does not read the Z suffix
        s = s[:-1] + "+00:00"
    try:
        if len(s) > 64:
            raise ValueError("too long")
        dt = _aware(datetime.fromisoformat(s))
        return dt.timestamp()
    except (ValueError, OverflowError) as e:
        raise ValueError(
            f"bad time {_show(text)}: use ISO 8601 (e.g. 2024-05-01T10:00:00Z) or epoch seconds"
        ) from e


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    """An integer in ``lo..hi`` from an int, an integral float or their text (CSV cells)."""
    x: Any = value
    if isinstance(x, str) and len(x) <= 64:
        x = _number(x)
    if isinstance(x, float) and math.isfinite(x) and x.is_integer():
        x = int(x)
    if isinstance(x, bool) or not isinstance(x, int) or not lo <= x <= hi:
        raise ValueError(f"{name} must be an integer from {lo} to {hi}, got {_show(value)}")
    return x


def _float(value: Any, name: str, hi: float) -> float:
    x: Any = value
    if isinstance(x, str) and len(x) <= 64:
        x = _number(x)
    if isinstance(x, bool) or not isinstance(x, int | float) or not 0 <= x <= hi:
        raise ValueError(f"{name} must be a number from 0 to {hi:g}, got {_show(value)}")
    return float(x)


def _text(value: Any, name: str, max_len: int) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{name} must be text, got {_show(value)}")
    text = value if isinstance(value, str) else str(value)
    if len(text) > max_len:
        raise ValueError(f"{name} is longer than {max_len} characters: {_show(text)}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{name} is not valid Unicode text: {_show(text)}") from e
    return text


def _get(raw: dict[str, Any], *names: str) -> Any:
    """The first of ``names`` present with a value that is not empty."""
    for name in names:
        v = raw.get(name)
        if v is not None and v != "":
            return v
    return None


def parse_event(
    raw: Any, row: int, window: TimeWindow, seen: MutableMapping[int, int] | None = None
) -> dict[str, Any] | RowError:
    """One raw row -> an event dict (store columns) or the reason it is rejected; never raises.

    ``seen`` counts derived keys over one batch or file (see the module docstring): pass the
    same mapping for every row of it.
    """
    try:
        if not isinstance(raw, dict):
            raise ValueError("each event must be a JSON object")
        kind = _kind(_get(raw, "type", "kind"))
        user = _int(_get(raw, "user_id", "user"), "user_id", 1, MAX_ID)
        pin = _int(_get(raw, "pin_id", "pin"), "pin_id", 1, MAX_ID)
        ts = parse_time(_get(raw, "ts", "timestamp", "time"), window)
        dwell_raw = _get(raw, "dwell_ms", "dwell")
        dwell = 0.0 if dwell_raw is None else _float(dwell_raw, "dwell_ms", MAX_DWELL_MS)
        if kind == "dwell" and dwell == 0:
            raise ValueError("a dwell event needs dwell_ms > 0")
        pos_raw = _get(raw, "position")
        position = None if pos_raw is None else _int(pos_raw, "position", 0, MAX_POSITION)
        surface = _text(_get(raw, "surface"), "surface", 32)
        request_id = _text(_get(raw, "request_id"), "request_id", 64)
        key = _text(_get(raw, "idempotency_key", "key"), "idempotency_key", 64)
        if not key:
            basis = f"{user}|{pin}|{kind}|{ts:.3f}|{dwell:.1f}|{request_id}|{position}"
            key = _derived_key(basis, seen)
    except ValueError as e:
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


def _derived_key(basis: str, seen: MutableMapping[int, int] | None) -> str:
    digest = hashlib.sha256(basis.encode()).hexdigest()
    if seen is None:
        return "h:" + digest[:40]
    slot = int(digest[:16], 16)
    n = seen.get(slot, 0)
    seen[slot] = n + 1
    # The first occurrence keeps the plain content key, so logs written before occurrence
    # indexes existed are still recognised on re-import.
    if n:
        digest = hashlib.sha256(f"{basis}|#{n}".encode()).hexdigest()
    return "h:" + digest[:40]


def parse_rows(
    rows: Iterable[tuple[int, Any] | RowError],
    window: TimeWindow,
    seen: MutableMapping[int, int] | None = None,
) -> tuple[list[tuple[int, dict[str, Any]]], list[RowError]]:
    """Parse every row (rows already rejected by the reader pass through as errors)."""
    counts: MutableMapping[int, int] = {} if seen is None else seen
    events: list[tuple[int, dict[str, Any]]] = []
    errors: list[RowError] = []
    for r in rows:
        if isinstance(r, RowError):
            errors.append(r)
            continue
        ev = parse_event(r[1], r[0], window, counts)
        if isinstance(ev, RowError):
            errors.append(ev)
        else:
            events.append((r[0], ev))
    return events, errors


def check_known(
    events: Iterable[tuple[int, dict[str, Any]]], known_users: set[int], known_pins: set[int]
) -> tuple[list[dict[str, Any]], list[RowError]]:
    """Split parsed events into those on known users and pins and one error per other row."""
    good: list[dict[str, Any]] = []
    bad: list[RowError] = []
    for row, ev in events:
        if ev["user_id"] not in known_users:
            bad.append(RowError(row, f"unknown user {ev['user_id']}"))
        elif ev["pin_id"] not in known_pins:
            bad.append(RowError(row, f"unknown pin {ev['pin_id']}"))
        else:
            good.append(ev)
    return good, bad


@dataclass(frozen=True)
class EventFilter:
    """Which logged events an admin lists or deletes; every given criterion must hold.

    ``after``/``before`` are epoch seconds (``after <= ts < before``); ``future`` selects times
    past the accepted window, ``invalid`` every row the parser would reject today (time outside
    the window, unknown kind, position or dwell out of range); ``all`` must be said explicitly
    to select the whole log.
    """

    user_id: int | None = None
    pin_id: int | None = None
    kind: str | None = None
    after: float | None = None
    before: float | None = None
    key: str | None = None
    min_id: int | None = None
    max_id: int | None = None
    future: bool = False
    invalid: bool = False
    all: bool = False

    @classmethod
    def parse(cls, **given: Any) -> EventFilter:
        """A filter from CLI options or an API body; ``InvalidInput`` names the bad criterion."""
        try:
            f = cls(
                user_id=_opt(given.get("user_id"), lambda v: _int(v, "user_id", 1, MAX_ID)),
                pin_id=_opt(given.get("pin_id"), lambda v: _int(v, "pin_id", 1, MAX_ID)),
                kind=_opt(given.get("kind"), _kind),
                after=_opt(given.get("after"), lambda v: parse_time(v, TimeWindow.unbounded())),
                before=_opt(given.get("before"), lambda v: parse_time(v, TimeWindow.unbounded())),
                key=_opt(given.get("key"), lambda v: _text(v, "key", 64)),
                min_id=_opt(given.get("min_id"), lambda v: _int(v, "min_id", 1, MAX_ID)),
                max_id=_opt(given.get("max_id"), lambda v: _int(v, "max_id", 1, MAX_ID)),
                future=bool(given.get("future")),
                invalid=bool(given.get("invalid")),
                all=bool(given.get("all")),
            )
        except ValueError as e:
            raise InvalidInput(f"bad event filter: {e}") from e
        if f.all and not f.is_empty():
            raise InvalidInput("'all' selects every event: give it alone, without criteria")
        return f

    def is_empty(self) -> bool:
        """True when no criterion is given (``all`` is not a criterion)."""
        return self == EventFilter(all=self.all)

    def to_dict(self) -> dict[str, Any]:
        """The criteria given (for the audit log and the answer)."""
        return {k: v for k, v in asdict(self).items() if v not in (None, False)}


def _opt(value: Any, conv: Any) -> Any:
    return None if value is None or value == "" else conv(value)


def _kind(value: Any) -> str:
    kind = value.strip().lower() if isinstance(value, str) else ""
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event type {_show(value)}; known: {', '.join(EVENT_KINDS)}")
    return kind


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
