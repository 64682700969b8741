"""The Ray Data stages of an ingest: the pipeline's own steps over Ray Data batches.

Each stage is a thin wrapper over :mod:`.steps` (nothing here decodes, encodes or derives
anything itself). Batches are dicts of numpy columns; the step objects travel pickled in
object columns, so a stage hands the next one exactly what the local runner would:

* :func:`decode_stage` (Ray tasks): ``seq`` + ``item`` -> ``seq`` + ``prepared`` for the items
  :func:`.steps.decode_items` accepted; the rejected ones go to the run's :class:`Rejections`
  actor instead, so that the encode stage sees only accepted images, batched as the local
  runner batches them;
* :class:`EncodeStage` (actors, models loaded once each): :func:`.steps.encode_images`,
  :func:`.steps.encode_texts` and :func:`.steps.derive_rows` (on one BLAS thread, as the local
  runner runs it) -> ``seq`` + ``row`` (a pickled :class:`~tastegraph.store.NewPin`);
* :class:`WriteStage` (actors, PostgreSQL only): ``add_pins`` per batch in one transaction ->
  ``seq`` + ``pin_id`` + ``created``. On SQLite the driver writes instead.

Every stage also returns its CPU and wall seconds, so the driver's clock covers the cluster.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from tastegraph.catalog.pipeline.steps import (
    DecodeConfig,
    Prepared,
    Rejected,
    decode_items,
    derive_rows,
    encode_images,
    encode_texts,
    one_blas_thread,
)

if TYPE_CHECKING:
    from tastegraph.models.base import Encoders

__all__ = ["Batch", "EncodeStage", "Rejections", "WriteStage", "decode_stage", "pack", "unpack"]

Batch = dict[str, NDArray[Any]]


def pack(obj: object) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def unpack(blob: bytes) -> Any:
    return pickle.loads(blob)


def _objects(values: list[Any]) -> NDArray[Any]:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _timing(n: int, **seconds: float) -> dict[str, NDArray[Any]]:
    """Seconds of a batch as columns: on its first row, zeros on the others."""
    cols = {}
    for name, value in seconds.items():
        col = np.zeros(n, dtype=np.float64)
        if n:
            col[0] = value
        cols[name] = col
    return cols


class Rejections:
    """The run's rejected items, by position in the run (a retried decode batch adds nothing)."""

    def __init__(self) -> None:
        self._got: dict[int, Rejected] = {}
        self._taken: set[int] = set()
        self.cpu_s = 0.0

    def add(self, rejected: list[tuple[int, Rejected]], cpu_s: float) -> None:
        for seq, r in rejected:
            self._got.setdefault(seq, r)
        self.cpu_s += cpu_s

    def take(self) -> list[tuple[int, Rejected]]:
        """The rejections not taken before, in run order."""
        new = sorted(s for s in self._got if s not in self._taken)
        self._taken.update(new)
        return [(s, self._got[s]) for s in new]

    def cpu(self) -> float:
        """CPU seconds of the decode batches that accepted nothing (the others carry theirs)."""
        return self.cpu_s


def decode_stage(batch: Batch, cfg: DecodeConfig, rejections: Any) -> Batch:
    """:func:`.steps.decode_items` over a batch of items (a Ray task)."""
    import ray

    cpu0 = time.process_time()
    items = [unpack(b) for b in batch["item"]]
    seqs: list[int] = []
    prepared: list[bytes] = []
    rejected: list[tuple[int, Rejected]] = []
    for seq, p in zip(batch["seq"].tolist(), decode_items(items, cfg), strict=True):
        if isinstance(p, Prepared):
            seqs.append(seq)
            prepared.append(pack(p))
        else:
            rejected.append((seq, p))
    cpu = time.process_time() - cpu0
    # Reported before the batch is handed on: a rejection is never lost behind a written batch.
    ray.get(rejections.add.remote(rejected, cpu if not seqs else 0.0))
    return {
        "seq": np.asarray(seqs, dtype=np.int64),
        "prepared": _objects(prepared),
        **_timing(len(seqs), decode_cpu=cpu),
    }


class EncodeStage:
    """The model steps over a batch of prepared images (a Ray actor: models loaded once)."""

    def __init__(self, encoders: Callable[[], Encoders]) -> None:
        from tastegraph.models.inputs import tag_labels

        t0 = time.perf_counter()
        self._enc = encoders()
        image = self._enc.image

        def labeller(probs: NDArray[np.float32]) -> list[list[tuple[str, float]]]:
            return tag_labels(image, probs, k=3)  # as the app's top_labels

        self._labeller = labeller
        self._start_s = time.perf_counter() - t0

    def __call__(self, batch: Batch) -> Batch:
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        ok: list[Prepared] = [unpack(b) for b in batch["prepared"]]
        encoded = encode_images(ok, self._enc.image)
        t1 = time.perf_counter()
        encoded = encode_texts(encoded, self._enc.text)
        t2 = time.perf_counter()
        with one_blas_thread():  # ConSE as the local runner computes it, bit for bit
            rows = derive_rows(encoded, self._enc, self._labeller)
        t3 = time.perf_counter()
        start, self._start_s = self._start_s, 0.0  # the actor's start-up, reported once
        return {
            "seq": batch["seq"],
            "row": _objects([pack(r) for r in rows]),
            **_timing(
                len(rows),
                decode_cpu=float(np.sum(batch["decode_cpu"])) if "decode_cpu" in batch else 0.0,
                encode_cpu=time.process_time() - cpu0,
                image_model=t1 - t0,
                text_model=t2 - t1,
                bridge_tags=t3 - t2,
                actor_start=start,
            ),
        }


class WriteStage:
    """``add_pins`` per batch, in one transaction (a Ray actor with its own connection).

    For PostgreSQL, where the store's content-hash dedupe is race-free between writers: a
    batch written twice (its actor died after the commit and it was retried) finds its pins
    already there and adds nothing.
    """

    def __init__(self, url: str) -> None:
        from tastegraph.store import open_store

        self._store = open_store(url)

    def __call__(self, batch: Batch) -> Batch:
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        rows = [unpack(b) for b in batch["row"]]
        done = self._store.add_pins(rows) if rows else []
        out = {k: v for k, v in batch.items() if k != "row"}
        out["pin_id"] = np.asarray([p for p, _ in done], dtype=np.int64)
        out["created"] = np.asarray([c for _, c in done], dtype=bool)
        out.update(
            _timing(len(rows), store=time.perf_counter() - t0, store_cpu=time.process_time() - cpu0)
        )
        return out
