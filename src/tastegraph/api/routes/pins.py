"""Catalog routes: list, read, create (by URL or upload), edit and delete pins; thumbnails."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from tastegraph.api.auth import needs
from tastegraph.api.http import etags
from tastegraph.api.models import (
    HTTP_URL_PATTERN,
    Id,
    PinCreated,
    PinList,
    PinOut,
    content_version,
    errors,
)
from tastegraph.api.routes.common import (
    NEEDS_MODELS,
    READ,
    READ_ONE,
    WRITE,
    Limit,
    Offset,
    app_of,
    check_url_fetch,
)
from tastegraph.api.serialize import pin_json
from tastegraph.catalog.service import Created, upload_ref
from tastegraph.catalog.sources import SourceItem

__all__ = ["router"]

router = APIRouter(tags=["pins"])


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


@router.get(
    "/pins",
    response_model=PinList,
    responses=READ,
    dependencies=[needs("pins:read", enumerates=True)],
)
def list_pins(
    request: Request,
    offset: Offset = 0,
    limit: Limit = 50,
    board: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """Pins in id order."""
    store = app_of(request).store
    pins = store.list_pins(offset=offset, limit=limit, board=board)
    total = store.count_pins()
    nxt = offset + limit if offset + limit < total else None
    return {"results": [pin_json(p) for p in pins], "total": total, "next_offset": nxt}


@router.get(
    "/pins/{pin_id:int}",
    response_model=PinOut,
    responses=READ_ONE,
    dependencies=[needs("pins:read")],
)
def get_pin(request: Request, pin_id: Id) -> dict[str, Any]:
    """One pin."""
    return pin_json(app_of(request).store.get_pin(pin_id))


@router.get(
    "/pins/{pin_id:int}/thumbnail",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}, "image/webp": {}}, "description": "the image"},
        304: {"description": "the copy the client holds (If-None-Match) is current"},
        **READ_ONE,
    },
    dependencies=[needs("pins:read")],
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
    store = app_of(request).store
    pin = store.get_pin(pin_id)
    etag = f'"{pin.content_hash}"'
    current = v == content_version(pin.content_hash)
    cache = "public, max-age=31536000, immutable" if current else "no-cache"
    headers = {"ETag": etag, "Cache-Control": cache}
    if etag in etags(request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers=headers)
    data = store.get_thumbnail(pin_id)
    media = "image/webp" if data[8:12] == b"WEBP" else "image/jpeg"
    return Response(data, media_type=media, headers=headers)


def _created(done: Created) -> JSONResponse:
    return JSONResponse(
        {"created": done.created, "pin": pin_json(done.pin)},
        status_code=201 if done.created else 200,
    )


_CREATED: dict[int | str, dict[str, Any]] = {
    200: {"model": PinCreated, "description": "the image was already a pin"}
}


@router.post(
    "/pins",
    status_code=201,
    response_model=PinCreated,
    responses={**_CREATED, **WRITE, **NEEDS_MODELS},
    dependencies=[needs("pins:write")],
)
def create_pin(request: Request, body: PinCreate) -> JSONResponse:
    """Create a pin from an image URL (200 with the existing pin when the image is known).

    403 when this server does not fetch URLs (``TASTEGRAPH_ALLOW_URL_FETCH``); 422 when the
    URL cannot be fetched or is not an image.
    """
    catalog = app_of(request).catalog
    check_url_fetch(catalog.settings.api.allow_url_fetch)
    item = SourceItem(
        ref=body.image_url,
        title=body.title,
        description=body.description,
        link=body.link,
        board=body.board,
        tags=list(body.tags),
        attributes=dict(body.attributes),
    )
    return _created(catalog.create(item))


@router.post(
    "/pins/upload",
    status_code=201,
    response_model=PinCreated,
    responses={**_CREATED, **WRITE, **NEEDS_MODELS},
    dependencies=[needs("pins:write")],
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
    from starlette.concurrency import run_in_threadpool

    data = await file.read()
    item = SourceItem(
        ref=upload_ref(data, file.filename),
        title=title,
        description=description,
        link=link,
        board=board,
        tags=[t.strip() for t in tags.split(",") if t.strip()],
    )
    done = await run_in_threadpool(app_of(request).catalog.create, item, data)
    return _created(done)


@router.patch(
    "/pins/{pin_id:int}",
    response_model=PinOut,
    responses={**WRITE, **errors(404), **NEEDS_MODELS},
    dependencies=[needs("pins:write")],
)
def update_pin(request: Request, pin_id: Id, body: PinPatch) -> dict[str, Any]:
    """Edit a pin's words, link, board, tags or attributes (its text vector follows)."""
    pin = app_of(request).catalog.update(pin_id, body.model_dump(exclude_none=True))
    return pin_json(pin)


@router.delete(
    "/pins/{pin_id:int}",
    status_code=204,
    response_class=Response,
    responses={**WRITE, **errors(404)},
    dependencies=[needs("pins:write")],
)
def delete_pin(request: Request, pin_id: Id) -> Response:
    """Delete a pin and its vectors (its id is never given to another pin)."""
    app_of(request).catalog.delete(pin_id)
    return Response(status_code=204)
