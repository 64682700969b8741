"""Run the HTTP server (uvicorn), with models and indexes warmed before it reports ready."""

from __future__ import annotations

import gc
import logging
import os
import threading
from typing import TYPE_CHECKING

from tastegraph.errors import InvalidInput
from tastegraph.settings import Settings
from tastegraph.workers.listener import Listener

if TYPE_CHECKING:
    from fastapi import FastAPI

    from tastegraph.app import App

__all__ = ["run_server", "served_api", "worker_api"]

# With ``--workers N`` each worker process builds its own App from the settings the command
# resolved (flags included), passed down in this environment variable as JSON.
SETTINGS_ENV = "TASTEGRAPH_SERVE_SETTINGS_JSON"

log = logging.getLogger("tastegraph")


def _report_interrupted_ingests(tg: App) -> None:
    """Ingest runs whose process died (SIGKILL, power cut) stop looking ``running``."""
    from tastegraph.catalog.runs import reap_interrupted

    for run in reap_interrupted(tg.store):
        log.warning(
            "ingest run %s of %s (started %s) was interrupted; run `tastegraph ingest %s` "
            "again to resume it (finished images are skipped)",
            run.run_id,
            run.source,
            run.started_at,
            run.source,
        )


def served_api(settings: Settings) -> FastAPI:
    """The API of one serving process: its own App (models, indexes, feed engine: a full
    replica kept current from the store's logs), warmed at start-up, closed at shutdown."""
    from tastegraph.api import create_api
    from tastegraph.app import build

    tg = build(settings)
    _report_interrupted_ingests(tg)
    api = create_api(tg)

    stop = threading.Event()

    def _catch_up() -> None:
        # `tastegraph train` in another process publishes a model version in the store; pick it
        # up here without a restart (the engine swaps it in under its own lock). Events other
        # processes logged (`tastegraph events import`, another worker) are applied here too, by
        # id, and so are pins they added or deleted (`tastegraph ingest` while serving). Feed,
        # related and search requests also catch up first when the logs moved (read-your-writes
        # across processes, see workers.catchup).
        applied = tg.catchup.run()
        if any(applied.values()):
            log.info("catalog changes from other processes: %s", applied)
        feeds = tg.parts.feeds.peek()
        if feeds is not None:
            feeds.reload()
            feeds.catch_up()

    def _watch_models() -> None:
        # The fallback for the listener (down, or SQLite which has none).
        while not stop.wait(settings.api.catchup_poll_s):
            try:
                _catch_up()
            except Exception:
                log.exception("model watch failed")

    notices = tg.store.notices()
    retry = settings.api.listener_retry_s
    listener = None
    if notices is not None:
        listener = Listener(notices, _catch_up, backoff_s=(retry, max(retry, 5.0)))
    api.state.listener = listener  # /ready shows its state

    @api.on_event("startup")
    def _warm() -> None:  # pragma: no cover - exercised by the real-server test
        # Load the models, catch the indexes up and build the feed engine (replaying the event
        # log) before /ready says yes: the first feed request must not pay for it.
        api.state.feeds_ready = False
        tg.indexes.sync(save=True)

        def _build_feeds() -> None:
            try:
                _ = tg.feeds.engine
                # From here on the process serves requests: many small matrix products on
                # concurrent threads, where a BLAS thread team per product only adds hand-offs
                # (10x slower on two busy cores). Bulk work above kept all threads.
                from threadpoolctl import threadpool_limits

                threadpool_limits(1, "blas")
                # What start-up built (models, indexes, the engine: ~300k objects) lives as long
                # as the process: keep it out of the collector's full passes, which took ~190 ms
                # each and stalled every request in flight.
                gc.collect()
                gc.freeze()
                api.state.feeds_ready = True
            except Exception:
                log.exception("could not build the feed engine")

        threading.Thread(target=_build_feeds, name="feed-warmup", daemon=True).start()
        threading.Thread(target=_watch_models, name="model-watch", daemon=True).start()
        if listener is not None:
            listener.start()

    @api.on_event("shutdown")
    def _close() -> None:  # pragma: no cover - exercised by the real-server test
        stop.set()
        if listener is not None:
            listener.stop()
        tg.close()

    return api


def worker_api() -> FastAPI:
    """Uvicorn's app factory in each ``--workers`` process: the settings ``run_server``
    resolved, from the environment."""
    return served_api(Settings.model_validate_json(os.environ[SETTINGS_ENV]))


def run_server(settings: Settings, workers: int = 1) -> None:
    """Serve until Ctrl-C: one process, or ``workers`` processes on the same port (uvicorn's
    supervisor; each builds and warms its own replica; Ctrl-C stops them all)."""
    import uvicorn

    if workers < 1:
        raise InvalidInput("--workers must be at least 1")
    host, port = settings.api.host, settings.api.port
    if workers == 1:
        uvicorn.run(served_api(settings), host=host, port=port, log_level="info")
        return
    # The store's schema is created (or migrated) once here, not by N workers racing.
    from tastegraph.store import open_store

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    open_store(settings.resolved_store_url).close()
    os.environ[SETTINGS_ENV] = settings.model_dump_json()
    uvicorn.run(
        "tastegraph.server:worker_api",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level="info",
    )
