"""What the API accepts and answers, as types: the OpenAPI document is generated from these.

Ids are typed (``Id``) wherever they enter, so a value SQLite cannot hold (or that no row can
have) is refused as invalid input before it reaches a query. Response models describe every
success body, and ``ErrorBody`` the one error shape, so the document tells clients the truth.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "MAX_ID",
    "AuditList",
    "Because",
    "BoardOut",
    "BoardWithPins",
    "Duplicates",
    "Erasure",
    "ErrorBody",
    "EventRow",
    "EventsDeleted",
    "EventsFound",
    "EventsResult",
    "FeedPage",
    "Health",
    "Id",
    "PinCreated",
    "PinList",
    "PinOut",
    "QuarantineList",
    "Ready",
    "RelatedPage",
    "SavedPin",
    "SearchPage",
    "TokenCreated",
    "TokenList",
    "UserExport",
    "UserWithBoards",
    "content_version",
    "errors",
    "thumbnail_url",
]

# Every id comes from a sequence starting at 1. The ceiling is the largest integer a JSON number
# carries exactly (JavaScript's MAX_SAFE_INTEGER), not SQLite's 2**63-1: a client sending
# 2**63-1 as a double sends 2**63, which a float-based schema check still calls valid
# (schemathesis found this), and SQLite cannot hold.
MAX_ID = 2**53 - 1
Id = Annotated[int, Field(ge=1, le=MAX_ID, description="an id (1 to 2**53-1)")]

# One line of text someone typed: no control characters, nothing blank at either end. The store
# strips names, so a name of only spaces (or a newline) would otherwise pass the schema and then
# be refused. Spelled out rather than ``\s``, which means different sets in the JSON Schema
# (ECMAScript), pydantic (Rust) and ``str.strip`` (Python) dialects: this is the union.
_BLANK = r"\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_CONTROL = r"\x00-\x1f\x7f-\x9f"
NAME_PATTERN = f"^[^{_BLANK}]([^{_CONTROL}]*[^{_BLANK}])?$"
# Words to search for: something that is left after stripping.
WORDS_PATTERN = f"[^{_BLANK}]"
# ``attr`` filters: ``key:value`` with the key characters ``filter_ids`` accepts.
ATTR_PATTERN = r"^[A-Za-z0-9_\-]{1,64}:"
# ``x0,y0,x1,y1``: four numbers ``float()`` reads (whether the box lies inside the image depends
# on the image, so that is the server's to say).
_NUMBER = r" *-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)? *"
BOX_PATTERN = f"^{_NUMBER}(,{_NUMBER}){{3}}$"
# What the server checks before fetching; whether the rest is a reachable image is not a schema
# question (an unreachable or non-image URL answers 422, URL fetching switched off 403).
HTTP_URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://"


def content_version(content_hash: str) -> str:
    return content_hash[:16]


def thumbnail_url(pin_id: int, content_hash: str) -> str:
    """The thumbnail's URL, versioned by the image's content: a browser holding a thumbnail for
    this URL holds this image's, whatever else has had the id."""
    return f"/pins/{pin_id}/thumbnail?v={content_version(content_hash)}"


# ------------------------------------------------------------------ errors
class ErrorInfo(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. not_found")
    message: str
    hint: str | None = Field(None, description="what to do next")
    details: Any = None


class ErrorBody(BaseModel):
    """The one error shape of every route."""

    error: ErrorInfo


_WHY = {
    400: "the body is not valid JSON or multipart data",
    401: "no token, or an unknown or revoked one",
    403: "the token's role cannot do this",
    404: "no such resource",
    405: "method not allowed (see the Allow header)",
    409: "conflicts with the current state",
    413: "request body too large",
    422: "invalid input",
    429: "too many requests or failed credentials: wait Retry-After seconds",
    503: "models, indexes or feeds are not loaded yet",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for these error statuses, each with the error shape."""
    return {c: {"model": ErrorBody, "description": _WHY[c]} for c in codes}


# -------------------------------------------------------------------- pins
class Label(BaseModel):
    label: str
    score: float


class PinOut(BaseModel):
    id: int
    content_hash: str
    title: str
    description: str
    link: str
    board: str
    tags: list[str]
    labels: list[Label]
    attributes: dict[str, Any]
    source: str
    phash: str
    width: int
    height: int
    format: str
    dup_group: int | None
    created_at: str
    updated_at: str
    thumbnail_url: str = Field(description="changes whenever the image does (cache-safe)")


class PinList(BaseModel):
    results: list[PinOut]
    total: int
    next_offset: int | None


class PinCreated(BaseModel):
    created: bool = Field(description="false when the image was already in the catalog")
    pin: PinOut


# ------------------------------------------------------------------ search
class HitOut(BaseModel):
    pin: PinOut
    score: float
    signals: dict[str, float] | None = Field(
        None, description="per-signal scores, only with explain=true"
    )


class SearchPage(BaseModel):
    results: list[HitOut]
    total: int | None = Field(
        description="how many results the query has in all, when known exactly; null when the "
        "search stopped before finding them all (then next_offset says whether there are more)"
    )
    offset: int
    limit: int
    next_offset: int | None


class DupGroup(BaseModel):
    group: int
    pins: list[int]


class Duplicates(BaseModel):
    groups: list[DupGroup]
    total: int


# ------------------------------------------------------------------- admin
class QuarantineRow(BaseModel):
    source: str
    reason: str
    message: str
    run_id: str


class QuarantineList(BaseModel):
    results: list[QuarantineRow]
    total: int


class TokenOut(BaseModel):
    id: int
    name: str
    role: str
    created_at: str
    revoked_at: str | None = None


class TokenList(BaseModel):
    results: list[TokenOut]


class TokenCreated(TokenOut):
    token: str = Field(description="the secret, shown this once")


class AuditEntry(BaseModel):
    id: int
    at: str
    token_id: int | None
    role: str
    action: str
    target: str


class AuditList(BaseModel):
    results: list[AuditEntry]


class Health(BaseModel):
    status: str
    version: str


class Ready(BaseModel):
    ready: bool
    checks: dict[str, Any]


# ------------------------------------------------------ users and engagement
class UserOut(BaseModel):
    id: int
    handle: str
    name: str
    created_at: str


class BoardOut(BaseModel):
    id: int
    user_id: int
    name: str
    description: str
    created_at: str


class UserWithBoards(UserOut):
    boards: list[BoardOut]


class BoardWithPins(BoardOut):
    pins: list[int]


class SavedPin(BaseModel):
    saved: bool
    new: bool = Field(description="false when the pin was already on the board")
    board_id: int
    pin_id: int


class RowError(BaseModel):
    row: int
    message: str


class EventsResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    accepted: int
    duplicates: int
    rejected: int
    errors: list[RowError]


class EventRow(BaseModel):
    """A logged engagement event, as the store keeps it."""

    id: int
    key: str = Field(description="the idempotency key")
    user_id: int
    pin_id: int
    kind: str
    ts: float = Field(description="epoch seconds")
    dwell_ms: float
    surface: str
    position: int | None
    request_id: str


class EventsFound(BaseModel):
    matched: int = Field(description="how many logged events the filter selects")
    events: list[EventRow] = Field(description="the first of them, in id order")
    filter: dict[str, Any] = Field(description="the criteria given")
    window: str = Field(description="the times the log accepts")


class EventsDeleted(BaseModel):
    matched: int
    deleted: int = Field(description="0 on a dry run")
    dry_run: bool
    filter: dict[str, Any] = Field(description="the criteria given")
    events: list[EventRow] | None = Field(
        None, description="dry run: the first events that would be deleted"
    )
    window: str | None = Field(None, description="dry run: the times the log accepts")
    saved_to: str | None = Field(
        None, description="where the deleted rows were kept (null when none were deleted)"
    )


class Because(BaseModel):
    """The pin a feed item's reason names ("because you saved this pin")."""

    pin_id: int
    thumbnail_url: str


class FeedItem(BaseModel):
    model_config = ConfigDict(extra="allow")

    pin: PinOut
    score: float
    reason: str
    source: str
    because: Because | None = Field(description="the pin the reason names; null when none")


class FeedPage(BaseModel):
    results: list[FeedItem]
    next_cursor: str | None
    model: str | None


class RelatedPage(BaseModel):
    results: list[FeedItem]


class Erasure(BaseModel):
    """What an erasure removed; ``erasure`` is the reference its audit entry carries."""

    erasure: str
    boards: int
    saves: int
    events: int
    event_copies_scrubbed: int


class ExportedBoard(BaseModel):
    id: int
    user_id: int
    name: str
    description: str
    created_at: str
    saves: list[dict[str, Any]] = Field(description="``{pin_id, saved_at}`` in save order")


class UserExport(BaseModel):
    """Everything stored about one user (``GET /users/{id}/export``)."""

    format: str = Field(description="``tastegraph-user-export/1``")
    user: dict[str, Any] = Field(description="the account row: id, handle, name, created_at")
    boards: list[ExportedBoard]
    events: list[dict[str, Any]] = Field(description="every engagement event, as logged")
