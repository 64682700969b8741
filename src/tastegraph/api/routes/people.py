"""People routes: users, their boards, and saving pins to boards."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from tastegraph.api.auth import needs
from tastegraph.api.models import (
    NAME_PATTERN,
    BoardWithPins,
    Id,
    SavedPin,
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
