"""The local runner's decode workers: the decode step in spawned processes, a bounded way ahead.

The workers (spawned; they import neither the model code nor the store) run
:func:`~tastegraph.catalog.pipeline.steps.decode_items` over chunks of ``CHUNK`` items and are
fed a bounded number of chunks ahead, so memory stays flat on a catalog of any size. The model
inputs come back through shared memory (:class:`PixelSlots`), the rest through the pool's pipe.

Decode workers import this module: keep its imports light (no store, no models, no torch).
"""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import islice
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from tastegraph.catalog.pipeline.steps import DecodeConfig, Prepared, Rejected, decode_items

if TYPE_CHECKING:
    from tastegraph.catalog.pipeline.report import Clock
    from tastegraph.catalog.sources import SourceItem

__all__ = [
    "CHUNK",
    "NO_PIXELS",
    "PixelSlots",
    "largest_input",
    "make_slots",
    "prepared_here",
    "prepared_in_pool",
    "start_pool",
    "usable_cores",
]

# Images per task sent to a decode worker.
CHUNK = 8
# Largest shared memory for model inputs in flight (see PixelSlots): ~136 slots at 256 px.
SLOTS_MAX_BYTES = 64 << 20

NO_PIXELS: NDArray[np.uint8] = np.empty((0,), np.uint8)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


class PixelSlots:
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


def largest_input(image: Any) -> int:
    """Bytes of the image encoder's largest model input (uint8, 3 channels)."""
    shapes = getattr(image, "input_shapes", None) or [(image.input_size, image.input_size)]
    return int(max(rows * cols * 3 for rows, cols in shapes))


def make_slots(ctx: Any, slot_bytes: int, count: int) -> PixelSlots | None:
    """Shared slots for ``count`` model inputs, at most ``SLOTS_MAX_BYTES`` (None: pickle)."""
    count = min(count, SLOTS_MAX_BYTES // slot_bytes)
    if count < CHUNK:
        return None
    try:
        return PixelSlots(ctx, count, slot_bytes)
    except OSError:  # no room for the shared file: the arrays travel through the pipe instead
        return None


def start_pool(
    ctx: Any, workers: int, cfg: DecodeConfig, slots: PixelSlots | None
) -> ProcessPoolExecutor:
    """``workers`` decode processes, each holding ``cfg`` and a view of ``slots``."""
    return ProcessPoolExecutor(
        workers,
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(cfg, (slots.buffer, slots.count, slots.slot_bytes) if slots else None),
    )


_WORKER_CFG: DecodeConfig | None = None
_WORKER_SLOTS: NDArray[np.uint8] | None = None


def _init_worker(cfg: DecodeConfig, slots: tuple[Any, int, int] | None) -> None:
    global _WORKER_CFG, _WORKER_SLOTS
    _WORKER_CFG = cfg
    _WORKER_SLOTS = _slot_view(*slots) if slots is not None else None
    # One decode per process: keep native libraries from spawning threads of their own.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Ctrl-C is the parent's to handle: it stops feeding work and shuts the pool down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _prepare_chunk(
    items: list[SourceItem], slots: list[int]
) -> tuple[list[Prepared | Rejected], float]:
    """The decode step over a few items in a worker; also returns the CPU seconds it took.

    The model input of item i goes to shared slot ``slots[i]`` when there is one (and it fits
    the slot), else it travels back with the result.
    """
    assert _WORKER_CFG is not None
    t0 = time.process_time()
    out = decode_items(items, _WORKER_CFG)
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
                p.pixels, p.slot = NO_PIXELS, slot
    return out, time.process_time() - t0


def prepared_in_pool(
    pool: ProcessPoolExecutor,
    todo: list[SourceItem],
    ahead: int,
    clock: Clock,
    slots: PixelSlots | None = None,
) -> Iterator[Prepared | Rejected]:
    """Results in ``todo`` order, keeping at most ``ahead`` chunks submitted and unconsumed."""
    chunks = _batched(todo, CHUNK)
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


def prepared_here(
    todo: list[SourceItem], cfg: DecodeConfig, data: dict[str, bytes] | None, clock: Clock
) -> Iterator[Prepared | Rejected]:
    """The decode step in this thread, one item at a time (uploads, small runs)."""
    for it in todo:
        t0 = time.perf_counter()
        (p,) = decode_items([it], cfg, data)
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
