"""Run the HTTP server (uvicorn), with models and indexes warmed before it reports ready."""

from __future__ import annotations

import logging
import threading

from tastegraph.settings import Settings

__all__ = ["run_server"]

log = logging.getLogger("tastegraph")


def run_server(settings: Settings) -> None:
    import uvicorn

    from tastegraph.api import create_api
    from tastegraph.app import build

    tg = build(settings)
    api = create_api(tg)

    stop = threading.Event()

    def _watch_models() -> None:
        # `tastegraph train` in another process publishes a model version in the store; pick it
        # up here without a restart (the engine swaps it in under its own lock).
        while not stop.wait(5.0):
            try:
                if tg._feeds is not None:
                    tg.feeds.reload()
            except Exception:
                log.exception("model watch failed")

    @api.on_event("startup")
    def _warm() -> None:  # pragma: no cover - exercised by the real-server test
        # Load the models, catch the indexes up and build the feed engine (replaying the event
        # log) before /ready says yes: the first feed request must not pay for it.
        api.state.feeds_ready = False
        tg.indexes.sync(save=True)

        def _build_feeds() -> None:
            try:
                _ = tg.feeds.engine
                api.state.feeds_ready = True
            except Exception:
                log.exception("could not build the feed engine")

        threading.Thread(target=_build_feeds, name="feed-warmup", daemon=True).start()
        threading.Thread(target=_watch_models, name="model-watch", daemon=True).start()

    try:
        uvicorn.run(api, host=settings.host, port=settings.port, log_level="info")
    finally:
        stop.set()
        tg.close()
