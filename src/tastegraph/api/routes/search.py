"""Search routes: words, an image (file, URL or a region of either), similar pins, duplicates."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile

from tastegraph.api.auth import needs
from tastegraph.api.models import (
    BOX_PATTERN,
    HTTP_URL_PATTERN,
    WORDS_PATTERN,
    Duplicates,
    Id,
    SearchPage,
    errors,
)
from tastegraph.api.routes.common import (
    NEEDS_MODELS,
    READ,
    READ_ONE,
    Attr,
    Explain,
    Limit,
    Offset,
    app_of,
    check_url_fetch,
    fresh_app_of,
)
from tastegraph.api.serialize import duplicates_json, page_json
from tastegraph.errors import InvalidInput
from tastegraph.search.service import parse_box, parse_filters

__all__ = ["router"]

router = APIRouter(tags=["search"])


@router.get(
    "/search",
    response_model=SearchPage,
    responses={**READ, **NEEDS_MODELS},
    dependencies=[needs("pins:read", enumerates=True)],
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
    tg = fresh_app_of(request)
    page = tg.search.text(q, limit=limit, offset=offset, filters=parse_filters(board, tag, attr))
    return page_json(tg.store, page, explain)


@router.get(
    "/pins/{pin_id:int}/similar",
    response_model=SearchPage,
    responses={**READ_ONE, **NEEDS_MODELS},
    dependencies=[needs("pins:read")],
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
    tg = fresh_app_of(request)
    page = tg.search.similar(
        pin_id, limit=limit, offset=offset, filters=parse_filters(board, tag, attr)
    )
    return page_json(tg.store, page, explain)


@router.post(
    "/search/image",
    response_model=SearchPage,
    responses={**READ, **errors(403), **NEEDS_MODELS},
    dependencies=[needs("pins:read")],
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
    from starlette.concurrency import run_in_threadpool

    tg = await run_in_threadpool(fresh_app_of, request)  # store reads: off the event loop
    filters = parse_filters(board, tag, None)
    region = parse_box(box)
    if file is not None:
        data = await file.read()
        page = await run_in_threadpool(
            tg.search.by_image, data, box=region, limit=limit, offset=offset, filters=filters
        )
    elif url:
        check_url_fetch(tg.settings.api.allow_url_fetch)
        page = await run_in_threadpool(
            tg.search.by_url, url, box=region, limit=limit, offset=offset, filters=filters
        )
    else:
        raise InvalidInput("send an image file or a url", hint="multipart field 'file' or 'url'")
    return page_json(tg.store, page, explain)


@router.get(
    "/duplicates",
    response_model=Duplicates,
    responses=READ,
    dependencies=[needs("pins:read", enumerates=True)],
)
def duplicates(request: Request) -> dict[str, Any]:
    """Near-duplicate groups."""
    return duplicates_json(app_of(request).search.duplicates())
