"""FastAPI application factory: routes parse, call a service, serialise."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tastegraph import __version__
from tastegraph.api.auth import require
from tastegraph.app import App
from tastegraph.catalog.images import ImageLimits, read_source_bytes
from tastegraph.catalog.metadata import update_pin as edit_pin
from tastegraph.catalog.sources import SourceItem
from tastegraph.domain import Hit, Pin
from tastegraph.errors import InvalidInput, NotFound, PayloadTooLarge, TastegraphError
from tastegraph.search.service import Page, parse_box, parse_filters

__all__ = ["create_api"]

log = logging.getLogger("tastegraph.api")


def error_body(code: str, message: str, hint: str = "", details: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if hint:
        err["hint"] = hint
    if details:
        err["details"] = details
    return {"error": err}


class BodyLimit:
    """Reject request bodies over ``limit`` bytes, by header and while streaming (no trust)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._reject(send)
            return
        seen = 0
        too_big = False

        async def limited() -> Message:
            nonlocal seen, too_big
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    too_big = True
                    raise PayloadTooLarge(f"request body is larger than {self.limit} bytes")
            return msg

        try:
            await self.app(scope, limited, send)
        except PayloadTooLarge:
            if too_big:
                await self._reject(send)
            else:  # pragma: no cover
                raise

    async def _reject(self, send: Send) -> None:
        resp = JSONResponse(
            error_body(
                "payload_too_large",
                f"request body is larger than {self.limit} bytes",
                "send a smaller file or raise TASTEGRAPH_MAX_UPLOAD_BYTES",
            ),
            status_code=413,
        )
        await resp({"type": "http"}, _noop_receive, send)


async def _noop_receive() -> Message:
    return {"type": "http.disconnect"}


class PinPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(None, max_length=500)
    description: str | None = Field(None, max_length=5000)
    link: str | None = Field(None, max_length=2000)
    board: str | None = Field(None, max_length=200)
    tags: list[str] | None = Field(None, max_length=100)
    attributes: dict[str, Any] | None = None


class PinCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_url: str = Field(..., max_length=2000, description="http(s) URL of the image")
    title: str = Field("", max_length=500)
    description: str = Field("", max_length=5000)
    link: str = Field("", max_length=2000)
    board: str = Field("", max_length=200)
    tags: list[str] = Field(default_factory=list, max_length=100)
    attributes: dict[str, Any] = Field(default_factory=dict)


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=100)
    role: str = Field(..., pattern="^(viewer|editor|admin)$")


def _pin_json(pin: Pin) -> dict[str, Any]:
    d = pin.to_dict()
    d["thumbnail_url"] = f"/pins/{pin.id}/thumbnail"
    return d


def _page_json(tg: App, page: Page) -> dict[str, Any]:
    pins = tg.store.get_pins([h.pin_id for h in page.hits])
    return {
        "results": [_hit_json(h, pins[h.pin_id]) for h in page.hits if h.pin_id in pins],
        "total": page.total,
        "offset": page.offset,
        "limit": page.limit,
        "next_offset": page.next_offset,
    }


def _hit_json(h: Hit, pin: Pin) -> dict[str, Any]:
    return {"pin": _pin_json(pin), "score": round(h.score, 6), "signals": h.signals}


Limit = Annotated[int, Query(ge=1, le=200)]
Offset = Annotated[int, Query(ge=0, le=999)]


def create_api(tg: App) -> FastAPI:
    """The FastAPI app over one ``App``."""
    api = FastAPI(
        title="tastegraph",
        version=__version__,
        description="Visual discovery: find pins by photo and by words.",
    )
    api.state.tg = tg
    api.add_middleware(BodyLimit, limit=tg.settings.max_upload_bytes)

    @api.exception_handler(TastegraphError)
    async def _tg_error(_: Request, exc: TastegraphError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, exc.message, exc.hint, exc.details), status_code=exc.status
        )

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)

    @api.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": list(e.get("loc", [])), "message": e.get("msg", "")} for e in exc.errors()
        ]
        return JSONResponse(
            error_body("invalid_input", "the request is not valid", "see details", details),
            status_code=422,
        )

    @api.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(
            error_body("internal", "internal error", "see the server log"), status_code=500
        )

    # ------------------------------------------------------------ health
    @api.get("/health", tags=["ops"])
    def health() -> dict[str, Any]:
        """Liveness: the process answers."""
        return {"status": "ok", "version": __version__}

    @api.get("/ready", tags=["ops"])
    def ready() -> JSONResponse:
        """Readiness: store reachable, models loaded, indexes caught up with the store."""
        checks: dict[str, Any] = {}
        ok = True
        try:
            checks["pins"] = tg.store.count_pins()
            checks["store"] = "ok"
        except Exception as e:  # pragma: no cover - depends on a broken disk
            checks["store"] = f"error: {e}"
            ok = False
        checks["models"] = "ok" if tg._encoders is not None else "loading"
        checks["indexes"] = tg.indexes.stats() if tg._indexes is not None else "loading"
        ok = ok and tg._encoders is not None and tg._indexes is not None
        feeds_ready = getattr(api.state, "feeds_ready", None)  # set by `tastegraph serve`
        feeds = tg._feeds
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
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    # -------------------------------------------------------------- pins
    @api.get("/pins", tags=["pins"])
    def list_pins(
        request: Request, offset: Offset = 0, limit: Limit = 50, board: str | None = None
    ) -> dict[str, Any]:
        """Pins in id order."""
        require(request, "viewer")
        pins = tg.store.list_pins(offset=offset, limit=limit, board=board)
        total = tg.store.count_pins()
        nxt = offset + limit if offset + limit < total else None
        return {"results": [_pin_json(p) for p in pins], "total": total, "next_offset": nxt}

    @api.get("/pins/{pin_id}", tags=["pins"])
    def get_pin(request: Request, pin_id: int) -> dict[str, Any]:
        """One pin."""
        require(request, "viewer")
        return _pin_json(tg.store.get_pin(pin_id))

    @api.get("/pins/{pin_id}/thumbnail", tags=["pins"], response_class=Response)
    def thumbnail(request: Request, pin_id: int) -> Response:
        """The pin's thumbnail image."""
        require(request, "viewer")
        data = tg.store.get_thumbnail(pin_id)
        media = "image/webp" if data[8:12] == b"WEBP" else "image/jpeg"
        return Response(data, media_type=media, headers={"Cache-Control": "max-age=86400"})

    def _ingest_one(item: SourceItem, data: bytes) -> JSONResponse:
        from tastegraph.catalog.ingest import ingest_items

        report = ingest_items(
            tg, [item], source_label=item.ref, progress=False, data={item.ref: data}
        )
        if report.quarantine:
            q = report.quarantine[0]
            raise InvalidInput(q.message, reason=q.reason)
        pin_id = tg.store.find_by_hash(_hash(data))
        if pin_id is None:  # pragma: no cover - ingest either adds, finds or rejects
            raise NotFound("the pin was not stored")
        status = 201 if report.added else 200
        return JSONResponse(
            {"created": bool(report.added), "pin": _pin_json(tg.store.get_pin(pin_id))},
            status_code=status,
        )

    @api.post("/pins", tags=["pins"], status_code=201)
    def create_pin(request: Request, body: PinCreate) -> JSONResponse:
        """Create a pin from an image URL (200 with the existing pin when the image is known)."""
        require(request, "editor")
        if not body.image_url.lower().startswith(("http://", "https://")):
            raise InvalidInput("image_url must be an http(s) URL", hint="or upload the file")
        s = tg.settings
        data = read_source_bytes(
            body.image_url,
            ImageLimits.from_settings(s),
            timeout=s.fetch_timeout_s,
            allow_url=s.allow_url_fetch,
            allow_private_hosts=s.allow_private_url_hosts,
            allow_local_files=False,
        )
        item = SourceItem(
            ref=body.image_url,
            title=body.title,
            description=body.description,
            link=body.link,
            board=body.board,
            tags=list(body.tags),
            attributes=dict(body.attributes),
        )
        return _ingest_one(item, data)

    @api.post("/pins/upload", tags=["pins"], status_code=201)
    async def upload(
        request: Request,
        file: Annotated[UploadFile, File(description="the image")],
        title: Annotated[str, Form(max_length=500)] = "",
        description: Annotated[str, Form(max_length=5000)] = "",
        link: Annotated[str, Form(max_length=2000)] = "",
        board: Annotated[str, Form(max_length=200)] = "",
        tags: Annotated[str, Form(max_length=2000, description="comma-separated")] = "",
    ) -> JSONResponse:
        """Upload an image file as a new pin."""
        require(request, "editor")
        data = await file.read()
        item = SourceItem(
            ref=f"upload:{_hash(data)[:16]}:{file.filename or 'image'}",
            title=title,
            description=description,
            link=link,
            board=board,
            tags=[t.strip() for t in tags.split(",") if t.strip()],
        )
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(_ingest_one, item, data)

    @api.patch("/pins/{pin_id}", tags=["pins"])
    def update_pin(request: Request, pin_id: int, body: PinPatch) -> dict[str, Any]:
        """Edit a pin's words, link, board, tags or attributes (its text vector follows)."""
        require(request, "editor")
        pin = edit_pin(tg, pin_id, body.model_dump(exclude_none=True))
        return _pin_json(pin)

    @api.delete("/pins/{pin_id}", tags=["pins"], status_code=204, response_class=Response)
    def delete_pin(request: Request, pin_id: int) -> Response:
        """Delete a pin and its vectors."""
        require(request, "editor")
        tg.store.delete_pin(pin_id)
        tg.indexes.sync(save=True)
        if tg._feeds is not None:
            tg.feeds.catch_up_catalog()  # never served again, from the next feed call on
        return Response(status_code=204)

    # ------------------------------------------------------------ search
    @api.get("/search", tags=["search"])
    def search_text(
        request: Request,
        q: Annotated[str, Query(min_length=1, max_length=1000)],
        limit: Limit = 20,
        offset: Offset = 0,
        board: str | None = None,
        tag: str | None = None,
        attr: Annotated[list[str] | None, Query(description="key:value, repeatable")] = None,
    ) -> dict[str, Any]:
        """Words -> pins: BM25 fused with semantic text and image search."""
        require(request, "viewer")
        page = tg.search.text(
            q, limit=limit, offset=offset, filters=parse_filters(board, tag, attr)
        )
        return _page_json(tg, page)

    @api.get("/pins/{pin_id}/similar", tags=["search"])
    def similar(
        request: Request,
        pin_id: int,
        limit: Limit = 20,
        offset: Offset = 0,
        board: str | None = None,
        tag: str | None = None,
        attr: Annotated[list[str] | None, Query()] = None,
    ) -> dict[str, Any]:
        """More like this pin."""
        require(request, "viewer")
        page = tg.search.similar(
            pin_id, limit=limit, offset=offset, filters=parse_filters(board, tag, attr)
        )
        return _page_json(tg, page)

    @api.post("/search/image", tags=["search"])
    async def search_image(
        request: Request,
        file: Annotated[UploadFile | None, File(description="an image")] = None,
        url: Annotated[str | None, Form(max_length=2000)] = None,
        box: Annotated[str | None, Form(description="x0,y0,x1,y1 region, in pixels")] = None,
        limit: Annotated[int, Form(ge=1, le=200)] = 20,
        offset: Annotated[int, Form(ge=0, le=999)] = 0,
        board: Annotated[str | None, Form()] = None,
        tag: Annotated[str | None, Form()] = None,
    ) -> dict[str, Any]:
        """Pins that look like an uploaded image, an image URL, or a region of either."""
        require(request, "viewer")
        from starlette.concurrency import run_in_threadpool

        filters = parse_filters(board, tag, None)
        region = parse_box(box)
        if file is not None:
            data = await file.read()
            page = await run_in_threadpool(
                tg.search.by_image, data, box=region, limit=limit, offset=offset, filters=filters
            )
        elif url:
            if not url.lower().startswith(("http://", "https://")):
                raise InvalidInput("url must be an http(s) URL")
            page = await run_in_threadpool(
                tg.search.by_url, url, box=region, limit=limit, offset=offset, filters=filters
            )
        else:
            raise InvalidInput(
                "send an image file or a url", hint="multipart field 'file' or 'url'"
            )
        return _page_json(tg, page)

    @api.get("/duplicates", tags=["search"])
    def duplicates(request: Request) -> dict[str, Any]:
        """Near-duplicate groups."""
        require(request, "viewer")
        groups = tg.search.duplicates()
        return {"groups": [{"group": g[0], "pins": g} for g in groups], "total": len(groups)}

    # ------------------------------------------------------------- admin
    @api.get("/quarantine", tags=["admin"])
    def quarantine(request: Request, run_id: str | None = None) -> dict[str, Any]:
        """Rejected inputs of ingest runs, with reasons (editors and admins)."""
        who = require(request, "editor")
        tg.store.audit(who.token_id, who.role, "read", f"quarantine:{run_id or '*'}")
        rows = tg.store.quarantine_report(run_id)
        return {"results": [q.__dict__ for q in rows], "total": len(rows)}

    @api.get("/tokens", tags=["admin"])
    def list_tokens(request: Request) -> dict[str, Any]:
        """Tokens (never their secrets)."""
        who = require(request, "admin")
        tg.store.audit(who.token_id, who.role, "read", "tokens")
        return {"results": [t.__dict__ for t in tg.store.list_tokens()]}

    @api.post("/tokens", tags=["admin"], status_code=201)
    def create_token(request: Request, body: TokenCreate) -> dict[str, Any]:
        """Create a token; its secret is shown once."""
        who = require(request, "admin")
        info, secret = tg.store.create_token(body.name, body.role)
        tg.store.audit(who.token_id, who.role, "create_token", f"token:{info.id}")
        return {"token": secret, **info.__dict__}

    @api.delete("/tokens/{token_id}", tags=["admin"], status_code=204, response_class=Response)
    def revoke_token(request: Request, token_id: int) -> Response:
        """Revoke a token."""
        who = require(request, "admin")
        tg.store.revoke_token(token_id)
        tg.store.audit(who.token_id, who.role, "revoke_token", f"token:{token_id}")
        return Response(status_code=204)

    @api.get("/audit", tags=["admin"])
    def audit(request: Request, limit: Limit = 100) -> dict[str, Any]:
        """What admins and editors read and changed."""
        who = require(request, "admin")
        tg.store.audit(who.token_id, who.role, "read", "audit")
        return {"results": tg.store.audit_entries(limit)}

    from tastegraph.api.engagement import router as engagement_router

    api.include_router(engagement_router)

    # --------------------------------------------------------------- web
    from tastegraph.web import mount_web

    mount_web(api)

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        from tastegraph.web import index_html

        return HTMLResponse(index_html())

    return api


def _hash(data: bytes) -> str:
    from tastegraph.catalog.images import content_hash

    return content_hash(data)
