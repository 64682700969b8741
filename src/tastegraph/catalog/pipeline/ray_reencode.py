"""``reindex --reencode --ray``: re-encoding the catalog as Ray Data stages.

What :func:`tastegraph.catalog.reencode.reencode` does, with the reading, decoding and models
on Ray (the same steps as an ingest: :func:`.steps.prepare`, :func:`.steps.encode_images`, the
bridge on one BLAS thread, and the text model over :func:`.steps.item_text`). This process
finds the stale vectors, and writes each pin's new ones (one transaction per pin, logged as a
change, as the local re-encoding does), so a rerun after a failure redoes only the pins still
stale.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tastegraph.catalog.pipeline.decode_pool import CHUNK
from tastegraph.catalog.pipeline.ray_session import RayOptions, ray_session
from tastegraph.catalog.pipeline.ray_stages import Batch, pack, unpack
from tastegraph.catalog.pipeline.steps import (
    DecodeConfig,
    Encoded,
    Prepared,
    decode_config,
    encode_images,
    item_text,
    one_blas_thread,
    prepare,
)
from tastegraph.catalog.sources import SourceItem

if TYPE_CHECKING:
    from tastegraph.catalog.ports import CatalogContext
    from tastegraph.catalog.reencode import ReencodeReport
    from tastegraph.models.base import Encoders

__all__ = ["RayReencoder"]

_CHANGED = "the file has changed since it was ingested"


@dataclass
class RayReencoder:
    """Re-encodes stale vectors on Ray; ``encoders`` builds the models in each actor."""

    options: RayOptions = field(default_factory=RayOptions)
    encoders: Callable[[], Encoders] | None = None

    def __call__(
        self, app: CatalogContext, *, on_batch: Callable[[int, int], None] | None = None
    ) -> ReencodeReport:
        from tastegraph.catalog.reencode import ReencodeReport, stale_vectors

        stale = stale_vectors(app)
        report = ReencodeReport(stale=len(stale))
        ids = sorted(stale)
        pins = app.store.get_pins(ids) if ids else {}
        rows = []
        for pid in ids:
            pin = pins.get(pid)
            if pin is None:  # deleted meanwhile
                continue
            item = SourceItem(ref=pin.source, title=pin.title, description=pin.description)
            rows.append(
                {
                    "pin": pid,
                    "item": pack(item),
                    "hash": pin.content_hash,
                    "image": bool(stale[pid] & {"image", "conse"}),
                    "text": "text" in stale[pid],
                }
            )
        if not rows:
            return report
        settings = app.settings
        cfg = decode_config(settings, app.encoders.image.input_size, app.preprocess)
        factory = self.encoders or functools.partial(_settings_encoders, settings)
        done = 0
        with ray_session(self.options) as ray:
            ray.data.DataContext.get_current().execution_options.preserve_order = True
            ds = ray.data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // CHUNK)))
            ds = ds.map_batches(
                _read_stage,
                batch_size=CHUNK,
                batch_format="numpy",
                fn_kwargs={"cfg": cfg},
                num_cpus=self.options.decode_cpus,
            )
            ds = ds.map_batches(
                _EncodeStage,
                fn_constructor_kwargs={"encoders": factory},
                batch_size=settings.models.batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=self.options.actors),
                num_cpus=self.options.actor_cpus,
            )
            for block in ds.iter_batches(batch_size=None, batch_format="numpy"):
                for pid, vecs_blob, why in zip(
                    block["pin"].tolist(), block["vectors"], block["failed"], strict=True
                ):
                    if why:
                        report.failed.append((pid, pins[pid].source, str(why)))
                        continue
                    vecs = unpack(vecs_blob)
                    if vecs:
                        app.store.update_pin(pid, {}, vectors=vecs)
                    for space in vecs:
                        report.reencoded[space] += 1
                done += len(block["pin"])
                if on_batch is not None:
                    on_batch(done, len(rows))
        report.failed.sort()
        return report


def _settings_encoders(settings: Any) -> Encoders:
    from tastegraph.models import make_encoders

    return make_encoders(settings)


def _read_stage(batch: Batch, cfg: DecodeConfig) -> Batch:
    """Each stale pin's file read, checked against its content hash and decoded (Ray tasks)."""
    prepared: list[bytes | None] = []
    failed: list[str] = []
    for blob, digest, image in zip(batch["item"], batch["hash"], batch["image"], strict=True):
        p = prepare(unpack(blob), cfg) if image else None
        if p is not None and not isinstance(p, Prepared):
            prepared.append(None)
            failed.append(p.message)
        elif p is not None and p.content_hash != digest:
            prepared.append(None)
            failed.append(_CHANGED)
        else:
            prepared.append(pack(p) if p is not None else None)
            failed.append("")
    out = dict(batch)
    out["prepared"] = np.asarray(prepared, dtype=object)
    out["failed"] = np.asarray(failed, dtype=object)
    return out


class _EncodeStage:
    """The image model, the bridge and the text model over the pins a batch re-encodes."""

    def __init__(self, encoders: Callable[[], Encoders]) -> None:
        t0 = time.perf_counter()
        self._enc = encoders()
        self.start_s = time.perf_counter() - t0

    def __call__(self, batch: Batch) -> Batch:
        enc = self._enc
        n = len(batch["pin"])
        failed = [str(f) for f in batch["failed"]]
        vectors: list[dict[str, Any]] = [{} for _ in range(n)]
        with_image = [i for i in range(n) if not failed[i] and batch["prepared"][i] is not None]
        if with_image:
            encoded: Encoded = encode_images(
                [unpack(batch["prepared"][i]) for i in with_image], enc.image
            )
            assert encoded.out is not None
            with one_blas_thread():
                conse = enc.bridge.transform(encoded.out)
            for row, i in enumerate(with_image):
                vectors[i]["image"] = (enc.image.model_id, encoded.out.features[row])
                vectors[i]["conse"] = (enc.bridge.model_id, conse[row])
        texts: list[int] = []
        items = [unpack(b) for b in batch["item"]]
        for i in range(n):
            if failed[i] or not batch["text"][i]:
                continue
            if not item_text(items[i]):
                failed[i] = "no title or description to encode"
                vectors[i] = {}
                continue
            texts.append(i)
        if texts:
            tv = enc.text.encode([item_text(items[i]) for i in texts])
            for row, i in enumerate(texts):
                vectors[i]["text"] = (enc.text.model_id, tv[row])
        return {
            "pin": batch["pin"],
            "vectors": np.asarray([pack(v) for v in vectors], dtype=object),
            "failed": np.asarray(failed, dtype=object),
        }
