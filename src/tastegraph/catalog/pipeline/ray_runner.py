"""The Ray runner: the pipeline's steps as Ray Data stages on a local or remote Ray cluster.

The same run as the local runner (:mod:`.local`), handed the same items by
:func:`.run.ingest_items` (which skips what is done, records the run and the quarantine and
brings derived state up to date afterwards); only where the steps run changes::

    items -> map_batches(decode_stage)      Ray tasks, decode_cpus each
          -> repartition(batch_size, strict)  accepted images, batched as the local runner does
          -> map_batches(EncodeStage)       `actors` actors, actor_cpus each, models loaded once
          [-> map_batches(WriteStage)]      PostgreSQL: each actor writes its batches
          -> this process                   SQLite: writes each batch in one transaction

Order is preserved end to end, so every encode batch holds the same images as the local
runner's (the text model pads a batch to its longest text: other batches would change the
last bits of the text vectors), and the vectors are bit for bit the local run's.

Writes are idempotent by content hash and the run is resumable as the local one is: a batch is
committed whole or not at all, a rerun skips every source already stored, and a batch retried
after its actor died finds its pins already there. Ray retries the tasks and actor calls of a
worker that dies; when it gives up (a node gone for good), the run fails with what was written
so far kept, and a rerun finishes it.
"""

from __future__ import annotations

import contextlib
import functools
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from tastegraph.catalog.pipeline.decode_pool import CHUNK
from tastegraph.catalog.pipeline.ray_session import RayOptions, ray_session
from tastegraph.catalog.pipeline.ray_stages import (
    Batch,
    EncodeStage,
    Rejections,
    WriteStage,
    decode_stage,
    pack,
    unpack,
)
from tastegraph.catalog.pipeline.steps import Rejected, decode_config
from tastegraph.catalog.pipeline.write import Written, tally, write_batch
from tastegraph.domain import QuarantineEntry

if TYPE_CHECKING:
    from tastegraph.catalog.pipeline.report import Clock, IngestReport
    from tastegraph.catalog.ports import CatalogContext
    from tastegraph.catalog.sources import SourceItem
    from tastegraph.models.base import Encoders

__all__ = ["RayRunner"]

# Seconds the stages report per batch -> the clock (sums over the cluster).
_STAGE_SECONDS = ("image_model", "text_model", "bridge_tags", "store")
_CPU_SECONDS = ("decode_cpu", "encode_cpu", "store_cpu")


@dataclass
class RayRunner:
    """Runs an ingest's steps on Ray; called as :func:`.local.run_local` is.

    ``encoders``: builds the models in each encoder actor (default: the models the settings
    name, loaded on that node). Tests pass a picklable factory of fakes.
    """

    options: RayOptions = field(default_factory=RayOptions)
    encoders: Callable[[], Encoders] | None = None

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
    ) -> None:
        """Decode, encode and store ``todo`` on Ray (rows already known go to ``known``)."""
        if data is not None:  # bytes in this process's memory (an upload): run here
            from tastegraph.catalog.pipeline.local import run_local

            run_local(app, todo, report, clock, known, data=data, progress=progress, t0=t0)
            return
        from tastegraph.progress import ingest_progress

        t_ray = time.perf_counter()
        with ray_session(self.options) as ray:
            clock.since("ray_start", t_ray)
            rejections = ray.remote(num_cpus=0)(Rejections).options(**_here(ray)).remote()
            blocks = self._blocks(ray, app, todo, rejections)
            clock.since("setup", t0)
            with ingest_progress(total=len(todo), enabled=progress) as bar, _fewer_warnings():
                _drain(ray, app, todo, blocks, rejections, report, clock, known, bar)

    def _blocks(
        self, ray: ModuleType, app: CatalogContext, todo: list[SourceItem], rejections: Any
    ) -> Iterator[Batch]:
        """The stages, started lazily: each block that comes back is one encoded batch."""
        settings, opts = app.settings, self.options
        ray.data.DataContext.get_current().execution_options.preserve_order = True
        cfg = decode_config(settings, app.encoders.image.input_size, app.preprocess)
        factory = self.encoders or functools.partial(_settings_encoders, settings)
        batch_size = settings.models.batch_size
        rows = [{"seq": i, "item": pack(it)} for i, it in enumerate(todo)]
        ds = ray.data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // CHUNK)))
        ds = ds.map_batches(
            decode_stage,
            batch_size=CHUNK,
            batch_format="numpy",
            fn_kwargs={"cfg": cfg, "rejections": rejections},
            num_cpus=opts.decode_cpus,
        )
        ds = ds.repartition(target_num_rows_per_block=batch_size, strict=True)
        _claim(ds, opts.decode_cpus / 2)
        ds = ds.map_batches(
            EncodeStage,
            fn_constructor_kwargs={"encoders": factory},
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=opts.actors),
            num_cpus=opts.actor_cpus,
        )
        if _parallel_writes(app):
            ds = ds.map_batches(
                WriteStage,
                fn_constructor_kwargs={"url": app.store.url},
                batch_size=batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=opts.actors),
                num_cpus=min(0.25, opts.actor_cpus),
            )
        out: Iterator[Batch] = ds.iter_batches(batch_size=None, batch_format="numpy")
        return out


@contextlib.contextmanager
def _fewer_warnings() -> Iterator[None]:
    """Leave out Ray Data's note that a small run cannot keep every actor busy."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The minimum number of concurrent actors")
        yield


def _claim(ds: Any, cpus: float) -> None:
    """The CPUs each task of ``ds``'s last stage claims (Ray Data offers no option for it).

    The rebatching stage only moves rows, yet its tasks claim a whole CPU by default: on a
    node whose CPUs the actors and decode tasks already hold in part, it waits forever for
    one. Left as it is on a Ray Data without the field.
    """
    args = getattr(
        getattr(getattr(ds, "_logical_plan", None), "dag", None), "ray_remote_args", None
    )
    if isinstance(args, dict):
        args.setdefault("num_cpus", cpus)


def _settings_encoders(settings: Any) -> Encoders:
    from tastegraph.models import make_encoders

    return make_encoders(settings)


def _parallel_writes(app: CatalogContext) -> bool:
    """PostgreSQL: the write stage runs on the cluster (its dedupe is race-free there)."""
    return str(app.store.url).startswith("postgresql")


def _here(ray: ModuleType) -> dict[str, Any]:
    """Keep a small bookkeeping actor on this process's node (it outlives a lost worker node)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = ray.get_runtime_context().get_node_id()
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=True)}


def _drain(
    ray: ModuleType,
    app: CatalogContext,
    todo: list[SourceItem],
    blocks: Iterator[Batch],
    rejections: Any,
    report: IngestReport,
    clock: Clock,
    known: dict[int, list[SourceItem]],
    bar: Any,
) -> None:
    """Store (SQLite) or count (PostgreSQL) each batch as it comes back, then the rejections."""
    parallel = _parallel_writes(app)
    rejected: list[tuple[int, Rejected]] = []
    t = time.perf_counter()
    first = True
    for block in blocks:
        # The first batch's wait holds the actors' start-up (model loading) and the first decode.
        t = clock.since("first_batch" if first else "wait_ray", t)
        first = False
        seqs = block["seq"].tolist()
        items = [todo[s] for s in seqs]
        if parallel:
            written = Written()
            for pin_id, created, item in zip(
                block["pin_id"].tolist(), block["created"].tolist(), items, strict=True
            ):
                if created:
                    written.added_ids.append(pin_id)
                else:
                    written.existing.append((pin_id, item))
        else:
            cpu0 = time.thread_time()
            written = write_batch(app.store, [unpack(b) for b in block["row"]], items)
            clock.add("store_cpu", time.thread_time() - cpu0)
            t = clock.since("store", t)
        tally(report, known, written)
        _count(clock, block)
        new = ray.get(rejections.take.remote())
        rejected.extend(new)
        bar.advance(
            len(seqs) + len(new),
            added=report.added,
            rejected=len(report.quarantine) + len(rejected),
        )
        t = time.perf_counter()
    new = ray.get(rejections.take.remote())
    rejected.extend(new)
    clock.add("decode_cpu", ray.get(rejections.cpu.remote()))
    if new:
        bar.advance(len(new), added=report.added, rejected=len(report.quarantine) + len(rejected))
    for _, r in sorted(rejected, key=lambda sr: sr[0]):  # in run order, as the local runner
        report.quarantine.append(QuarantineEntry(r.ref, r.reason, r.message))


def _count(clock: Clock, block: Batch) -> None:
    for name in (*_STAGE_SECONDS, *_CPU_SECONDS):
        if name in block:
            clock.add(name, float(np.sum(block[name])))
    if "actor_start" in block:
        start = float(np.max(block["actor_start"], initial=0.0))
        clock.seconds["actor_start"] = max(clock.seconds.get("actor_start", 0.0), start)
