"""Operations and admin routes: liveness, readiness, tokens, the audit log, ingest rejections."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from tastegraph import __version__
from tastegraph.access import PUBLIC
from tastegraph.api.auth import Principal, needs
from tastegraph.api.models import (
    AuditList,
    Health,
    Id,
    QuarantineList,
    Ready,
    TokenCreated,
    TokenList,
    errors,
)
from tastegraph.api.routes.common import ADMIN, Limit, app_of
from tastegraph.api.serialize import audit_json, quarantine_json, token_json
from tastegraph.domain import ROLES

__all__ = ["ops", "router"]

# Health and readiness come first in the document, the admin routes after the catalog's.
ops = APIRouter(tags=["ops"])
router = APIRouter(tags=["admin"])


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=100)
    role: str = Field(..., pattern=f"^({'|'.join(ROLES)})$")


@ops.get("/health", response_model=Health, dependencies=[needs(PUBLIC)])
def health() -> dict[str, Any]:
    """Liveness: the process answers."""
    return {"status": "ok", "version": __version__}


_READY_BODY = {"application/json": {"schema": Ready.model_json_schema()}}


@ops.get(
    "/ready",
    responses={
        200: {"description": "ready", "content": _READY_BODY},
        503: {"description": "not ready: see checks", "content": _READY_BODY},
    },
    dependencies=[needs(PUBLIC)],
)
def ready(request: Request) -> JSONResponse:
    """Readiness: store reachable, models loaded, indexes caught up with the store."""
    tg = app_of(request)
    checks: dict[str, Any] = {}
    ok = True
    try:
        checks["pins"] = tg.store.count_pins()
        checks["store"] = "ok"
    except Exception as e:  # pragma: no cover - depends on a broken disk
        checks["store"] = f"error: {e}"
        ok = False
    loaded = tg.parts.encoders.loaded and tg.parts.indexes.loaded
    checks["models"] = "ok" if tg.parts.encoders.loaded else "loading"
    checks["indexes"] = tg.indexes.stats() if tg.parts.indexes.loaded else "loading"
    ok = ok and loaded
    feeds_ready = getattr(request.app.state, "feeds_ready", None)  # set by `tastegraph serve`
    feeds = tg.parts.feeds.peek()
    if feeds_ready is not None or feeds is not None:
        # The engine's own account: a build that failed or an engine that stopped taking
        # in events is not "loading" and not "ok"; stored events it skipped are listed.
        status = feeds.status() if feeds is not None else {"state": "not_built"}
        state = status["state"]
        if state == "not_built" or (state == "ok" and feeds_ready is False):
            state = "loading"
        checks["feeds"] = state
        checks["feeds_details"] = status
        ok = ok and state == "ok"
    listener = getattr(request.app.state, "listener", None)  # `tastegraph serve` on PostgreSQL
    if listener is not None:
        # Not a readiness condition: while it is down the poll still catches up, later.
        checks["listener"] = listener.state()
    return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)


@router.get("/quarantine", response_model=QuarantineList, responses=ADMIN)
def quarantine(
    request: Request,
    run_id: Annotated[str | None, Query(max_length=64)] = None,
    who: Principal = needs("quarantine:read", enumerates=True),
) -> dict[str, Any]:
    """Rejected inputs of ingest runs, with reasons (editors and admins)."""
    store = app_of(request).store
    store.audit(who.token_id, who.role, "read", f"quarantine:{run_id or '*'}")
    return quarantine_json(store.quarantine_report(run_id))


@router.get("/tokens", response_model=TokenList, responses=ADMIN)
def list_tokens(
    request: Request, who: Principal = needs("tokens:manage", enumerates=True)
) -> dict[str, Any]:
    """Tokens (never their secrets)."""
    store = app_of(request).store
    store.audit(who.token_id, who.role, "read", "tokens")
    return {"results": [token_json(t) for t in store.list_tokens()]}


@router.post("/tokens", status_code=201, response_model=TokenCreated, responses=ADMIN)
def create_token(
    request: Request, body: TokenCreate, who: Principal = needs("tokens:manage")
) -> dict[str, Any]:
    """Create a token; its secret is shown once."""
    store = app_of(request).store
    info, secret = store.create_token(body.name, body.role)
    store.audit(who.token_id, who.role, "create_token", f"token:{info.id}")
    return token_json(info, secret)


@router.delete(
    "/tokens/{token_id:int}",
    status_code=204,
    response_class=Response,
    responses={**ADMIN, **errors(404, 409)},
)
def revoke_token(
    request: Request, token_id: Id, who: Principal = needs("tokens:manage")
) -> Response:
    """Revoke a token (404 when there is no such token, 409 when it is already revoked)."""
    store = app_of(request).store
    store.revoke_token(token_id)
    store.audit(who.token_id, who.role, "revoke_token", f"token:{token_id}")
    return Response(status_code=204)


@router.get("/audit", response_model=AuditList, responses=ADMIN)
def audit(
    request: Request, limit: Limit = 100, who: Principal = needs("audit:read", enumerates=True)
) -> dict[str, Any]:
    """What admins and editors read and changed."""
    store = app_of(request).store
    store.audit(who.token_id, who.role, "read", "audit")
    return audit_json(store.audit_entries(limit))
