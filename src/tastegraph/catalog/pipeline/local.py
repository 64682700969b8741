"""The local runner: the pipeline's steps on this machine's cores, overlapped.

Three stages overlap, so that both cores stay busy:

* decode worker processes (:mod:`.decode_pool`) run the decode step, fed a bounded number of
  chunks ahead;
* this thread batches their results and runs the model steps (the image model releases the GIL);
* a writer thread derives each encoded batch's rows and commits them in one store transaction
  (:mod:`.write`) while the next batch is being encoded.

Timing: every stage's seconds go to the run's :class:`~.report.Clock` under the names
``bench/bench_ingest.py`` prints (``decode``, ``wait_decode``, ``image_model``, ``text_model``,
``bridge_tags``, ``store``, ``wait_store``, ``writer_cpu``, ...).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import TYPE_CHECKING, Any

from tastegraph.catalog.pipeline.decode_pool import (
    CHUNK,
    NO_PIXELS,
    PixelSlots,
    largest_input,
    make_slots,
    prepared_here,
    prepared_in_pool,
    start_pool,
    usable_cores,
)
from tastegraph.catalog.pipeline.steps import (
    Encoded,
    Prepared,
    Rejected,
    decode_config,
    derive_rows,
    encode_images,
    encode_texts,
    one_blas_thread,
)
from tastegraph.catalog.pipeline.write import tally, write_batch
from tastegraph.domain import QuarantineEntry

if TYPE_CHECKING:
    from tastegraph.catalog.pipeline.report import Clock, IngestReport
    from tastegraph.catalog.ports import CatalogContext
    from tastegraph.catalog.sources import SourceItem

__all__ = ["run_local"]

# How many batches of decoded images may wait for the model: enough that the workers never
# stall while a batch is encoded and written.
_BATCHES_AHEAD = 3
# Encoded batches that may wait for the writer thread.
_WRITES_AHEAD = 2


def run_local(
    app: CatalogContext,
    todo: list[SourceItem],
    report: IngestReport,
    clock: Clock,
    known: dict[int, list[SourceItem]],
    *,
    data: dict[str, bytes] | None,
    progress: bool,
    t0: float,
) -> None:
    """Decode, encode and store ``todo`` (rows whose bytes are already known go to ``known``)."""
    from tastegraph.progress import ingest_progress

    settings = app.settings
    cfg = decode_config(settings, app.encoders.image.input_size, app.preprocess)
    workers = settings.ingest.decode_workers or usable_cores()
    batch_size = settings.models.batch_size
    in_process = data is not None or workers <= 1 or len(todo) < 2 * batch_size
    pool: ProcessPoolExecutor | None = None
    slots: PixelSlots | None = None
    try:
        if in_process:
            prepared = prepared_here(todo, cfg, data, clock)
        else:
            ctx = get_context("spawn")
            ahead = max(2 * workers, _BATCHES_AHEAD * -(-batch_size // CHUNK))
            slots = make_slots(
                ctx, largest_input(app.encoders.image), ahead * CHUNK + batch_size + CHUNK
            )
            pool = start_pool(ctx, min(workers, -(-len(todo) // CHUNK)), cfg, slots)
            prepared = prepared_in_pool(pool, todo, ahead, clock, slots)
        clock.since("setup", t0)
        with ingest_progress(total=len(todo), enabled=progress) as bar, _one_blas_thread(pool):
            _run_batches(
                app, prepared, report, bar, clock, known, threaded=not in_process, slots=slots
            )
    finally:
        if pool is not None:
            t_stop = time.perf_counter()
            pool.shutdown(wait=True, cancel_futures=True)
            clock.since("finish", t_stop)


def _one_blas_thread(pool: ProcessPoolExecutor | None) -> contextlib.AbstractContextManager[None]:
    """With decode workers running, keep this process's BLAS calls (ConSE, labels) on one thread.

    A multi-threaded BLAS on a machine whose cores are already taken by the model and the
    decoders spins for cores it cannot get: ConSE and labels for a batch of 32 took 24 ms with
    two OpenBLAS threads and 4 ms with one (2-core machine). Only for bulk runs with a pool: an
    upload ingest (in a server) leaves the process-wide setting alone.
    """
    return one_blas_thread() if pool is not None else contextlib.nullcontext()


def _run_batches(
    app: CatalogContext,
    prepared: Iterable[Prepared | Rejected],
    report: IngestReport,
    bar: Any,
    clock: Clock,
    known: dict[int, list[SourceItem]],
    *,
    threaded: bool,
    slots: PixelSlots | None = None,
) -> None:
    """Batch prepared images, run the models over each batch and hand it to the writer.

    Rows whose bytes turn out to be a pin already in the catalog are added to ``known``.
    """
    writer = _Writer(app, report, bar, clock, known, threaded=threaded)
    try:
        ok: list[Prepared] = []
        items = 0  # items (accepted or not) since the last hand-over, for the progress bar
        for p in prepared:
            items += 1
            if isinstance(p, Rejected):
                report.quarantine.append(QuarantineEntry(p.ref, p.reason, p.message))
                continue
            ok.append(p)
            if len(ok) >= app.settings.models.batch_size:
                writer.put(_encode(app, ok, clock, slots), items)
                ok, items = [], 0
        if ok or items:
            writer.put(_encode(app, ok, clock, slots), items)
    except BaseException:
        writer.close(reraise=False)  # batches already encoded are still stored whole
        raise
    writer.close()


def _encode(
    app: CatalogContext, ok: list[Prepared], clock: Clock, slots: PixelSlots | None = None
) -> Encoded:
    """The image and text steps over a batch (the part that needs the cores)."""
    if not ok:
        return Encoded(ok)
    enc = app.encoders
    t = time.perf_counter()
    try:
        if slots is not None:
            # Views into the shared slots: the encoder copies each shape's inputs into one batch.
            for p in ok:
                if p.slot >= 0:
                    p.pixels = slots.pixels(p)
        batch = encode_images(ok, enc.image)
    finally:
        if slots is not None:
            for p in ok:
                if p.slot >= 0:  # the view dies with the slot
                    slots.give_back(p.slot)
                    p.pixels, p.slot = NO_PIXELS, -1
    t = clock.since("image_model", t)
    batch = encode_texts(batch, enc.text)
    clock.since("text_model", t)
    return batch


class _Writer:
    """Derives the rows of encoded batches and commits them in order, one transaction each.

    Threaded, this runs beside the next batch's forward pass: ConSE, labels and the store write
    take ~10% of a batch's time, and the image model releases the GIL while it runs. At most
    ``_WRITES_AHEAD`` batches wait. A failure stops the run at the next batch handed over, and
    is raised there.
    """

    def __init__(
        self,
        app: CatalogContext,
        report: IngestReport,
        bar: Any,
        clock: Clock,
        known: dict[int, list[SourceItem]],
        *,
        threaded: bool,
    ) -> None:
        self._app = app
        self._report = report
        self._known = known
        self._bar = bar
        self._clock = clock
        self._error: BaseException | None = None
        self._queue: queue.Queue[tuple[Encoded, int] | None] = queue.Queue(_WRITES_AHEAD)
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(
                target=self._loop, name="tastegraph-ingest-writer", daemon=True
            )
            self._thread.start()

    def put(self, batch: Encoded, n_items: int) -> None:
        if self._thread is None:
            self._write(batch, n_items)
            return
        if self._error is not None:
            raise self._error
        t0 = time.perf_counter()
        self._queue.put((batch, n_items))
        self._clock.since("wait_store", t0)

    def close(self, *, reraise: bool = True) -> None:
        if self._thread is not None:
            t0 = time.perf_counter()
            self._queue.put(None)
            self._thread.join()
            self._clock.since("wait_store", t0)
        if reraise and self._error is not None:
            raise self._error

    def _loop(self) -> None:
        cpu0 = time.thread_time()
        while (job := self._queue.get()) is not None:
            if self._error is None:  # after a failure, drain without writing
                try:
                    self._write(*job)
                except BaseException as e:
                    self._error = e
        self._clock.add("writer_cpu", time.thread_time() - cpu0)

    def _write(self, batch: Encoded, n_items: int) -> None:
        app, report = self._app, self._report
        t = time.perf_counter()
        rows = derive_rows(batch, app.encoders, app.top_labels)
        if rows:
            t = self._clock.since("bridge_tags", t)
        written = write_batch(app.store, rows, [p.item for p in batch.ok])
        tally(report, self._known, written)
        self._clock.since("store", t)
        self._bar.advance(n_items, added=report.added, rejected=len(report.quarantine))
