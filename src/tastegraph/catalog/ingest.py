"""The ingest pipeline: read -> validate -> hash/dedup -> thumbnail -> encode -> tag -> write.

Three stages overlap, so that both cores stay busy:

* decode worker processes (spawned; they import neither the model code nor the store) read,
  validate and decode each image once and derive from that one decode the model input, the JPEG
  thumbnail and the pHash; they are fed a bounded number of chunks ahead, so memory stays flat
  on a catalog of any size;
* this thread batches their results and runs the models (the image model releases the GIL);
* a writer thread commits each encoded batch in one store transaction (pins, vectors, source
  refs, change log) while the next batch is being encoded.

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
import os
import queue
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from multiprocessing import get_context
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from tastegraph.catalog.duplicates import groups_touching
from tastegraph.catalog.metadata import pin_text, update_known
from tastegraph.catalog.sources import SourceError, SourceItem, iter_source
from tastegraph.domain import QuarantineEntry
from tastegraph.errors import ImageRejected, TastegraphError
from tastegraph.imaging.decode import decode_image
from tastegraph.imaging.hashes import content_hash
from tastegraph.imaging.limits import ImageLimits
from tastegraph.imaging.read import read_source_bytes
from tastegraph.imaging.thumbnails import encode_thumbnail, quick_thumbnail_and_phash

if TYPE_CHECKING:
    from tastegraph.catalog.ports import CatalogContext
    from tastegraph.catalog.runs import InterruptedRun
    from tastegraph.models.base import ImageOutput
    from tastegraph.store import NewPin

# Decode workers import this module: keep its imports light (no store, no models, no torch).

__all__ = ["IngestReport", "Prepared", "ingest", "ingest_items", "prepare", "usable_cores"]

# Images per task sent to a decode worker, and how many batches of decoded images may wait for
# the model: enough that the workers never stall while a batch is encoded and written.
_CHUNK = 8
_BATCHES_AHEAD = 3
# Encoded batches that may wait for the writer thread.
_WRITES_AHEAD = 2
# Largest shared memory for model inputs in flight (see _PixelSlots): ~136 slots at 256 px.
_SLOTS_MAX_BYTES = 64 << 20


@dataclass
class PrepareConfig:
    """What a decode worker needs: plain values only, so it pickles cheaply."""

    limits: ImageLimits
    input_size: int
    thumbnail_size: int
    timeout: float
    allow_url: bool
    preprocess: Callable[[Any], NDArray[np.uint8]]


@dataclass
class Prepared:
    item: SourceItem
    content_hash: str
    pixels: NDArray[np.uint8]  # empty while the model input waits in a shared-memory slot
    thumbnail: bytes
    phash: str
    width: int
    height: int
    format: str
    slot: int = -1  # the _PixelSlots slot holding the model input, or -1
    shape: tuple[int, ...] = ()  # the model input's shape while it waits in ``slot``


@dataclass
class Rejected:
    ref: str
    reason: str
    message: str


@dataclass
class IngestReport:
    run_id: str
    source: str
    seen: int = 0
    added: int = 0
    existing: int = 0  # same bytes as a pin already in the catalog (content hash)
    skipped: int = 0  # source refs finished by an earlier run
    # Of the rows naming an image already in the catalog (skipped + existing): those whose
    # words changed the pin, and those that changed nothing.
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    near_duplicate_groups: int = 0  # groups holding at least one pin this run added
    seconds: float = 0.0  # the run itself, after setup
    setup_seconds: float = 0.0  # one-off model work before the clock (exports, label vectors)
    interrupted: list[InterruptedRun] = field(default_factory=list)  # earlier runs found dead
    quarantine: list[QuarantineEntry] = field(default_factory=list)
    added_ids: list[int] = field(default_factory=list)
    # Seconds per stage (see ``_Clock``); stages overlap, so they do not add up to ``seconds``.
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        return self.rejected > 0

    @property
    def empty(self) -> bool:
        """The source named nothing at all (an empty folder or manifest)."""
        return self.seen == 0

    @property
    def images_per_s(self) -> float:
        return self.added / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "source": self.source,
            "status": "empty" if self.empty else "partial" if self.partial else "complete",
            "seen": self.seen,
            "added": self.added,
            "existing": self.existing,
            "skipped": self.skipped,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "near_duplicate_groups": self.near_duplicate_groups,
            "seconds": round(self.seconds, 3),
            "setup_seconds": round(self.setup_seconds, 3),
            "interrupted_runs": [
                {"run_id": r.run_id, "source": r.source, "started_at": r.started_at}
                for r in self.interrupted
            ],
            "images_per_s": round(self.images_per_s, 2),
            "quarantine": [
                {"source": q.source, "reason": q.reason, "message": q.message}
                for q in self.quarantine
            ],
        }


class _Clock:
    """Seconds per ingest stage, summed over the run (wall clock unless it says CPU).

    ``setup``: listing the source, checking what is done, preparing the workers. ``decode``: CPU
    seconds the decode workers spent preparing images (without workers: this thread's time).
    ``wait_decode``: this thread waiting for decoded images (worker start-up included).
    ``image_model`` / ``text_model``: the encoders. ``bridge_tags``: ConSE, labels and building
    the rows, and ``store``: the store transactions (both on the writer thread when there is one).
    ``wait_store``: this thread waiting for the writer. ``finish``: stopping the workers and
    writing the quarantine records.
    ``main_cpu`` / ``writer_cpu``: CPU seconds of this thread and of the writer thread.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def since(self, stage: str, t0: float) -> float:
        now = time.perf_counter()
        self.add(stage, now - t0)
        return now


def prepare(item: SourceItem, cfg: PrepareConfig, data: bytes | None = None) -> Prepared | Rejected:
    """Bytes -> validated, decoded, model-ready pixels + thumbnail + hashes (runs in workers).

    The image is decoded once (JPEG draft mode where the picture is large) and the model input,
    the thumbnail and the pHash are all derived from that one decode.
    """
    try:
        if data is None:
            data = read_source_bytes(
                item.ref, cfg.limits, timeout=cfg.timeout, allow_url=cfg.allow_url
            )
        digest = content_hash(data)
        # The decode must keep enough pixels for both the thumbnail and the model input.
        draft = max(cfg.thumbnail_size, cfg.input_size)
        decoded = decode_image(data, cfg.limits, draft_to=draft, source=item.ref)
        pixels = cfg.preprocess(decoded.image)
        # The pHash shrinks to 32x32 anyway: it shares the thumbnail's first (box) reduction.
        thumb, phash = quick_thumbnail_and_phash(decoded.image, cfg.thumbnail_size)
        return Prepared(
            item=item,
            content_hash=digest,
            pixels=pixels,
            # JPEG: about 3x faster to encode than WebP, for files ~3% larger.
            thumbnail=encode_thumbnail(thumb, fmt="JPEG"),
            phash=phash,
            width=decoded.width,
            height=decoded.height,
            format=decoded.format,
        )
    except ImageRejected as e:
        return Rejected(item.ref, e.reason, e.message)
    except TastegraphError as e:
        return Rejected(item.ref, e.code, e.message)
    except Exception as e:  # a decoder bug must quarantine one file, not end the run
        return Rejected(item.ref, "corrupt", f"{type(e).__name__}: {e}")


# ---------------------------------------------------------------------------------------------
# Decode workers


class _PixelSlots:
    """Shared memory for the model input of the images in flight.

    A decode worker writes each image's model input (~200 KB at 256 px) into a slot the main
    process assigned with the chunk, and sends back only the slot number: pickling the array
    through the pool's pipe cost ~0.8 ms of CPU per image (both sides together), about 4% of
    everything an ingest does. The memory is an unlinked file shared by descriptor
    (``multiprocessing`` RawArray), so it disappears with the processes, even when they are
    killed. Slots are taken when a chunk is submitted and given back once their pixels have
    been copied into a model batch (or the image was rejected); when none is free, the worker
    simply pickles the array as before.
    """

    def __init__(self, ctx: Any, count: int, slot_bytes: int) -> None:
        self.count = count
        self.slot_bytes = slot_bytes  # the largest model input (the encoder has a few shapes)
        self.buffer = ctx.RawArray("B", count * slot_bytes)
        self.view = _slot_view(self.buffer, count, slot_bytes)
        self._free: deque[int] = deque(range(count))

    def take(self) -> int:
        return self._free.popleft() if self._free else -1

    def give_back(self, slot: int) -> None:
        if slot >= 0:
            self._free.append(slot)

    def pixels(self, p: Prepared) -> NDArray[np.uint8]:
        """The model input waiting in ``p``'s slot (a view: copy it before giving it back)."""
        return self.view[p.slot, : int(np.prod(p.shape))].reshape(p.shape)


def _slot_view(buffer: Any, count: int, slot_bytes: int) -> NDArray[np.uint8]:
    return np.frombuffer(buffer, dtype=np.uint8).reshape(count, slot_bytes)


_WORKER_CFG: PrepareConfig | None = None
_WORKER_SLOTS: NDArray[np.uint8] | None = None


def _init_worker(cfg: PrepareConfig, slots: tuple[Any, int, int] | None) -> None:
    global _WORKER_CFG, _WORKER_SLOTS
    _WORKER_CFG = cfg
    _WORKER_SLOTS = _slot_view(*slots) if slots is not None else None
    # One decode per process: keep native libraries from spawning threads of their own.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Ctrl-C is the parent's to handle: it stops feeding work and shuts the pool down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


_NO_PIXELS: NDArray[np.uint8] = np.empty((0,), np.uint8)


def _prepare_chunk(
    items: list[SourceItem], slots: list[int]
) -> tuple[list[Prepared | Rejected], float]:
    """Prepare a few items in a worker; also returns the CPU seconds it took.

    The model input of item i goes to shared slot ``slots[i]`` when there is one (and it fits
    the slot), else it travels back with the result.
    """
    assert _WORKER_CFG is not None
    t0 = time.process_time()
    out = [prepare(it, _WORKER_CFG) for it in items]
    view = _WORKER_SLOTS
    if view is not None:
        for p, slot in zip(out, slots, strict=True):
            if (
                isinstance(p, Prepared)
                and slot >= 0
                and p.pixels.dtype == view.dtype
                and p.pixels.size <= view.shape[1]
            ):
                view[slot, : p.pixels.size] = p.pixels.reshape(-1)
                p.shape = p.pixels.shape
                p.pixels, p.slot = _NO_PIXELS, slot
    return out, time.process_time() - t0


def _prepared_in_pool(
    pool: ProcessPoolExecutor,
    todo: list[SourceItem],
    ahead: int,
    clock: _Clock,
    slots: _PixelSlots | None = None,
) -> Iterator[Prepared | Rejected]:
    """Results in ``todo`` order, keeping at most ``ahead`` chunks submitted and unconsumed."""
    chunks = _batched(todo, _CHUNK)
    pending: deque[tuple[Future[tuple[list[Prepared | Rejected], float]], list[int]]] = deque()

    def submit(chunk: list[SourceItem]) -> None:
        taken = [slots.take() if slots is not None else -1 for _ in chunk]
        pending.append((pool.submit(_prepare_chunk, chunk, taken), taken))

    for c in islice(chunks, ahead):
        submit(c)
    while pending:
        t0 = time.perf_counter()
        future, taken = pending.popleft()
        results, cpu = future.result()
        clock.since("wait_decode", t0)
        clock.add("decode", cpu)
        if slots is not None:  # slots the worker did not fill are free again at once
            for r, slot in zip(results, taken, strict=True):
                if not isinstance(r, Prepared) or r.slot != slot:
                    slots.give_back(slot)
        for c in islice(chunks, 1):
            submit(c)
        yield from results


def _prepared_here(
    todo: list[SourceItem], cfg: PrepareConfig, data: dict[str, bytes] | None, clock: _Clock
) -> Iterator[Prepared | Rejected]:
    for it in todo:
        t0 = time.perf_counter()
        p = prepare(it, cfg, data.get(it.ref) if data else None)
        clock.since("decode", t0)
        yield p


def _batched(it: Iterable[Any], n: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for x in it:
        batch.append(x)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


# ---------------------------------------------------------------------------------------------
# The run


def ingest(app: CatalogContext, source: str, *, progress: bool = True) -> IngestReport:
    """Ingest every image a folder or a CSV/JSONL manifest names (resumable, idempotent)."""
    return ingest_items(app, iter_source(source), source_label=str(source), progress=progress)


def ingest_items(
    app: CatalogContext,
    items: Iterable[SourceItem | SourceError],
    *,
    source_label: str,
    progress: bool = True,
    data: dict[str, bytes] | None = None,
) -> IngestReport:
    """Ingest already-enumerated items; ``data`` maps refs to bytes already in memory (uploads)."""
    from tastegraph.catalog.runs import Heartbeat, reap_interrupted

    store = app.store
    run_id = uuid.uuid4().hex[:16]
    report = IngestReport(run_id=run_id, source=source_label)
    report.interrupted = reap_interrupted(store)
    clock = _Clock()
    store.start_run(run_id, source_label)
    heartbeat = Heartbeat(store, run_id)
    try:
        _run(app, items, report, clock, data=data, progress=progress)
    finally:
        heartbeat.stop()  # even when finishing failed: a beating record would look alive
    return report


def _run(
    app: CatalogContext,
    items: Iterable[SourceItem | SourceError],
    report: IngestReport,
    clock: _Clock,
    *,
    data: dict[str, bytes] | None,
    progress: bool,
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
            _pipeline(app, todo, report, clock, known, data=data, progress=progress, t0=t0)
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


def _pipeline(
    app: CatalogContext,
    todo: list[SourceItem],
    report: IngestReport,
    clock: _Clock,
    known: dict[int, list[SourceItem]],
    *,
    data: dict[str, bytes] | None,
    progress: bool,
    t0: float,
) -> None:
    """Decode, encode and store ``todo`` (rows whose bytes are already known go to ``known``)."""
    from tastegraph.progress import ingest_progress

    settings = app.settings
    enc = app.encoders
    cfg = PrepareConfig(
        limits=ImageLimits.from_settings(settings),
        input_size=enc.image.input_size,
        thumbnail_size=settings.ingest.thumbnail_size,
        timeout=settings.ingest.fetch_timeout_s,
        allow_url=settings.api.allow_url_fetch,
        preprocess=app.preprocess,
    )
    workers = settings.ingest.decode_workers or usable_cores()
    batch_size = settings.models.batch_size
    in_process = data is not None or workers <= 1 or len(todo) < 2 * batch_size
    pool: ProcessPoolExecutor | None = None
    slots: _PixelSlots | None = None
    try:
        if in_process:
            prepared = _prepared_here(todo, cfg, data, clock)
        else:
            ctx = get_context("spawn")
            ahead = max(2 * workers, _BATCHES_AHEAD * -(-batch_size // _CHUNK))
            slots = _make_slots(
                ctx, _largest_input(enc.image), ahead * _CHUNK + batch_size + _CHUNK
            )
            pool = ProcessPoolExecutor(
                min(workers, -(-len(todo) // _CHUNK)),
                mp_context=ctx,
                initializer=_init_worker,
                initargs=(cfg, (slots.buffer, slots.count, slots.slot_bytes) if slots else None),
            )
            prepared = _prepared_in_pool(pool, todo, ahead, clock, slots)
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


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def _largest_input(image: Any) -> int:
    """Bytes of the image encoder's largest model input (uint8, 3 channels)."""
    shapes = getattr(image, "input_shapes", None) or [(image.input_size, image.input_size)]
    return int(max(rows * cols * 3 for rows, cols in shapes))


def _make_slots(ctx: Any, slot_bytes: int, count: int) -> _PixelSlots | None:
    """Shared slots for ``count`` model inputs, at most ``_SLOTS_MAX_BYTES`` (None: pickle)."""
    count = min(count, _SLOTS_MAX_BYTES // slot_bytes)
    if count < _CHUNK:
        return None
    try:
        return _PixelSlots(ctx, count, slot_bytes)
    except OSError:  # no room for the shared file: the arrays travel through the pipe instead
        return None


@contextlib.contextmanager
def _one_blas_thread(pool: ProcessPoolExecutor | None) -> Iterator[None]:
    """With decode workers running, keep this process's BLAS calls (ConSE, labels) on one thread.

    A multi-threaded BLAS on a machine whose cores are already taken by the model and the
    decoders spins for cores it cannot get: ConSE and labels for a batch of 32 took 24 ms with
    two OpenBLAS threads and 4 ms with one (2-core machine). Only for bulk runs with a pool: an
    upload ingest (in a server) leaves the process-wide setting alone.
    """
    if pool is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        yield


def _run_batches(
    app: CatalogContext,
    prepared: Iterable[Prepared | Rejected],
    report: IngestReport,
    bar: Any,
    clock: _Clock,
    known: dict[int, list[SourceItem]],
    *,
    threaded: bool,
    slots: _PixelSlots | None = None,
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
                writer.put(_run_models(app, ok, clock, slots), items)
                ok, items = [], 0
        if ok or items:
            writer.put(_run_models(app, ok, clock, slots), items)
    except BaseException:
        writer.close(reraise=False)  # batches already encoded are still stored whole
        raise
    writer.close()


class _Writer:
    """Turns encoded batches into pin rows and commits them in order, one transaction each.

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
        clock: _Clock,
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
        self._queue: queue.Queue[tuple[_Encoded, int] | None] = queue.Queue(_WRITES_AHEAD)
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(
                target=self._loop, name="tastegraph-ingest-writer", daemon=True
            )
            self._thread.start()

    def put(self, batch: _Encoded, n_items: int) -> None:
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

    def _write(self, batch: _Encoded, n_items: int) -> None:
        report = self._report
        pins = _pin_rows(self._app, batch, self._clock)
        t0 = time.perf_counter()
        stored = self._app.store.add_pins(pins)
        for p, (pin_id, created) in zip(batch.ok, stored, strict=True):
            if created:
                report.added += 1
                report.added_ids.append(pin_id)
            else:
                report.existing += 1
                self._known.setdefault(pin_id, []).append(p.item)
        self._clock.since("store", t0)
        self._bar.advance(n_items, added=report.added, rejected=len(report.quarantine))


@dataclass
class _Encoded:
    """A batch after the models: what :func:`_pin_rows` turns into store rows."""

    ok: list[Prepared]
    out: ImageOutput | None = None
    text_vecs: NDArray[np.float32] | None = None
    text_row: dict[int, int] = field(default_factory=dict)  # image i -> row of text_vecs


def encode_batch(
    app: CatalogContext, ok: list[Prepared], clock: _Clock | None = None
) -> list[NewPin]:
    """Run the models over a batch of prepared images -> rows ready for the store."""
    clock = clock or _Clock()
    return _pin_rows(app, _run_models(app, ok, clock), clock)


def _run_models(
    app: CatalogContext, ok: list[Prepared], clock: _Clock, slots: _PixelSlots | None = None
) -> _Encoded:
    """The image and text encoders over a batch (the part that needs the cores)."""
    if not ok:
        return _Encoded(ok)
    enc = app.encoders
    t = time.perf_counter()
    try:
        # Views into the shared slots: the encoder copies each shape's inputs into one batch.
        out = enc.image.encode([slots.pixels(p) if slots and p.slot >= 0 else p.pixels for p in ok])
    finally:
        if slots is not None:
            for p in ok:
                slots.give_back(p.slot)
                p.slot = -1
    t = clock.since("image_model", t)
    texts = [_pin_text(p.item) for p in ok]
    with_text = [i for i, s in enumerate(texts) if s]
    text_vecs = enc.text.encode([texts[i] for i in with_text]) if with_text else None
    clock.since("text_model", t)
    return _Encoded(ok, out, text_vecs, {i: r for r, i in enumerate(with_text)})


def _pin_rows(app: CatalogContext, batch: _Encoded, clock: _Clock) -> list[NewPin]:
    """ConSE vectors, labels and tags for an encoded batch -> rows ready for the store."""
    from tastegraph.store import NewPin

    ok, out = batch.ok, batch.out
    if not ok or out is None:
        return []
    t = time.perf_counter()
    enc = app.encoders
    conse = enc.bridge.transform(out)
    labels = app.top_labels(out.probs) if out.probs is not None else [[] for _ in ok]
    pins: list[NewPin] = []
    for i, p in enumerate(ok):
        vectors = {
            "image": (enc.image.model_id, out.features[i]),
            "conse": (enc.bridge.model_id, conse[i]),
        }
        if batch.text_vecs is not None and i in batch.text_row:
            vectors["text"] = (enc.text.model_id, batch.text_vecs[batch.text_row[i]])
        it = p.item
        tags = list(dict.fromkeys([*it.tags, *(lab for lab, _ in labels[i])]))
        pins.append(
            NewPin(
                content_hash=p.content_hash,
                source=it.ref,
                vectors=vectors,
                title=it.title,
                description=it.description,
                link=it.link,
                board=it.board,
                tags=tags,
                labels=labels[i],
                attributes=dict(it.attributes),
                phash=p.phash,
                width=p.width,
                height=p.height,
                format=p.format,
                thumbnail=p.thumbnail,
            )
        )
    clock.since("bridge_tags", t)
    return pins


def _pin_text(item: SourceItem) -> str:
    return pin_text(item.title, item.description)
