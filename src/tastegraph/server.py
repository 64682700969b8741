"""Run the HTTP server (uvicorn), with models and indexes warmed before it reports ready."""

from __future__ import annotations

import logging

from tastegraph.settings import Settings

__all__ = ["run_server"]

log = logging.getLogger("tastegraph")


def run_server(settings: Settings) -> None:
    import uvicorn

    from tastegraph.api import create_api
    from tastegraph.app import build

    tg = build(settings)
    api = create_api(tg)

    @api.on_event("startup")
    def _warm() -> None:  # pragma: no cover - exercised by the real-server test
        # Load the models and catch the indexes up before traffic arrives (/ready says when).
        tg.indexes.sync(save=True)

    try:
        uvicorn.run(api, host=settings.host, port=settings.port, log_level="info")
    finally:
        tg.close()
