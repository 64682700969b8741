"""Event filters in SQL select exactly what they say, on any logged rows: "invalid" is exactly
what the parser rejects today, and a deletion removes those rows and no others."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tastegraph.engagement.events import (
    EVENT_KINDS,
    MAX_DWELL_MS,
    MAX_POSITION,
    EventFilter,
    RowError,
    TimeWindow,
    parse_event,
)
from tastegraph.store import SQLStore, open_store

NOW = 1_764_633_600.0
WINDOW = TimeWindow.around(NOW, datetime(2000, 1, 1, tzinfo=timezone.utc), 300.0)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLStore]:
    path: Path = tmp_path_factory.mktemp("filters") / "t.db"
    s = open_store(f"sqlite:///{path}")
    yield s
    s.close()


# Mostly valid values, so that a row is often bad in one way only: that is what tells each
# clause of "invalid" apart.
GOOD_TS = [WINDOW.min_ts, NOW - 10, NOW, WINDOW.max_ts]
BAD_TS = [WINDOW.min_ts - 1, WINDOW.max_ts + 1, 4_070_908_800.0, 1e297, math.inf, 86_400.0]
ROW = st.fixed_dictionaries(
    {
        "user_id": st.integers(1, 3),
        "pin_id": st.integers(1, 3),
        "kind": st.sampled_from([*EVENT_KINDS, *EVENT_KINDS, "like"]),
        "ts": st.sampled_from(GOOD_TS * 3 + BAD_TS),
        "dwell_ms": st.sampled_from([10.0, 10.0, 0.0, MAX_DWELL_MS, MAX_DWELL_MS + 1, 1e30]),
        "position": st.sampled_from([None, 0, 7, MAX_POSITION, MAX_POSITION + 1, 2**40]),
    }
)
CRITERIA: dict[str, st.SearchStrategy[Any]] = {
    "user_id": st.integers(1, 3),
    "pin_id": st.integers(1, 3),
    "kind": st.sampled_from(EVENT_KINDS),
    "after": st.sampled_from([NOW - 10, NOW, 1e297]),
    "before": st.sampled_from([NOW, WINDOW.max_ts + 1, math.inf]),
    "min_id": st.integers(1, 20),
    "max_id": st.integers(1, 20),
    "future": st.just(True),
    "invalid": st.just(True),
}


@st.composite
def filters(draw: st.DrawFn) -> EventFilter:
    """Filters of zero to three criteria (more would select almost nothing)."""
    names = draw(st.lists(st.sampled_from(sorted(CRITERIA)), max_size=3, unique=True))
    return EventFilter(**{n: draw(CRITERIA[n]) for n in names})


def _rejected_by_parser(row: dict[str, Any]) -> bool:
    raw = {**row, "type": row["kind"], "idempotency_key": row["key"]}
    return isinstance(parse_event(raw, 0, WINDOW), RowError)


def _selects(f: EventFilter, row: dict[str, Any]) -> bool:
    checks = [
        f.user_id is None or row["user_id"] == f.user_id,
        f.pin_id is None or row["pin_id"] == f.pin_id,
        f.kind is None or row["kind"] == f.kind,
        f.after is None or row["ts"] >= f.after,
        f.before is None or row["ts"] < f.before,
        f.min_id is None or row["id"] >= f.min_id,
        f.max_id is None or row["id"] <= f.max_id,
        not f.future or row["ts"] > WINDOW.max_ts,
        not f.invalid or _rejected_by_parser(row),
    ]
    return all(checks)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(ROW, min_size=1, max_size=16), f=filters(), delete=st.booleans())
def test_filters_select_exactly_what_they_say(
    store: SQLStore, rows: list[dict[str, Any]], f: EventFilter, delete: bool
) -> None:
    store.delete_events(EventFilter(all=True), WINDOW, actor=(None, "test"))
    base = [{**r, "key": f"k{i}", "surface": "", "request_id": ""} for i, r in enumerate(rows)]
    store.add_events(base)
    logged = store.events_since(0)
    want = [r["id"] for r in logged if _selects(f, r)]
    if f.is_empty():
        with pytest.raises(Exception, match="no event filter"):
            store.count_events(f, WINDOW)
        return
    assert store.count_events(f, WINDOW) == len(want)
    assert [r["id"] for r in store.find_events(f, WINDOW, 100)] == want
    if delete:
        kept: list[int] = []
        n = store.delete_events(
            f, WINDOW, actor=(None, "test"), keep=lambda it: kept.extend(r["id"] for r in it)
        )
        assert n == len(want) and kept == want
        assert [r["id"] for r in store.events_since(0)] == [
            r["id"] for r in logged if r["id"] not in want
        ]


OK_ROW = {"user_id": 1, "pin_id": 1, "kind": "click", "ts": NOW, "dwell_ms": 0.0, "position": 3}


@pytest.mark.parametrize(
    "bad",
    [
        {"ts": WINDOW.max_ts + 1},
        {"ts": 1e297},
        {"ts": math.inf},
        {"ts": WINDOW.min_ts - 1},
        {"kind": "like"},
        {"position": -1},
        {"position": MAX_POSITION + 1},
        {"dwell_ms": -1.0},
        {"dwell_ms": MAX_DWELL_MS + 1},
        {"kind": "dwell", "dwell_ms": 0.0},
        {"user_id": 0},
        {"pin_id": -5},
    ],
)
def test_each_way_a_logged_row_can_be_invalid_is_selected(
    store: SQLStore, bad: dict[str, Any]
) -> None:
    store.delete_events(EventFilter(all=True), WINDOW, actor=(None, "test"))
    rows = [{**OK_ROW, "key": "ok"}, {**OK_ROW, **bad, "key": "bad"}]
    store.add_events([{**r, "surface": "", "request_id": ""} for r in rows])
    logged = store.events_since(0)
    assert [_rejected_by_parser(r) for r in logged] == [False, True]
    assert [r["key"] for r in store.find_events(EventFilter(invalid=True), WINDOW)] == ["bad"]
