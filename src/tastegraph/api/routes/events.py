"""Event routes: recording engagement, and finding or deleting logged events (admins)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from tastegraph.api.auth import Principal, needs
from tastegraph.api.models import MAX_ID, EventsDeleted, EventsFound, EventsResult
from tastegraph.api.routes.common import ADMIN, WRITE, app_of
from tastegraph.engagement.events import EVENT_KINDS, EventFilter

__all__ = ["router"]

router = APIRouter(tags=["events"])


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[dict[str, Any]] = Field(..., max_length=10_000)


@router.post(
    "/events", response_model=EventsResult, responses=WRITE, dependencies=[needs("events:write")]
)
def post_events(request: Request, body: EventBatch) -> dict[str, Any]:
    """Record a batch of engagement events; bad rows are reported, the rest kept.

    Times must lie between ``TASTEGRAPH_EVENTS_MIN_TIME`` and a few minutes past the server's
    clock. Idempotent: a row's ``idempotency_key`` identifies it; without one, its content and
    its occurrence among identical rows of the batch do (a re-sent batch adds nothing, two
    identical clicks in one batch are two events).
    """
    rows = list(enumerate(body.events))
    return app_of(request).engagement.record(rows)


# The JSON Schema of a criterion when it is given (not null): the filter needs at least one.
_GIVEN: dict[str, dict[str, Any]] = {
    "user_id": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    "pin_id": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    "kind": {"enum": list(EVENT_KINDS)},
    "after": {"type": "string", "format": "date-time"},
    "before": {"type": "string", "format": "date-time"},
    "key": {"type": "string", "minLength": 1, "maxLength": 64},
    "min_id": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    "max_id": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    "future": {"const": True},
    "invalid": {"const": True},
}
_ABSENT = {
    k: ({"const": False} if k in ("future", "invalid") else {"type": "null"}) for k in _GIVEN
}
# "At least one criterion, or `all` alone": what the server enforces, said in the document so a
# schema-valid request is never refused (an empty filter would otherwise delete nothing or all).
_ONE_CRITERION: dict[str, Any] = {
    "anyOf": [
        *(
            {"required": [k], "properties": {k: v, "all": {"const": False}}}
            for k, v in _GIVEN.items()
        ),
        {"required": ["all"], "properties": {**_ABSENT, "all": {"const": True}}},
    ]
}


def _not_bool(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError("an id is a number, not true/false")
    return v


# Lax about 7.0 (JSON Schema calls it an integer), strict about true (it is not user 1).
_FilterId = Annotated[int, Field(ge=1, le=MAX_ID, strict=False), BeforeValidator(_not_bool)]
_EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
_LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)


class EventQuery(BaseModel):
    """Which logged events to count, list or delete; every criterion given must hold."""

    # Strict: on a deletion, `true` must not mean user 1 nor "yes" mean everything.
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_ONE_CRITERION)
    user_id: _FilterId | None = None
    pin_id: _FilterId | None = None
    kind: Literal["impression", "closeup", "click", "save", "hide", "dwell"] | None = None
    after: datetime | None = Field(
        None, strict=False, description="ts >= this (ISO 8601; naive means UTC)"
    )
    before: datetime | None = Field(
        None, strict=False, description="ts < this (ISO 8601; naive means UTC)"
    )
    key: str | None = Field(None, min_length=1, max_length=64)
    min_id: _FilterId | None = None
    max_id: _FilterId | None = None
    future: bool = Field(False, description="times past the accepted window (far future)")
    invalid: bool = Field(False, description="rows the event parser would reject today")
    all: bool = Field(False, description="every event; must be given alone")


class EventDelete(EventQuery):
    dry_run: bool = Field(False, description="only count and show what would be deleted")


def _bound(t: datetime | None) -> str | None:
    """A time bound as the filter reads it, clamped to the years the log can hold."""
    if t is None:
        return None
    t = t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)
    return min(max(t, _EARLIEST), _LATEST).isoformat()


def _filter(body: EventQuery) -> EventFilter:
    given = body.model_dump(exclude={"dry_run"})
    given.update(after=_bound(body.after), before=_bound(body.before))
    return EventFilter.parse(**given)


@router.post("/events/query", response_model=EventsFound, responses=ADMIN)
def query_events(
    request: Request,
    body: EventQuery,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    who: Principal = needs("events:read", enumerates=True),
) -> dict[str, Any]:
    """Count and list logged events (admins): e.g. ``{"future": true}`` finds far-future times."""
    tg = app_of(request)
    where = _filter(body)
    tg.store.audit(who.token_id, who.role, "read", "events")
    return tg.engagement.find(where, limit)


@router.post(
    "/events/delete",
    response_model=EventsDeleted,
    response_model_exclude_unset=True,
    responses=ADMIN,
)
def delete_events(
    request: Request, body: EventDelete, who: Principal = needs("events:delete")
) -> dict[str, Any]:
    """Delete logged events (admins), audited; an empty filter is refused unless ``all``.

    The deleted rows are kept in the data dir's ``deleted-events`` folder (importable again);
    feeds forget them at once.
    """
    tg = app_of(request)
    return tg.engagement.delete(
        _filter(body),
        actor=(who.token_id, who.role),
        by=f"token {who.token_id} ({who.name})",
        dry_run=body.dry_run,
    )
