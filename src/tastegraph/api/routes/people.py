"""People routes: users, their boards, and saving pins to boards."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from tastegraph.api.auth import Principal, needs
from tastegraph.api.models import (
    NAME_PATTERN,
    BoardWithPins,
    Erasure,
    Id,
    SavedPin,
    UserExport,
    UserOut,
    UserWithBoards,
    errors,
)
from tastegraph.api.routes.common import READ_ONE, WRITE, app_of
from tastegraph.api.serialize import board_json, user_json

__all__ = ["router"]

router = APIRouter(tags=["users"])


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


@router.post(
    "/users",
    status_code=201,
    response_model=UserOut,
    responses={**WRITE, **errors(409)},
    dependencies=[needs("users:write")],
)
def create_user(request: Request, body: UserCreate) -> dict[str, Any]:
    """Create a user."""
    return user_json(app_of(request).store.create_user(body.handle, body.name))


@router.get(
    "/users/{user_id:int}",
    response_model=UserWithBoards,
    responses=READ_ONE,
    dependencies=[needs("users:read", enumerates=True)],
)
def get_user(request: Request, user_id: Id) -> dict[str, Any]:
    """A user and their boards."""
    store = app_of(request).store
    return user_json(store.get_user(user_id), store.user_boards(user_id))


@router.get(
    "/users/{user_id:int}/export",
    response_model=UserExport,
    responses={**READ_ONE, **errors(403)},
)
def export_user(
    request: Request, user_id: Id, who: Principal = needs("users:export")
) -> dict[str, Any]:
    """Everything stored about a user (profile, boards with their saves, engagement events)
    as one JSON document; audited."""
    tg = app_of(request)
    document = tg.people.export(user_id)
    tg.store.audit(who.token_id, who.role, "export_user", f"user:{user_id}")
    return document


@router.delete(
    "/users/{user_id:int}",
    response_model=Erasure,
    responses={**WRITE, **errors(404)},
)
def erase_user(request: Request, user_id: Id, who: Principal = needs("users:delete")) -> Any:
    """Erase a user: account, boards, saves and engagement events, in one transaction; feeds
    everywhere forget them (this process at once, others on their next catch-up). The audit
    log keeps that an erasure happened (a random reference and counts), not whose. Unknown
    or already erased: 404."""
    return app_of(request).people.erase(user_id, actor=(who.token_id, who.role))


@router.post(
    "/users/{user_id:int}/boards",
    status_code=201,
    response_model=BoardWithPins,
    responses={**WRITE, **errors(404, 409)},
    dependencies=[needs("boards:write")],
)
def create_board(request: Request, user_id: Id, body: BoardCreate) -> dict[str, Any]:
    """Create a board for a user."""
    return board_json(app_of(request).store.create_board(user_id, body.name, body.description))


@router.get(
    "/boards/{board_id:int}",
    response_model=BoardWithPins,
    responses=READ_ONE,
    dependencies=[needs("boards:read", enumerates=True)],
)
def get_board(request: Request, board_id: Id) -> dict[str, Any]:
    """A board and its pins."""
    return board_json(app_of(request).store.get_board(board_id))


@router.post(
    "/boards/{board_id:int}/pins",
    response_model=SavedPin,
    responses={**WRITE, **errors(404)},
    dependencies=[needs("boards:write")],
)
def save_pin(request: Request, board_id: Id, body: SaveRequest) -> dict[str, Any]:
    """Save a pin to a board (also logged as a ``save`` event)."""
    tg = app_of(request)
    board = tg.store.get_board(board_id)
    new = tg.engagement.save(board["user_id"], board_id, body.pin_id)
    return {"saved": True, "new": new, "board_id": board_id, "pin_id": body.pin_id}
