"""Tables the ``tastegraph`` command prints (the ``--json`` forms print the data as it is)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from rich.markup import escape
from rich.table import Table

__all__ = [
    "boards_table",
    "dict_table",
    "index_table",
    "ranker_verdict",
    "simulate_table",
    "train_table",
    "users_table",
]


def _cell(value: Any) -> str:
    return escape(str(value if value is not None else ""))


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(obj, Mapping) and obj:
        rows: list[tuple[str, str]] = []
        for k, v in obj.items():
            rows.extend(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return rows
    if isinstance(obj, float):
        return [(prefix, f"{obj:.4g}")]
    if isinstance(obj, list | tuple):
        return [(prefix, ", ".join(str(x) for x in obj) or "-")]
    return [(prefix, "-" if obj is None or obj == {} else str(obj))]


def dict_table(res: Mapping[str, Any], title: str) -> Table:
    """A report of nested figures as ``key.sub | value`` rows (``--json`` keeps the nesting)."""
    t = Table("", "", title=escape(title), show_header=False)
    for key, value in _flatten(res):
        t.add_row(escape(key), escape(value))
    return t


def index_table(stats: Mapping[str, Mapping[str, Any]]) -> Table:
    """One row per vector space: what its index holds after a rebuild."""
    t = Table("space", "vectors", "dim", "model", title="indexes")
    for space, st in stats.items():
        t.add_row(space, f"{int(st['size']):,}", str(st["dim"]), _cell(st["model_id"]))
    return t


def ranker_verdict(res: Mapping[str, Any], train_fraction: float) -> str:
    """Whether ``tastegraph train`` fitted the learned ranker and, when not, why not.

    The ranker learns from logged feed requests in the part of the log after the first
    ``train_fraction`` (that part only labels): a request counts when it showed two or more
    pins and one of them was engaged with (closeup, click, save or a long dwell) within the
    label window.
    """
    if res.get("ranker"):
        return (
            f"trained on {int(res.get('train_groups', 0)):,} logged feed requests "
            f"({int(res.get('train_rows', 0)):,} impressions)"
        )
    events = int(res.get("events", 0))
    held = 1.0 - train_fraction
    # Two impressions of one request and one engagement with either, all in the labelling part.
    needed = math.ceil(3 / held)
    first = int(events * train_fraction)
    why = (
        f"not trained (the fixed linear score ranks the feed): the ranker learns from feed "
        f"requests in the last {held:.0%} of the event log that showed 2+ pins with one of them "
        f"opened, clicked, saved or dwelt on; "
    )
    if events == 0:
        return why + f"the log has no usable events (needs at least {needed})"
    if events < needed:
        return why + f"the log has {events} usable events, it needs at least {needed}"
    return why + (
        f"events {first + 1:,}-{events:,} of {events:,} hold no such request; log feed "
        f"impressions with their engagement (`tastegraph events import`) and train again"
    )


def train_table(res: Mapping[str, Any], train_fraction: float) -> Table:
    t = Table("", "", title="train", show_header=False)
    t.add_row("model version", _cell(res.get("version")))
    t.add_row("events used", f"{int(res.get('events', 0)):,}")
    if res.get("skipped_events"):
        t.add_row("events skipped (unknown pins)", f"{int(res['skipped_events']):,}")
    t.add_row("events building state", f"{int(res.get('state_events', 0)):,}")
    t.add_row("training requests", f"{int(res.get('train_groups', 0)):,}")
    t.add_row("training impressions", f"{int(res.get('train_rows', 0)):,}")
    t.add_row("users", f"{int(res.get('users', 0)):,}")
    t.add_row("seconds", _cell(res.get("seconds")))
    t.add_row("ranker", escape(ranker_verdict(res, train_fraction)))
    return t


_METRICS = (
    ("saves_per_session", "saves / session", "{:.3f}"),
    ("dwell_per_session_s", "dwell s / session", "{:.1f}"),
    ("hide_rate", "hide rate", "{:.3f}"),
    ("coverage", "coverage", "{:.1%}"),
)


def _interval(m: Mapping[str, float], fmt: str) -> str:
    mean, lo, hi = (float(m.get(k, math.nan)) for k in ("mean", "lo", "hi"))
    if not math.isfinite(mean):
        return "-"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return fmt.format(mean)
    return f"{fmt.format(mean)} [{fmt.format(lo)}, {fmt.format(hi)}]"


def simulate_table(res: Mapping[str, Any]) -> Table:
    """Policies side by side, each metric as mean [95% interval]."""
    t = Table(
        "policy",
        "users",
        "sessions",
        "impressions",
        *(title for _, title, _ in _METRICS),
        title="simulated A/B test (95% intervals over people)",
    )
    for name, pol in res.get("policies", {}).items():
        t.add_row(
            _cell(name),
            f"{int(pol.get('users', 0)):,}",
            f"{int(pol.get('sessions', 0)):,}",
            f"{int(pol.get('impressions', 0)):,}",
            *(_interval(pol.get(key, {}), fmt) for key, _, fmt in _METRICS),
        )
    lift = res.get("lift") or {}
    if lift and math.isfinite(float(lift.get("mean", math.nan))):
        met = "met" if lift.get("target_met") else "not met"
        t.caption = (
            f"tastegraph vs popular, dwell per session: {lift['mean']:+.1%} "
            f"[{lift['lo']:+.1%}, {lift['hi']:+.1%}] (target +19%: {met})"
        )
    return t


def users_table(users: Sequence[Mapping[str, Any]]) -> Table:
    t = Table("id", "handle", "name", "created", title="users")
    for u in users:
        t.add_row(str(u["id"]), _cell(u["handle"]), _cell(u.get("name")), _cell(u["created_at"]))
    return t


def boards_table(boards: Sequence[Mapping[str, Any]], title: str = "boards") -> Table:
    t = Table("id", "user", "name", "pins", "description", title=escape(title))
    for b in boards:
        t.add_row(
            str(b["id"]),
            str(b["user_id"]),
            _cell(b["name"]),
            str(len(b.get("pins", []))),
            _cell(b.get("description")),
        )
    return t
