"""Routes for users, boards, saves and engagement events."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from tastegraph.api.auth import require
from tastegraph.api.models import (
    MAX_ID,
    NAME_PATTERN,
    BoardWithPins,
    EventsResult,
    FeedPage,
    Id,
    RelatedPage,
    SavedPin,
    UserOut,
    UserWithBoards,
    errors,
    thumbnail_url,
)
from tastegraph.engagement.events import EVENT_KINDS, EventFilter

__all__ = ["router"]

router = APIRouter()


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    handle: str = Field(..., min_length=1, max_length=64, pattern=NAME_PATTERN)
    name: str = Field("", max_length=200)


class BoardCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., min_length=1, max_length=200, pattern=NAME_PATTERN)
    description: str = Field("", max_length=2000)


class SaveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pin_id: Id


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[dict[str, Any]] = Field(..., max_length=10_000)


_WRITE = errors(401, 403, 422)  # 400 and 413 too: see http.document_body_errors
_READ_ONE = errors(401, 404, 422)


@router.post(
    "/users",
    tags=["users"],
    status_code=201,
    response_model=UserOut,
    responses={**_WRITE, **errors(409)},
)
def create_user(request: Request, body: UserCreate) -> dict[str, Any]:
    """Create a user."""
    require(request, "editor")
    return request.app.state.tg.store.create_user(body.handle, body.name)


@router.get(
    "/users/{user_id:int}", tags=["users"], response_model=UserWithBoards, responses=_READ_ONE
)
def get_user(request: Request, user_id: Id) -> dict[str, Any]:
    """A user and their boards."""
    require(request, "viewer")
    store = request.app.state.tg.store
    return {**store.get_user(user_id), "boards": store.user_boards(user_id)}


@router.post(
    "/users/{user_id:int}/boards",
    tags=["users"],
    status_code=201,
    response_model=BoardWithPins,
    responses={**_WRITE, **errors(404, 409)},
)
def create_board(request: Request, user_id: Id, body: BoardCreate) -> dict[str, Any]:
    """Create a board for a user."""
    require(request, "editor")
    return request.app.state.tg.store.create_board(user_id, body.name, body.description)


@router.get(
    "/boards/{board_id:int}", tags=["users"], response_model=BoardWithPins, responses=_READ_ONE
)
def get_board(request: Request, board_id: Id) -> dict[str, Any]:
    """A board and its pins."""
    require(request, "viewer")
    return request.app.state.tg.store.get_board(board_id)


@router.post(
    "/boards/{board_id:int}/pins",
    tags=["users"],
    response_model=SavedPin,
    responses={**_WRITE, **errors(404)},
)
def save_pin(request: Request, board_id: Id, body: SaveRequest) -> dict[str, Any]:
    """Save a pin to a board (also logged as a ``save`` event)."""
    require(request, "editor")
    tg = request.app.state.tg
    board = tg.store.get_board(board_id)
    new = tg.engagement.save(board["user_id"], board_id, body.pin_id)
    return {"saved": True, "new": new, "board_id": board_id, "pin_id": body.pin_id}


@router.post("/events", tags=["events"], response_model=EventsResult, responses=_WRITE)
def post_events(request: Request, body: EventBatch) -> dict[str, Any]:
    """Record a batch of engagement events; bad rows are reported, the rest kept.

    Times must lie between ``TASTEGRAPH_EVENTS_MIN_TIME`` and a few minutes past the server's
    clock. Idempotent: a row's ``idempotency_key`` identifies it; without one, its content and
    its occurrence among identical rows of the batch do (a re-sent batch adds nothing, two
    identical clicks in one batch are two events).
    """
    require(request, "editor")
    rows = list(enumerate(body.events))
    return request.app.state.tg.engagement.record(rows)


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


@router.post("/events/query", tags=["events"])
def query_events(
    request: Request, body: EventQuery, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> dict[str, Any]:
    """Count and list logged events (admins): e.g. ``{"future": true}`` finds far-future times."""
    who = require(request, "admin")
    tg = request.app.state.tg
    where = _filter(body)
    tg.store.audit(who.token_id, who.role, "read", "events")
    return tg.engagement.find(where, limit)


@router.post("/events/delete", tags=["events"])
def delete_events(request: Request, body: EventDelete) -> dict[str, Any]:
    """Delete logged events (admins), audited; an empty filter is refused unless ``all``.

    The deleted rows are kept in the data dir's ``deleted-events`` folder (importable again);
    feeds forget them at once.
    """
    who = require(request, "admin")
    tg = request.app.state.tg
    return tg.engagement.delete(
        _filter(body),
        actor=(who.token_id, who.role),
        by=f"token {who.token_id} ({who.name})",
        dry_run=body.dry_run,
    )


def _pins_json(tg: Any, ids: Any) -> dict[int, dict[str, Any]]:
    """``_pin_json(pin)`` of each of these pins that exists, by id.

    The feed routes need 20 to 100 pins per request: plain rows (``store.pin_records``, in the
    order of ``Pin.to_dict``; tests/integration/test_feed_api.py checks the result equals
    ``_pin_json(store.get_pin(id))``) and JSON built straight from them cost a third of going
    through ``store.get_pins`` and ``Pin`` objects (2 ms of a 9 ms related-pins request).
    """
    rows = tg.store.pin_records(ids)
    out: dict[int, dict[str, Any]] = {}
    for r in rows:
        pid = int(r[0])
        out[pid] = {
            "id": pid,
            "content_hash": r[1],
            "title": r[2],
            "description": r[3],
            "link": r[4],
            "board": r[5],
            "tags": list(r[6] or []),
            "labels": [{"label": str(a), "score": round(float(b), 4)} for a, b in (r[7] or [])],
            "attributes": dict(r[8] or {}),
            "source": r[9],
            "phash": r[10],
            "width": r[11],
            "height": r[12],
            "format": r[13],
            "dup_group": r[14],
            "created_at": r[15],
            "updated_at": r[16],
            "thumbnail_url": thumbnail_url(pid, r[1]),
        }
    return out


def _items(
    tg: Any, items: list[Any], pins: dict[int, dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Feed items as JSON objects, their pins (and the pins their reasons name) fetched in one
    query, less those already given."""
    pins = dict(pins or {})
    wanted = {it.pin for it in items} | {it.because for it in items if it.because is not None}
    pins.update(_pins_json(tg, wanted - pins.keys()))
    return [
        {
            "pin": pins[it.pin],
            "score": round(float(it.score), 6),
            "reason": it.reason,
            "source": it.source,
            "because": _because(it.because, pins),
        }
        for it in items
        if it.pin in pins
    ]


def _because(pin_id: int | None, pins: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    """The pin a reason names, for a thumbnail beside "because you saved this pin" (versioned by
    content like every thumbnail URL); none when that pin is gone."""
    if pin_id is None or pin_id not in pins:
        return None
    return {"pin_id": pin_id, "thumbnail_url": thumbnail_url(pin_id, pins[pin_id]["content_hash"])}


def _json(body: dict[str, Any]) -> Response:
    """The body serialised once, as FastAPI's JSONResponse would (no response-model pass: these
    hot routes build plain JSON types already)."""
    text = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Response(text.encode("utf-8"), media_type="application/json")


@router.get(
    "/users/{user_id:int}/feed",
    tags=["feed"],
    response_class=Response,
    responses={200: {"model": FeedPage}, **_READ_ONE, **errors(503)},
)
def home_feed(
    request: Request,
    user_id: Id,
    n: Annotated[int, Query(ge=1, le=100)] = 25,
    cursor: Annotated[
        str | None,
        Query(
            max_length=20000,
            pattern=r"^[A-Za-z0-9_-]+$",
            description="the next_cursor of the previous page (opaque)",
        ),
    ] = None,
) -> Response:
    """A user's personalised home feed; each item says why it is there."""
    require(request, "viewer")
    tg = request.app.state.tg
    items, nxt = tg.feeds.feed(user_id, n, cursor)
    return _json({"results": _items(tg, items), "next_cursor": nxt, "model": tg.feeds.version})


@router.get(
    "/pins/{pin_id:int}/related",
    tags=["feed"],
    response_class=Response,
    responses={200: {"model": RelatedPage}, **_READ_ONE, **errors(503)},
)
def related_pins(
    request: Request, pin_id: Id, n: Annotated[int, Query(ge=1, le=100)] = 20
) -> Response:
    """Related pins: visual similarity fused with co-engagement, near-duplicates collapsed."""
    require(request, "viewer")
    tg = request.app.state.tg
    items = tg.feeds.related(pin_id, n, verify=False)
    # The pin itself is fetched with its results: one query says it exists and gives them.
    pins = _pins_json(tg, [pin_id, *(it.pin for it in items)])
    if pin_id not in pins:
        tg.store.get_pin(pin_id)  # raises NotFound (e.g. deleted since the engine was built)
    return _json({"results": _items(tg, items, pins)})
