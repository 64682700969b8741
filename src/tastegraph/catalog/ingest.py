"""The ingest pipeline: read -> validate -> hash/dedup -> thumbnail -> encode -> tag -> write.

Decoding runs in worker processes (it is pure and CPU-bound); encoding runs batched in this
process; every batch is committed in one store transaction (pins, vectors, source refs, change
log), so a kill at any point loses at most the batch in flight and a rerun skips every source
already committed. Indexes catch up from the store's change log (see ``index.spaces``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from tastegraph.catalog.images import (
    ImageLimits,
    content_hash,
    decode_image,
    encode_thumbnail,
    perceptual_hash,
    read_source_bytes,
    thumbnail_image,
)
from tastegraph.catalog.sources import SourceError, SourceItem, iter_source
from tastegraph.domain import QuarantineEntry
from tastegraph.errors import ImageRejected, TastegraphError
from tastegraph.store import NewPin

if TYPE_CHECKING:
    from tastegraph.app import App

__all__ = ["IngestReport", "Prepared", "ingest", "ingest_items", "prepare"]


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
    pixels: NDArray[np.uint8]
    thumbnail: bytes
    phash: str
    width: int
    height: int
    format: str


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
    rejected: int = 0
    near_duplicate_groups: int = 0
    seconds: float = 0.0
    quarantine: list[QuarantineEntry] = field(default_factory=list)
    added_ids: list[int] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        return self.rejected > 0

    @property
    def images_per_s(self) -> float:
        return self.added / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "source": self.source,
            "status": "partial" if self.partial else "complete",
            "seen": self.seen,
            "added": self.added,
            "existing": self.existing,
            "skipped": self.skipped,
            "rejected": self.rejected,
            "near_duplicate_groups": self.near_duplicate_groups,
            "seconds": round(self.seconds, 3),
            "images_per_s": round(self.images_per_s, 2),
            "quarantine": [
                {"source": q.source, "reason": q.reason, "message": q.message}
                for q in self.quarantine
            ],
        }


def prepare(item: SourceItem, cfg: PrepareConfig, data: bytes | None = None) -> Prepared | Rejected:
    """Bytes -> validated, decoded, model-ready pixels + thumbnail + hashes (runs in workers)."""
    try:
        if data is None:
            data = read_source_bytes(
                item.ref, cfg.limits, timeout=cfg.timeout, allow_url=cfg.allow_url
            )
        digest = content_hash(data)
        decoded = decode_image(data, cfg.limits, draft_to=cfg.thumbnail_size, source=item.ref)
        pixels = cfg.preprocess(decoded.image)
        thumb = thumbnail_image(decoded.image, cfg.thumbnail_size)
        return Prepared(
            item=item,
            content_hash=digest,
            pixels=pixels,
            # JPEG: about 3x faster to encode than WebP, for files ~3% larger.
            thumbnail=encode_thumbnail(thumb, fmt="JPEG"),
            # The pHash shrinks to 32x32 anyway: from the thumbnail (same full frame) it is the
            # same hash for a fraction of the resampling work.
            phash=perceptual_hash(thumb),
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


_WORKER_CFG: PrepareConfig | None = None


def _init_worker(cfg: PrepareConfig) -> None:
    global _WORKER_CFG
    _WORKER_CFG = cfg
    # One decode per process: keep native libraries from spawning threads of their own.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _prepare_in_worker(item: SourceItem) -> Prepared | Rejected:
    assert _WORKER_CFG is not None
    return prepare(item, _WORKER_CFG)


def _batched(it: Iterable[Any], n: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for x in it:
        batch.append(x)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


def ingest(app: App, source: str, *, progress: bool = True) -> IngestReport:
    """Ingest every image a folder or a CSV/JSONL manifest names (resumable, idempotent)."""
    return ingest_items(app, iter_source(source), source_label=str(source), progress=progress)


def ingest_items(
    app: App,
    items: Iterable[SourceItem | SourceError],
    *,
    source_label: str,
    progress: bool = True,
    data: dict[str, bytes] | None = None,
) -> IngestReport:
    """Ingest already-enumerated items; ``data`` maps refs to bytes already in memory (uploads)."""
    import time

    from tastegraph.progress import ingest_progress

    store = app.store
    settings = app.settings
    run_id = uuid.uuid4().hex[:16]
    report = IngestReport(run_id=run_id, source=source_label)
    store.start_run(run_id, source_label)
    t0 = time.perf_counter()
    done_refs = store.known_sources() if data is None else set()

    todo: list[SourceItem] = []
    for it in items:
        report.seen += 1
        if isinstance(it, SourceError):
            report.quarantine.append(
                QuarantineEntry(it.ref or f"row {it.row}", "bad_row", it.message)
            )
            continue
        if it.ref in done_refs:
            report.skipped += 1
            continue
        todo.append(it)

    enc = app.encoders
    cfg = PrepareConfig(
        limits=ImageLimits.from_settings(settings),
        input_size=enc.image.input_size,
        thumbnail_size=settings.thumbnail_size,
        timeout=settings.fetch_timeout_s,
        allow_url=settings.allow_url_fetch,
        preprocess=app.preprocess,
    )
    workers = settings.decode_workers or (os.cpu_count() or 1)
    status = "failed"
    try:
        with ingest_progress(total=len(todo), enabled=progress) as bar:
            if data is not None or workers <= 1 or len(todo) < 2 * settings.batch_size:
                prepared: Iterator[Prepared | Rejected] = (
                    prepare(it, cfg, data.get(it.ref) if data else None) for it in todo
                )
                _consume(app, prepared, report, bar)
            else:
                ctx = get_context("spawn")
                with ProcessPoolExecutor(
                    workers, mp_context=ctx, initializer=_init_worker, initargs=(cfg,)
                ) as pool:
                    _consume(app, pool.map(_prepare_in_worker, todo, chunksize=4), report, bar)
        status = "partial" if report.quarantine else "complete"
    finally:
        report.rejected = len(report.quarantine)
        store.add_quarantine(run_id, report.quarantine)
        report.seconds = time.perf_counter() - t0
        if report.added:
            app.after_ingest(report.added_ids)
            report.near_duplicate_groups = len(store.dup_groups())
        store.finish_run(
            run_id,
            status,
            {k: v for k, v in report.to_dict().items() if isinstance(v, int)},
        )
    return report


def _consume(
    app: App, prepared: Iterable[Prepared | Rejected], report: IngestReport, bar: Any
) -> None:
    for batch in _batched(prepared, app.settings.batch_size):
        ok = [p for p in batch if isinstance(p, Prepared)]
        for p in batch:
            if isinstance(p, Rejected):
                report.quarantine.append(QuarantineEntry(p.ref, p.reason, p.message))
        if ok:
            pins = encode_batch(app, ok)
            for (pin_id, created), _p in zip(app.store.add_pins(pins), ok, strict=False):
                if created:
                    report.added += 1
                    report.added_ids.append(pin_id)
                else:
                    report.existing += 1
        bar.advance(len(batch), added=report.added, rejected=len(report.quarantine))


def encode_batch(app: App, ok: list[Prepared]) -> list[NewPin]:
    """Run the models over a batch of prepared images -> rows ready for the store."""
    enc = app.encoders
    pixels = np.stack([p.pixels for p in ok])
    out = enc.image.encode(pixels)
    conse = enc.bridge.transform(out)
    texts = [_pin_text(p.item) for p in ok]
    with_text = [i for i, s in enumerate(texts) if s]
    text_vecs = enc.text.encode([texts[i] for i in with_text]) if with_text else None
    text_row = {i: r for r, i in enumerate(with_text)}
    labels = app.top_labels(out.probs) if out.probs is not None else [[] for _ in ok]
    pins: list[NewPin] = []
    for i, p in enumerate(ok):
        vectors = {
            "image": (enc.image.model_id, out.features[i]),
            "conse": (enc.bridge.model_id, conse[i]),
        }
        if text_vecs is not None and i in text_row:
            vectors["text"] = (enc.text.model_id, text_vecs[text_row[i]])
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
    return pins


def _pin_text(item: SourceItem) -> str:
    return ". ".join(s.strip() for s in (item.title, item.description) if s and s.strip())
