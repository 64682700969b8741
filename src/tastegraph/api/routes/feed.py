"""Feed routes: a user's home feed and a pin's related pins, each item with its reason."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from tastegraph.api.auth import needs
from tastegraph.api.models import FeedPage, Id, RelatedPage, errors
from tastegraph.api.routes.common import READ_ONE, fresh_app_of, json_response
from tastegraph.api.serialize import feed_page_json, pins_json, related_json

__all__ = ["router"]

router = APIRouter(tags=["feed"])


def turn(request: Request) -> Any:
    """Wait for this process's turn to answer a feed request (``api.feed_slots`` at once)."""
    gate = getattr(request.app.state, "feed_gate", None)
    return gate if gate is not None else nullcontext()


@router.get(
    "/users/{user_id:int}/feed",
    response_class=Response,
    responses={200: {"model": FeedPage}, **READ_ONE, **errors(503)},
    dependencies=[needs("feeds:read")],
)
def home_feed(
    request: Request,
    user_id: Id,
    n: Annotated[int, Query(ge=1, le=100)] = 25,
    cursor: Annotated[
        str | None,
        Query(
            max_length=20000,
            pattern=r"^[A-Za-z0-9_-]+$",
            description="the next_cursor of the previous page (opaque)",
        ),
    ] = None,
) -> Response:
    """A user's personalised home feed; each item says why it is there."""
    with turn(request):
        tg = fresh_app_of(request)
        items, nxt = tg.feeds.feed(user_id, n, cursor)
        return json_response(feed_page_json(tg.records, items, nxt, tg.feeds.version))


@router.get(
    "/pins/{pin_id:int}/related",
    response_class=Response,
    responses={200: {"model": RelatedPage}, **READ_ONE, **errors(503)},
    dependencies=[needs("pins:read")],
)
def related_pins(
    request: Request, pin_id: Id, n: Annotated[int, Query(ge=1, le=100)] = 20
) -> Response:
    """Related pins: visual similarity fused with co-engagement, near-duplicates collapsed."""
    with turn(request):
        tg = fresh_app_of(request)
        items = tg.feeds.related(pin_id, n, verify=False)
        # The pin itself is fetched with its results: one query says it exists and gives them.
        pins = pins_json(tg.records, [pin_id, *(it.pin for it in items)])
        if pin_id not in pins:
            tg.store.get_pin(pin_id)  # raises NotFound (e.g. deleted since the engine was built)
        return json_response(related_json(tg.records, items, pins))
