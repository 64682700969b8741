"""FastAPI application factory: error handling, the routers, the web page."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from tastegraph import __version__
from tastegraph.access import PUBLIC
from tastegraph.api.auth import document_permissions, needs
from tastegraph.api.http import document_body_errors, error_body, install_error_handling
from tastegraph.api.limits import RateLimits
from tastegraph.api.routes import admin, events, feed, people, pins, search
from tastegraph.feed.gate import FairGate

if TYPE_CHECKING:
    from tastegraph.app import App

__all__ = ["create_api", "error_body"]


def create_api(tg: App) -> FastAPI:
    """The FastAPI app over one ``App``."""
    api = FastAPI(
        title="tastegraph",
        version=__version__,
        description="Visual discovery: find pins by photo and by words.",
    )
    api.state.tg = tg
    api.state.limits = RateLimits(tg.settings.limits)
    slots = tg.settings.api.feed_slots
    api.state.feed_gate = FairGate(slots) if slots else None
    install_error_handling(api, tg.settings.api.max_upload_bytes)
    # In this order: it is the order of the OpenAPI document.
    for router in (
        admin.ops,
        pins.router,
        search.router,
        admin.router,
        people.router,
        events.router,
        feed.router,
    ):
        api.include_router(router)
    document_permissions(api)  # first: the body errors read x-permission
    document_body_errors(api)

    from tastegraph.web import index_html, mount_web

    mount_web(api)

    @api.get(
        "/", response_class=HTMLResponse, include_in_schema=False, dependencies=[needs(PUBLIC)]
    )
    def index() -> HTMLResponse:
        return HTMLResponse(index_html())

    return api
