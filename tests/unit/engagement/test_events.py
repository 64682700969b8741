"""Event parsing: times in a window (units told apart), bounded ids and text, per-row errors,
content keys that keep real repeats apart. Property tests feed it any JSON-ish value."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tastegraph.engagement.events import (
    EVENT_KINDS,
    MAX_DWELL_MS,
    MAX_ID,
    MAX_POSITION,
    EventFilter,
    RowError,
    TimeWindow,
    parse_event,
    parse_rows,
    parse_time,
)
from tastegraph.errors import InvalidInput
from tastegraph.settings import Settings

NOW = 1_764_633_600.0  # 2025-12-02T00:00:00Z
MIN = datetime(2000, 1, 1, tzinfo=timezone.utc)
WINDOW = TimeWindow.around(NOW, MIN, 300.0)
T = 1_714_557_600  # 2024-05-01T10:00:00Z


def _event(**kw: Any) -> dict[str, Any]:
    return {"user_id": 1, "pin_id": 2, "type": "click", "ts": T, **kw}


@pytest.mark.parametrize(
    "value",
    [
        T,
        float(T),
        str(T),
        T * 1000,
        T * 10**6,  # microseconds: the value that broke every feed
        T * 10**9,
        str(T * 10**9),
        "2024-05-01T10:00:00Z",
        "2024-05-01T10:00:00",  # naive: UTC
        "2024-05-01T12:00:00+02:00",
        " 2024-05-01T10:00:00z ",
    ],
)
def test_times_in_every_unit_mean_the_same_instant(value: Any) -> None:
    assert parse_time(value, WINDOW) == pytest.approx(T, abs=1e-6)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (1e300, "too large"),
        (10**400, "too large"),
        ("1" * 60, "too large"),
        (math.inf, "finite"),
        (math.nan, "finite"),
        ("nan", "finite"),
        ("-inf", "finite"),
        (-1, "before 1970"),
        ("2099-01-01T00:00:00Z", "after the latest"),
        (4_070_908_800_000, "after the latest"),  # 2099 in milliseconds
        (NOW + 301, "after the latest"),
        ("1999-12-31T23:59:59Z", "before the earliest"),
        (86_400, "before the earliest"),
        ("0001-01-01T00:00:00+05:00", "before the earliest"),  # year 0 in UTC
        ("99999-01-01T00:00:00Z", "bad time"),
        ("+10000-01-01", "bad time"),
        ("yesterday", "bad time"),
        ("2024-05-01T10:00:00." + "0" * 60, "bad time"),
        ([T], "bad time"),
        ({"t": T}, "bad time"),
        (True, "missing"),
        (None, "missing"),
        ("", "missing"),
    ],
)
def test_times_outside_the_window_or_unreadable_are_rejected_with_what_and_why(
    value: Any, says: str
) -> None:
    with pytest.raises(ValueError, match=says) as e:
        parse_time(value, WINDOW)
    msg = str(e.value)
    assert len(msg) < 400
    if says in ("too large", "after the latest", "before the earliest"):
        # what was received and what range is accepted
        assert repr(value)[:20] in msg and "2000-01-01T00:00:00Z to 2025-12-02T00:05:00Z" in msg


def test_window_comes_from_settings_and_the_passed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASTEGRAPH_EVENTS_MIN_TIME", "2020-01-01T00:00:00Z")
    monkeypatch.setenv("TASTEGRAPH_EVENTS_MAX_FUTURE_S", "60")
    w = TimeWindow.from_settings(Settings(), NOW)
    assert w.min_ts == datetime(2020, 1, 1, tzinfo=timezone.utc).timestamp()
    assert w.max_ts == NOW + 60
    with pytest.raises(ValueError, match="before the earliest"):
        parse_time(T - 5 * 365 * 86400, w)
    assert parse_time(NOW + 60, w) == NOW + 60
    with pytest.raises(ValueError):
        Settings(events_min_time="2020-01-01T00:00:00")  # type: ignore[arg-type]  # no zone


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("user_id", 99999999999999999999999),
        ("user_id", 2**63),
        ("user_id", 1e300),
        ("user_id", "9" * 30),
        ("user_id", 0),
        ("user_id", -3),
        ("user_id", True),
        ("user_id", 1.5),
        ("user_id", math.inf),
        ("pin_id", 2**64),
        ("pin_id", None),
        ("position", MAX_POSITION + 1),
        ("position", 2**40),
        ("position", -1),
        ("dwell_ms", 1e300),
        ("dwell_ms", MAX_DWELL_MS * 2),
        ("dwell_ms", "abc"),
        ("dwell_ms", [1]),
        ("surface", "\ud800"),  # a lone surrogate: SQLite cannot store it
        ("surface", "x" * 33),
        ("request_id", {"a": 1}),
        ("idempotency_key", "k" * 65),
        ("type", ["click"]),
    ],
)
def test_each_field_out_of_range_is_a_row_error_naming_it(field: str, value: Any) -> None:
    got = parse_event(_event(**{field: value}), 7, WINDOW)
    assert isinstance(got, RowError) and got.row == 7
    assert field.split("_")[0] in got.message or "event type" in got.message


def test_extreme_ids_that_fit_are_kept() -> None:
    got = parse_event(_event(user_id=MAX_ID, pin_id=str(MAX_ID), position="12"), 1, WINDOW)
    assert isinstance(got, dict)
    assert (got["user_id"], got["pin_id"], got["position"]) == (MAX_ID, MAX_ID, 12)


# -------------------------------------------------------------------------- properties
JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(exclude_categories=()), max_size=80)  # surrogates too
    | st.sampled_from(["", " ", "1e300", "nan", "2099-01-01T00:00:00Z", "1714557600000000"])
    | st.sampled_from(["\ud800", "9" * 30, "-0", "+5", "1_0", "5.0", "2024-05-01", "P1D"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)
FIELDS = ("type", "user_id", "pin_id", "ts", "dwell_ms", "position", "surface", "request_id")
FIELDS += ("idempotency_key", "user", "pin", "timestamp", "time", "kind", "key", "dwell")


def _valid_base() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "type": st.sampled_from(EVENT_KINDS),
            "user_id": st.integers(1, MAX_ID),
            "pin_id": st.integers(1, MAX_ID),
            "ts": st.floats(WINDOW.min_ts, WINDOW.max_ts),
            "dwell_ms": st.floats(1, MAX_DWELL_MS),
        }
    )


def _assert_clean(ev: dict[str, Any]) -> None:
    assert WINDOW.min_ts <= ev["ts"] <= WINDOW.max_ts and math.isfinite(ev["ts"])
    assert ev["kind"] in EVENT_KINDS
    for name in ("user_id", "pin_id"):
        assert type(ev[name]) is int and 1 <= ev[name] <= MAX_ID
    pos = ev["position"]
    assert pos is None or (type(pos) is int and 0 <= pos <= MAX_POSITION)
    assert type(ev["dwell_ms"]) is float and 0 <= ev["dwell_ms"] <= MAX_DWELL_MS
    for name, most in (("surface", 32), ("request_id", 64), ("key", 64)):
        assert isinstance(ev[name], str) and len(ev[name]) <= most
        ev[name].encode("utf-8")  # storable
    assert ev["key"]
    json.dumps(ev, allow_nan=False)


@settings(max_examples=400, deadline=None)
@given(base=_valid_base(), field=st.sampled_from(FIELDS), value=JSONISH)
def test_any_value_in_any_field_gives_a_clean_event_or_a_row_error(
    base: dict[str, Any], field: str, value: Any
) -> None:
    got = parse_event({**base, field: value}, 3, WINDOW, {})
    if isinstance(got, RowError):
        assert got.row == 3 and got.message and len(got.message) < 600
    else:
        _assert_clean(got)


@settings(max_examples=200, deadline=None)
@given(raw=st.dictionaries(st.sampled_from(FIELDS), JSONISH, max_size=10) | JSONISH)
def test_any_json_row_never_raises(raw: Any) -> None:
    got = parse_event(raw, 1, WINDOW)
    if not isinstance(got, RowError):
        _assert_clean(got)


@settings(max_examples=200, deadline=None)
@given(
    seconds=st.integers(int(WINDOW.min_ts), int(WINDOW.max_ts)),
    unit=st.sampled_from([1, 10**3, 10**6, 10**9]),
    as_text=st.booleans(),
)
def test_epoch_units_are_told_apart_by_magnitude(seconds: int, unit: int, as_text: bool) -> None:
    value: Any = seconds * unit
    assert parse_time(str(value) if as_text else value, WINDOW) == pytest.approx(seconds)
    iso = datetime.fromtimestamp(seconds, timezone.utc).isoformat()
    assert parse_time(iso, WINDOW) == seconds


@settings(max_examples=200, deadline=None)
@given(
    offset=st.one_of(st.floats(301, 1e300), st.floats(-1e300, WINDOW.min_ts - NOW - 1e-3)),
    unit=st.sampled_from([1, 10**3, 10**6, 10**9]),
)
def test_times_outside_the_window_are_rejected_whatever_the_unit(offset: float, unit: int) -> None:
    ts = NOW + offset
    value = ts * unit
    # The unit is told by magnitude: a far-future time in seconds can have the magnitude of a
    # valid time in micro- or nanoseconds and is then read (correctly) as that one.
    assume(
        not any(
            0 <= value < limit and WINDOW.min_ts <= value / per <= WINDOW.max_ts
            for limit, per in ((1e11, 1), (1e14, 1e3), (1e17, 1e6), (1e20, 1e9))
        )
    )
    with pytest.raises(ValueError):
        parse_time(value, WINDOW)
    if abs(ts) < 2e11:
        dt = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=ts)
        with pytest.raises(ValueError):
            parse_time(dt.isoformat(), WINDOW)


# ------------------------------------------------------------------------ idempotency
def test_identical_rows_of_one_batch_are_distinct_events_and_a_resend_is_not() -> None:
    rows = [(1, _event()), (2, _event()), (3, _event(type="save"))]
    first, errors = parse_rows(rows, WINDOW)
    assert not errors
    keys = [e["key"] for _, e in first]
    assert len(set(keys)) == 3  # a double click is two clicks
    again, _ = parse_rows(rows, WINDOW)
    assert [e["key"] for _, e in again] == keys  # the same batch re-sent: the same keys
    # The first occurrence keeps the key events were given before occurrence indexes.
    alone = parse_event(_event(), 1, WINDOW)
    assert isinstance(alone, dict) and alone["key"] == keys[0]
    # A client key is taken as it is: the client says these are one event.
    keyed, _ = parse_rows([(1, _event(key="k")), (2, _event(key="k"))], WINDOW)
    assert [e["key"] for _, e in keyed] == ["k", "k"]


@settings(max_examples=100, deadline=None)
@given(
    picks=st.lists(st.integers(0, 3), min_size=1, max_size=30),
    split=st.integers(0, 30),
)
def test_derived_keys_count_repeats_across_the_batches_of_one_file(
    picks: list[int], split: int
) -> None:
    distinct = [_event(pin_id=1 + i % 2, ts=T + i // 2) for i in range(4)]
    rows = [(n, distinct[i]) for n, i in enumerate(picks)]
    whole, _ = parse_rows(rows, WINDOW)
    seen: dict[int, int] = {}
    a, _ = parse_rows(rows[:split], WINDOW, seen)
    b, _ = parse_rows(rows[split:], WINDOW, seen)
    keys = [e["key"] for _, e in whole]
    assert [e["key"] for _, e in a + b] == keys  # file batches change nothing
    assert len(set(keys)) == len(keys)  # every row is its own event
    # Re-reading the file (any order of its identical rows) gives the same set of keys.
    back, _ = parse_rows(list(reversed(rows)), WINDOW)
    assert {e["key"] for _, e in back} == set(keys)


# ----------------------------------------------------------------------------- filters
def test_event_filter_parsing() -> None:
    f = EventFilter.parse(user_id="5", kind="Click", before="2024-05-01T10:00:00Z", max_id=9)
    assert (f.user_id, f.kind, f.before, f.max_id) == (5, "click", T, 9)
    assert f.to_dict() == {"user_id": 5, "kind": "click", "before": T, "max_id": 9}
    assert EventFilter.parse().is_empty() and EventFilter.parse(all=True).is_empty()
    assert not EventFilter.parse(future=True).is_empty()
    # Far-future bounds are fine in a filter: it looks at what is stored.
    assert EventFilter.parse(after="2099-01-01T00:00:00Z").after == 4070908800.0
    for bad in ({"kind": "like"}, {"user_id": 2**64}, {"after": "soon"}, {"all": 1, "pin_id": 3}):
        with pytest.raises(InvalidInput):
            EventFilter.parse(**bad)
