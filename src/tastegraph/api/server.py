"""FastAPI application factory: routes parse, call a service, serialise."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tastegraph import __version__
from tastegraph.api.auth import require
from tastegraph.api.http import (
    document,
    document_body_errors,
    error_body,
    etags,
    install_error_handling,
)
from tastegraph.api.models import (
    ATTR_PATTERN,
    BOX_PATTERN,
    HTTP_URL_PATTERN,
    WORDS_PATTERN,
    AuditList,
    Duplicates,
    Health,
    Id,
    PinCreated,
    PinList,
    PinOut,
    QuarantineList,
    Ready,
    SearchPage,
    TokenCreated,
    TokenList,
    content_version,
    errors,
    thumbnail_url,
)
from tastegraph.catalog.images import ImageLimits, read_source_bytes
from tastegraph.catalog.metadata import update_pin as edit_pin
from tastegraph.catalog.sources import SourceItem
from tastegraph.domain import Hit, Pin
from tastegraph.engagement.bus import PinsDeleted
from tastegraph.errors import Forbidden, InvalidInput, NotFound
from tastegraph.search.service import Page, parse_box, parse_filters

if TYPE_CHECKING:
    from tastegraph.app import App

__all__ = ["create_api", "error_body"]


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

    image_url: str = Field(
        ..., max_length=2000, pattern=HTTP_URL_PATTERN, description="http(s) URL of the image"
    )
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
    d["thumbnail_url"] = thumbnail_url(pin.id, pin.content_hash)
    return d


def _page_json(tg: App, page: Page, explain: bool = False) -> dict[str, Any]:
    pins = tg.store.get_pins([h.pin_id for h in page.hits])
    return {
        "results": [_hit_json(h, pins[h.pin_id], explain) for h in page.hits if h.pin_id in pins],
        "total": page.total,
        "offset": page.offset,
        "limit": page.limit,
        "next_offset": page.next_offset,
    }


def _hit_json(h: Hit, pin: Pin, explain: bool = False) -> dict[str, Any]:
    # Per-signal scores are for people tuning search, not for everyone's cards.
    out: dict[str, Any] = {"pin": _pin_json(pin), "score": round(h.score, 6)}
    if explain:
        out["signals"] = h.signals
    return out


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
NEEDS_MODELS = errors(503)


def create_api(tg: App) -> FastAPI:
    """The FastAPI app over one ``App``."""
    api = FastAPI(
        title="tastegraph",
        version=__version__,
        description="Visual discovery: find pins by photo and by words.",
    )
    api.state.tg = tg
    install_error_handling(api, tg.settings.api.max_upload_bytes)

    # ------------------------------------------------------------ health
    @api.get("/health", tags=["ops"], response_model=Health)
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
        loaded = tg.parts.encoders.loaded and tg.parts.indexes.loaded
        checks["models"] = "ok" if tg.parts.encoders.loaded else "loading"
        checks["indexes"] = tg.indexes.stats() if tg.parts.indexes.loaded else "loading"
        ok = ok and loaded
        feeds_ready = getattr(api.state, "feeds_ready", None)  # set by `tastegraph serve`
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
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    ready_body = {"application/json": {"schema": Ready.model_json_schema()}}
    document(
        api,
        "/ready",
        {
            200: {"description": "ready", "content": ready_body},
            503: {"description": "not ready: see checks", "content": ready_body},
        },
    )

    # -------------------------------------------------------------- pins
    @api.get("/pins", tags=["pins"], response_model=PinList, responses=READ)
    def list_pins(
        request: Request,
        offset: Offset = 0,
        limit: Limit = 50,
        board: Annotated[str | None, Query(max_length=200)] = None,
    ) -> dict[str, Any]:
        """Pins in id order."""
        require(request, "viewer")
        pins = tg.store.list_pins(offset=offset, limit=limit, board=board)
        total = tg.store.count_pins()
        nxt = offset + limit if offset + limit < total else None
        return {"results": [_pin_json(p) for p in pins], "total": total, "next_offset": nxt}

    @api.get("/pins/{pin_id:int}", tags=["pins"], response_model=PinOut, responses=READ_ONE)
    def get_pin(request: Request, pin_id: Id) -> dict[str, Any]:
        """One pin."""
        require(request, "viewer")
        return _pin_json(tg.store.get_pin(pin_id))

    @api.get(
        "/pins/{pin_id:int}/thumbnail",
        tags=["pins"],
        response_class=Response,
        responses={
            200: {"content": {"image/jpeg": {}, "image/webp": {}}, "description": "the image"},
            304: {"description": "the copy the client holds (If-None-Match) is current"},
            **READ_ONE,
        },
    )
    def thumbnail(
        request: Request,
        pin_id: Id,
        v: Annotated[str | None, Query(max_length=64, description="content version")] = None,
    ) -> Response:
        """The pin's thumbnail image.

        Versioned by content: under the ``thumbnail_url`` of a pin (``?v=`` its content hash)
        it is cached for good; any other URL makes the browser revalidate by ETag, so an id
        that now names another image never shows the old one.
        """
        require(request, "viewer")
        pin = tg.store.get_pin(pin_id)
        etag = f'"{pin.content_hash}"'
        current = v == content_version(pin.content_hash)
        cache = "public, max-age=31536000, immutable" if current else "no-cache"
        headers = {"ETag": etag, "Cache-Control": cache}
        if etag in etags(request.headers.get("if-none-match", "")):
            return Response(status_code=304, headers=headers)
        data = tg.store.get_thumbnail(pin_id)
        media = "image/webp" if data[8:12] == b"WEBP" else "image/jpeg"
        return Response(data, media_type=media, headers=headers)

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

    created: dict[int | str, dict[str, Any]] = {
        200: {"model": PinCreated, "description": "the image was already a pin"}
    }

    @api.post(
        "/pins",
        tags=["pins"],
        status_code=201,
        response_model=PinCreated,
        responses={**created, **WRITE, **NEEDS_MODELS},
    )
    def create_pin(request: Request, body: PinCreate) -> JSONResponse:
        """Create a pin from an image URL (200 with the existing pin when the image is known).

        403 when this server does not fetch URLs (``TASTEGRAPH_ALLOW_URL_FETCH``); 422 when the
        URL cannot be fetched or is not an image.
        """
        require(request, "editor")
        s = tg.settings
        _url_fetch_allowed(s.api.allow_url_fetch)
        data = read_source_bytes(
            body.image_url,
            ImageLimits.from_settings(s),
            timeout=s.ingest.fetch_timeout_s,
            allow_url=s.api.allow_url_fetch,
            allow_private_hosts=s.api.allow_private_url_hosts,
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

    @api.post(
        "/pins/upload",
        tags=["pins"],
        status_code=201,
        response_model=PinCreated,
        responses={**created, **WRITE, **NEEDS_MODELS},
    )
    async def upload(
        request: Request,
        file: Annotated[UploadFile, File(description="the image")],
        title: Annotated[str, Form(max_length=500)] = "",
        description: Annotated[str, Form(max_length=5000)] = "",
        link: Annotated[str, Form(max_length=2000)] = "",
        board: Annotated[str, Form(max_length=200)] = "",
        tags: Annotated[str, Form(max_length=2000, description="comma-separated")] = "",
    ) -> JSONResponse:
        """Upload an image file as a new pin (422 when the file is not an image we can read)."""
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

    @api.patch(
        "/pins/{pin_id:int}",
        tags=["pins"],
        response_model=PinOut,
        responses={**WRITE, **errors(404), **NEEDS_MODELS},
    )
    def update_pin(request: Request, pin_id: Id, body: PinPatch) -> dict[str, Any]:
        """Edit a pin's words, link, board, tags or attributes (its text vector follows)."""
        require(request, "editor")
        pin = edit_pin(tg, pin_id, body.model_dump(exclude_none=True))
        return _pin_json(pin)

    @api.delete(
        "/pins/{pin_id:int}",
        tags=["pins"],
        status_code=204,
        response_class=Response,
        responses={**WRITE, **errors(404)},
    )
    def delete_pin(request: Request, pin_id: Id) -> Response:
        """Delete a pin and its vectors (its id is never given to another pin)."""
        require(request, "editor")
        tg.store.delete_pin(pin_id)
        tg.indexes.sync(save=True)
        tg.bus.publish(PinsDeleted((pin_id,)))  # the feed never serves it again
        return Response(status_code=204)

    # ------------------------------------------------------------ search
    @api.get(
        "/search", tags=["search"], response_model=SearchPage, responses={**READ, **NEEDS_MODELS}
    )
    def search_text(
        request: Request,
        q: Annotated[str, Query(min_length=1, max_length=1000, pattern=WORDS_PATTERN)],
        limit: Limit = 20,
        offset: Offset = 0,
        board: Annotated[str | None, Query(max_length=200)] = None,
        tag: Annotated[str | None, Query(max_length=200)] = None,
        attr: Attr = None,
        explain: Explain = False,
    ) -> dict[str, Any]:
        """Words -> pins: BM25 fused with semantic text and image search."""
        require(request, "viewer")
        page = tg.search.text(
            q, limit=limit, offset=offset, filters=parse_filters(board, tag, attr)
        )
        return _page_json(tg, page, explain)

    @api.get(
        "/pins/{pin_id:int}/similar",
        tags=["search"],
        response_model=SearchPage,
        responses={**READ_ONE, **NEEDS_MODELS},
    )
    def similar(
        request: Request,
        pin_id: Id,
        limit: Limit = 20,
        offset: Offset = 0,
        board: Annotated[str | None, Query(max_length=200)] = None,
        tag: Annotated[str | None, Query(max_length=200)] = None,
        attr: Attr = None,
        explain: Explain = False,
    ) -> dict[str, Any]:
        """More like this pin."""
        require(request, "viewer")
        page = tg.search.similar(
            pin_id, limit=limit, offset=offset, filters=parse_filters(board, tag, attr)
        )
        return _page_json(tg, page, explain)

    @api.post(
        "/search/image",
        tags=["search"],
        response_model=SearchPage,
        responses={**READ, **errors(403), **NEEDS_MODELS},
    )
    async def search_image(
        request: Request,
        file: Annotated[UploadFile | None, File(description="an image")] = None,
        url: Annotated[str | None, Form(max_length=2000, pattern=HTTP_URL_PATTERN)] = None,
        box: Annotated[
            str | None, Form(description="x0,y0,x1,y1 region, in pixels", pattern=BOX_PATTERN)
        ] = None,
        limit: Annotated[int, Form(ge=1, le=200)] = 20,
        offset: Annotated[int, Form(ge=0, le=999)] = 0,
        board: Annotated[str | None, Form(max_length=200)] = None,
        tag: Annotated[str | None, Form(max_length=200)] = None,
        explain: Annotated[bool, Form(description="add per-signal scores")] = False,
    ) -> dict[str, Any]:
        """Pins that look like an uploaded image, an image URL, or a region of either.

        Send ``file`` or ``url`` (422 with neither); 403 for ``url`` when this server does not
        fetch URLs.
        """
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
            _url_fetch_allowed(tg.settings.api.allow_url_fetch)
            page = await run_in_threadpool(
                tg.search.by_url, url, box=region, limit=limit, offset=offset, filters=filters
            )
        else:
            raise InvalidInput(
                "send an image file or a url", hint="multipart field 'file' or 'url'"
            )
        return _page_json(tg, page, explain)

    @api.get("/duplicates", tags=["search"], response_model=Duplicates, responses=READ)
    def duplicates(request: Request) -> dict[str, Any]:
        """Near-duplicate groups."""
        require(request, "viewer")
        groups = tg.search.duplicates()
        return {"groups": [{"group": g[0], "pins": g} for g in groups], "total": len(groups)}

    # ------------------------------------------------------------- admin
    ADMIN = errors(401, 403, 422)

    @api.get("/quarantine", tags=["admin"], response_model=QuarantineList, responses=ADMIN)
    def quarantine(
        request: Request, run_id: Annotated[str | None, Query(max_length=64)] = None
    ) -> dict[str, Any]:
        """Rejected inputs of ingest runs, with reasons (editors and admins)."""
        who = require(request, "editor")
        tg.store.audit(who.token_id, who.role, "read", f"quarantine:{run_id or '*'}")
        rows = tg.store.quarantine_report(run_id)
        return {"results": [q.__dict__ for q in rows], "total": len(rows)}

    @api.get("/tokens", tags=["admin"], response_model=TokenList, responses=ADMIN)
    def list_tokens(request: Request) -> dict[str, Any]:
        """Tokens (never their secrets)."""
        who = require(request, "admin")
        tg.store.audit(who.token_id, who.role, "read", "tokens")
        return {"results": [t.__dict__ for t in tg.store.list_tokens()]}

    @api.post(
        "/tokens",
        tags=["admin"],
        status_code=201,
        response_model=TokenCreated,
        responses=ADMIN,
    )
    def create_token(request: Request, body: TokenCreate) -> dict[str, Any]:
        """Create a token; its secret is shown once."""
        who = require(request, "admin")
        info, secret = tg.store.create_token(body.name, body.role)
        tg.store.audit(who.token_id, who.role, "create_token", f"token:{info.id}")
        return {"token": secret, **info.__dict__}

    @api.delete(
        "/tokens/{token_id:int}",
        tags=["admin"],
        status_code=204,
        response_class=Response,
        responses={**ADMIN, **errors(404, 409)},
    )
    def revoke_token(request: Request, token_id: Id) -> Response:
        """Revoke a token (404 when there is no such token, 409 when it is already revoked)."""
        who = require(request, "admin")
        tg.store.revoke_token(token_id)
        tg.store.audit(who.token_id, who.role, "revoke_token", f"token:{token_id}")
        return Response(status_code=204)

    @api.get("/audit", tags=["admin"], response_model=AuditList, responses=ADMIN)
    def audit(request: Request, limit: Limit = 100) -> dict[str, Any]:
        """What admins and editors read and changed."""
        who = require(request, "admin")
        tg.store.audit(who.token_id, who.role, "read", "audit")
        return {"results": tg.store.audit_entries(limit)}

    from tastegraph.api.engagement import router as engagement_router

    api.include_router(engagement_router)
    document_body_errors(api)

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


def _url_fetch_allowed(allowed: bool) -> None:
    if not allowed:
        raise Forbidden(
            "this server does not fetch images by URL",
            hint="upload the file instead, or set TASTEGRAPH_ALLOW_URL_FETCH=true",
        )
