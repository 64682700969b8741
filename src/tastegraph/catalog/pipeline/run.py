"""An ingest run: enumerate, skip what is done, run the pipeline, record the run and quarantine.

A kill at any point loses at most the batches in flight, never part of one, and a rerun skips
every source already committed (and marks the killed run ``interrupted``, see
:mod:`tastegraph.catalog.runs`). Indexes catch up from the store's change log (see
``index.spaces``). :attr:`IngestReport.timings` says where the time went; one-off model work
(exports, label vectors) is done before the clock starts and reported as ``setup_seconds``.

A manifest row for an image already in the catalog (same source reference, or same bytes)
updates that pin's words (see :mod:`tastegraph.catalog.metadata`).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from tastegraph.catalog.duplicates import groups_touching
from tastegraph.catalog.metadata import update_known
from tastegraph.catalog.pipeline.local import run_local
from tastegraph.catalog.pipeline.report import Clock, IngestReport
from tastegraph.catalog.sources import SourceError, SourceItem, iter_source
from tastegraph.domain import QuarantineEntry

if TYPE_CHECKING:
    from tastegraph.catalog.ports import CatalogContext

__all__ = ["Runner", "ingest", "ingest_items"]


class Runner(Protocol):
    """Where the steps run: :func:`.local.run_local`, or a :class:`.ray_runner.RayRunner`.

    Decodes, encodes and stores ``todo``, counting in ``report`` and ``clock``; rows whose bytes
    are already a pin go to ``known``.
    """

    def __call__(
        self,
        app: CatalogContext,
        todo: list[SourceItem],
        report: IngestReport,
        clock: Clock,
        known: dict[int, list[SourceItem]],
        *,
        data: dict[str, bytes] | None,
        progress: bool,
        t0: float,
    ) -> None: ...


def ingest(
    app: CatalogContext, source: str, *, progress: bool = True, runner: Runner = run_local
) -> IngestReport:
    """Ingest every image a folder or a CSV/JSONL manifest names (resumable, idempotent)."""
    return ingest_items(
        app, iter_source(source), source_label=str(source), progress=progress, runner=runner
    )


def ingest_items(
    app: CatalogContext,
    items: Iterable[SourceItem | SourceError],
    *,
    source_label: str,
    progress: bool = True,
    data: dict[str, bytes] | None = None,
    runner: Runner = run_local,
) -> IngestReport:
    """Ingest already-enumerated items; ``data`` maps refs to bytes already in memory (uploads).

    ``runner``: where the steps run (this machine's cores, or Ray: ``ray_runner.RayRunner``).
    """
    from tastegraph.catalog.runs import Heartbeat, reap_interrupted

    store = app.store
    run_id = uuid.uuid4().hex[:16]
    report = IngestReport(run_id=run_id, source=source_label)
    report.interrupted = reap_interrupted(store)
    clock = Clock()
    store.start_run(run_id, source_label)
    heartbeat = Heartbeat(store, run_id)
    try:
        _run(app, items, report, clock, data=data, progress=progress, runner=runner)
    finally:
        heartbeat.stop()  # even when finishing failed: a beating record would look alive
    return report


def _run(
    app: CatalogContext,
    items: Iterable[SourceItem | SourceError],
    report: IngestReport,
    clock: Clock,
    *,
    data: dict[str, bytes] | None,
    progress: bool,
    runner: Runner,
) -> None:
    store = app.store
    status = "failed"
    t0 = time.perf_counter()
    cpu0 = time.thread_time()
    try:
        done = store.source_pins() if data is None else {}
        todo: list[SourceItem] = []
        # Pins the run's rows name that are already in the catalog -> those rows, in order.
        known: dict[int, list[SourceItem]] = {}
        for it in items:
            report.seen += 1
            if isinstance(it, SourceError):
                report.quarantine.append(
                    QuarantineEntry(it.ref or f"row {it.row}", "bad_row", it.message)
                )
                continue
            if it.ref in done:
                report.skipped += 1
                pin_id = done[it.ref]
                if pin_id is not None:
                    known.setdefault(pin_id, []).append(it)
                continue
            todo.append(it)
        if todo:
            # One-off model work is setup, outside the clock: the run's rate is the pipeline's.
            cpu_setup = time.thread_time()
            report.setup_seconds = _prepare_models(app, progress)
            t0 += report.setup_seconds
            cpu0 += time.thread_time() - cpu_setup
            runner(app, todo, report, clock, known, data=data, progress=progress, t0=t0)
        t_meta = time.perf_counter()
        with _status(progress) as say:
            report.updated, report.unchanged = update_known(app, known, say)
        clock.since("metadata", t_meta)
        status = "empty" if report.empty else "partial" if report.quarantine else "complete"
    finally:
        t_finish = time.perf_counter()
        report.rejected = len(report.quarantine)
        store.add_quarantine(report.run_id, report.quarantine)
        clock.since("finish", t_finish)
        report.seconds = time.perf_counter() - t0
        clock.add("main_cpu", time.thread_time() - cpu0)
        report.timings = {k: round(v, 3) for k, v in clock.seconds.items()}
        if report.added:
            with _status(progress) as say:
                say(f"indexing {report.added} new pins, grouping near-duplicates...")
                app.after_ingest(report.added_ids)
            report.near_duplicate_groups = groups_touching(store.dup_groups(), report.added_ids)
        store.finish_run(
            report.run_id,
            status,
            {k: v for k, v in report.to_dict().items() if isinstance(v, int)},
        )


def _status(progress: bool) -> contextlib.AbstractContextManager[Callable[[str], None]]:
    from tastegraph.progress import status_line

    return status_line(enabled=progress)


def _prepare_models(app: CatalogContext, progress: bool) -> float:
    from tastegraph.models.warmup import prepare

    with _status(progress) as say:
        return prepare(app, say)
