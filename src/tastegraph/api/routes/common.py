"""What the routers share: the app behind a request, query parameter types, error statuses."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Query, Request, Response
from pydantic import StringConstraints

from tastegraph.api.models import ATTR_PATTERN, errors
from tastegraph.errors import Forbidden

if TYPE_CHECKING:
    from tastegraph.app import App

__all__ = [
    "ADMIN",
    "NEEDS_MODELS",
    "READ",
    "READ_ONE",
    "WRITE",
    "Attr",
    "Explain",
    "Limit",
    "Offset",
    "app_of",
    "check_url_fetch",
    "fresh_app_of",
    "json_response",
]


def app_of(request: Request) -> App:
    """The ``App`` the API was made over (``create_api``)."""
    tg: App = request.app.state.tg
    return tg


def fresh_app_of(request: Request) -> App:
    """The request's ``App``, first caught up with what other processes logged (a save, a
    hide, an ingest through another server or the CLI): read-your-writes across processes.
    Cheap when nothing is new; a failed catch-up is logged and the request is answered from
    the state this process has (the periodic poll retries)."""
    tg = app_of(request)
    try:
        tg.catchup.if_behind()
    except Exception:
        logging.getLogger("tastegraph").exception("catch-up before a read failed")
    return tg


Limit = Annotated[int, Query(ge=1, le=200)]
Offset = Annotated[int, Query(ge=0, le=999)]
Explain = Annotated[bool, Query(description="add each result's per-signal scores")]
Attr = Annotated[
    list[Annotated[str, StringConstraints(pattern=ATTR_PATTERN, max_length=1000)]] | None,
    Query(description="key:value, repeatable"),
]

# Error statuses by kind of route (400, 413 and 422 are added for all: document_body_errors).
READ = errors(401, 422)
READ_ONE = errors(401, 404, 422)
WRITE = errors(401, 403, 422)  # + 400 and 413: document_body_errors
ADMIN = errors(401, 403, 422)
NEEDS_MODELS = errors(503)


def check_url_fetch(allowed: bool) -> None:
    """403 unless this server fetches images by URL."""
    if not allowed:
        raise Forbidden(
            "this server does not fetch images by URL",
            hint="upload the file instead, or set TASTEGRAPH_ALLOW_URL_FETCH=true",
        )


def json_response(body: dict[str, Any]) -> Response:
    """The body serialised once, as FastAPI's JSONResponse would (no response-model pass: the
    hot routes that use it build plain JSON types already)."""
    text = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Response(text.encode("utf-8"), media_type="application/json")
