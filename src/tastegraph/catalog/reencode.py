"""Re-encoding the catalog with the models this installation runs now (``reindex --reencode``).

Vectors are made at ingest, from the image files, and each records the model that made it; an
index refuses vectors of another model. After the image model changes (``TASTEGRAPH_IMAGE_MODEL``,
``TASTEGRAPH_MODEL_PACK``) the pins keep their ids, boards and engagement, and only their vectors
need making again: each pin's original file is read again (it must be the very file that was
ingested, by content hash) and encoded with the current models. Pins whose file cannot be read
keep their old vectors and are reported, one by one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
from numpy.typing import NDArray

from tastegraph.errors import TastegraphError
from tastegraph.imaging.decode import decode_image
from tastegraph.imaging.hashes import content_hash
from tastegraph.imaging.limits import ImageLimits
from tastegraph.imaging.read import read_source_bytes

if TYPE_CHECKING:
    from tastegraph.catalog.ports import CatalogContext
    from tastegraph.domain import Pin

__all__ = ["ReencodeReport", "Reencoder", "reencode", "stale_vectors"]

_IMAGE_SPACES = frozenset({"image", "conse"})


@dataclass
class ReencodeReport:
    """What ``reencode`` did: pins looked at, vectors remade per space, pins it could not redo."""

    stale: int = 0
    reencoded: dict[str, int] = field(default_factory=lambda: {"image": 0, "conse": 0, "text": 0})
    failed: list[tuple[int, str, str]] = field(default_factory=list)  # (pin id, source, why)

    def to_dict(self) -> dict[str, object]:
        return {
            "stale_pins": self.stale,
            "reencoded": dict(self.reencoded),
            "failed": [{"pin": p, "source": s, "reason": r} for p, s, r in self.failed],
        }


class Reencoder(Protocol):
    """Where re-encoding runs: :func:`reencode` here, or ``ray_reencode.RayReencoder``."""

    def __call__(
        self, app: CatalogContext, *, on_batch: Callable[[int, int], None] | None = None
    ) -> ReencodeReport: ...


def _current_models(app: CatalogContext) -> dict[str, str]:
    enc = app.encoders
    return {"image": enc.image.model_id, "conse": enc.bridge.model_id, "text": enc.text.model_id}


def stale_vectors(app: CatalogContext) -> dict[int, set[str]]:
    """Pins with a stored vector from another model than the current one, and which spaces."""
    out: dict[int, set[str]] = {}
    for space, model_id in _current_models(app).items():
        for pin_id in app.store.stale_vector_ids(space, model_id):
            out.setdefault(pin_id, set()).add(space)
    return out


def _pin_text(pin: Pin) -> str:
    # The text ingest encodes (catalog.pipeline.steps.item_text): title and description.
    return ". ".join(s.strip() for s in (pin.title, pin.description) if s and s.strip())


def _pixels(app: CatalogContext, pin: Pin) -> NDArray[np.uint8]:
    s = app.settings
    limits = ImageLimits.from_settings(s)
    data = read_source_bytes(pin.source, limits, timeout=s.ingest.fetch_timeout_s, allow_url=True)
    if content_hash(data) != pin.content_hash:
        raise TastegraphError("the file has changed since it was ingested")
    draft = max(s.ingest.thumbnail_size, int(app.encoders.image.input_size))
    decoded = decode_image(data, limits, draft_to=draft, source=pin.source)
    return app.preprocess(decoded.image)


def reencode(
    app: CatalogContext, *, batch_size: int = 32, on_batch: Callable[[int, int], None] | None = None
) -> ReencodeReport:
    """Remake every vector that another model made; ``on_batch(done, total)`` after each batch."""
    enc = app.encoders
    stale = stale_vectors(app)
    report = ReencodeReport(stale=len(stale))
    ids = sorted(stale)
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        pins = app.store.get_pins(chunk)  # pins deleted meanwhile are simply absent
        vectors: dict[int, dict[str, tuple[str, NDArray[np.float32]]]] = {}
        images: list[tuple[int, NDArray[np.uint8]]] = []
        texts: list[tuple[int, str]] = []
        for pid in chunk:
            pin = pins.get(pid)
            if pin is None:
                continue
            if stale[pid] & _IMAGE_SPACES:
                try:
                    images.append((pid, _pixels(app, pin)))
                except TastegraphError as exc:
                    report.failed.append((pid, pin.source, exc.message))
                    continue
            if "text" in stale[pid]:
                text = _pin_text(pin)
                if not text:
                    report.failed.append((pid, pin.source, "no title or description to encode"))
                    continue
                texts.append((pid, text))
        if images:
            out = enc.image.encode([px for _, px in images])
            conse = enc.bridge.transform(out)
            for i, (pid, _) in enumerate(images):
                vectors[pid] = {
                    "image": (enc.image.model_id, out.features[i]),
                    "conse": (enc.bridge.model_id, conse[i]),
                }
        if texts:
            tv = enc.text.encode([s for _, s in texts])
            for i, (pid, _) in enumerate(texts):
                vectors.setdefault(pid, {})["text"] = (enc.text.model_id, tv[i])
        for pid, vecs in vectors.items():
            # One transaction per pin, logged as a change: the indexes replay it.
            app.store.update_pin(pid, {}, vectors=vecs)
            for space in vecs:
                report.reencoded[space] += 1
        if on_batch is not None:
            on_batch(min(start + batch_size, len(ids)), len(ids))
    return report
