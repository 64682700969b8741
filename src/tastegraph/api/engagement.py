"""Routes for users, boards, saves and engagement events."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from tastegraph.api.auth import require

__all__ = ["router"]

router = APIRouter()


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    handle: str = Field(..., min_length=1, max_length=64)
    name: str = Field("", max_length=200)


class BoardCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., min_length=1, max_length=200)
    description: str = Field("", max_length=2000)


class SaveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pin_id: int


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[dict[str, Any]] = Field(..., max_length=10_000)


@router.post("/users", tags=["users"], status_code=201)
def create_user(request: Request, body: UserCreate) -> dict[str, Any]:
    """Create a user."""
    require(request, "editor")
    return request.app.state.tg.store.create_user(body.handle, body.name)


@router.get("/users/{user_id}", tags=["users"])
def get_user(request: Request, user_id: int) -> dict[str, Any]:
    """A user and their boards."""
    require(request, "viewer")
    store = request.app.state.tg.store
    return {**store.get_user(user_id), "boards": store.user_boards(user_id)}


@router.post("/users/{user_id}/boards", tags=["users"], status_code=201)
def create_board(request: Request, user_id: int, body: BoardCreate) -> dict[str, Any]:
    """Create a board for a user."""
    require(request, "editor")
    return request.app.state.tg.store.create_board(user_id, body.name, body.description)


@router.get("/boards/{board_id}", tags=["users"])
def get_board(request: Request, board_id: int) -> dict[str, Any]:
    """A board and its pins."""
    require(request, "viewer")
    return request.app.state.tg.store.get_board(board_id)


@router.post("/boards/{board_id}/pins", tags=["users"])
def save_pin(request: Request, board_id: int, body: SaveRequest) -> dict[str, Any]:
    """Save a pin to a board (also logged as a ``save`` event)."""
    require(request, "editor")
    tg = request.app.state.tg
    board = tg.store.get_board(board_id)
    new = tg.engagement.save(board["user_id"], board_id, body.pin_id)
    return {"saved": True, "new": new, "board_id": board_id, "pin_id": body.pin_id}


@router.post("/events", tags=["events"])
def post_events(request: Request, body: EventBatch) -> dict[str, Any]:
    """Record a batch of engagement events; bad rows are reported, the rest kept (idempotent)."""
    require(request, "editor")
    rows = list(enumerate(body.events))
    return request.app.state.tg.engagement.record(rows)


def _items(tg: Any, items: list[Any]) -> list[dict[str, Any]]:
    from tastegraph.api.server import _pin_json

    pins = tg.store.get_pins([it.pin for it in items])
    return [
        {
            "pin": _pin_json(pins[it.pin]),
            "score": round(float(it.score), 6),
            "reason": it.reason,
            "source": it.source,
        }
        for it in items
        if it.pin in pins
    ]


@router.get("/users/{user_id}/feed", tags=["feed"])
def home_feed(
    request: Request,
    user_id: int,
    n: Annotated[int, Query(ge=1, le=100)] = 25,
    cursor: Annotated[str | None, Query(max_length=20000)] = None,
) -> dict[str, Any]:
    """A user's personalised home feed; each item says why it is there."""
    require(request, "viewer")
    tg = request.app.state.tg
    items, nxt = tg.feeds.feed(user_id, n, cursor)
    return {"results": _items(tg, items), "next_cursor": nxt, "model": tg.feeds.version}


@router.get("/pins/{pin_id}/related", tags=["feed"])
def related_pins(
    request: Request, pin_id: int, n: Annotated[int, Query(ge=1, le=100)] = 20
) -> dict[str, Any]:
    """Related pins: visual similarity fused with co-engagement, near-duplicates collapsed."""
    require(request, "viewer")
    tg = request.app.state.tg
    return {"results": _items(tg, tg.feeds.related(pin_id, n))}
