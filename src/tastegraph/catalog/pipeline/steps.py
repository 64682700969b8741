"""The ingest pipeline's batch steps: pure functions over plain batch types.

In order, for a batch of source items:

1. :func:`decode_items` (items, :class:`DecodeConfig`) -> :class:`Prepared` or :class:`Rejected`
   per item: read, validate, hash, decode once, and derive from that decode the model input,
   the thumbnail and the pHash;
2. :func:`encode_images` (prepared images, image encoder) -> :class:`Encoded` (features, label
   probabilities);
3. :func:`encode_texts` (:class:`Encoded`, text encoder) -> :class:`Encoded` with the text
   vectors of the items that have words;
4. :func:`derive_rows` (:class:`Encoded`, encoders, labeller) -> store rows (ConSE vectors,
   label tags), which :func:`tastegraph.catalog.pipeline.write.write_batch` commits.

No step touches the store, a progress bar or a clock, and every argument and result pickles,
so a runner may place them anywhere: the local runner (:mod:`.local`) runs step 1 in decode
worker processes and the others in its own process; a Ray runner can run them as Ray Data
stages. Run on the same batches, they give the same vectors wherever they run
(``tests/unit/catalog/test_pipeline_steps.py`` checks it against the local runner), with one
condition: step 4 multiplies matrices, and a BLAS on several threads sums in another order
than one on a single thread (the ConSE vectors then differ in their last bits). The local
runner's bulk path runs it inside :func:`one_blas_thread`; a runner that must match it bit for
bit does the same.

Decode workers import this module: keep its imports light (no store, no models, no torch).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from tastegraph.catalog.metadata import pin_text
from tastegraph.catalog.sources import SourceItem
from tastegraph.errors import ImageRejected, TastegraphError
from tastegraph.imaging.decode import decode_image
from tastegraph.imaging.hashes import content_hash
from tastegraph.imaging.limits import ImageLimits
from tastegraph.imaging.read import read_source_bytes
from tastegraph.imaging.thumbnails import encode_thumbnail, quick_thumbnail_and_phash

if TYPE_CHECKING:
    from tastegraph.models.base import Encoders, ImageEncoder, ImageOutput, TextEncoder
    from tastegraph.settings import Settings
    from tastegraph.store import NewPin

__all__ = [
    "DecodeConfig",
    "Encoded",
    "Labeller",
    "Prepared",
    "Rejected",
    "decode_config",
    "decode_items",
    "derive_rows",
    "encode_images",
    "encode_texts",
    "item_text",
    "one_blas_thread",
    "prepare",
]

# Label probabilities of a batch -> the confident labels of each image (they become tags).
Labeller = Callable[["NDArray[np.float32]"], list[list[tuple[str, float]]]]


@dataclass
class DecodeConfig:
    """What the decode step needs: plain values only, so it pickles cheaply."""

    limits: ImageLimits
    input_size: int
    thumbnail_size: int
    timeout: float
    allow_url: bool
    preprocess: Callable[[Any], NDArray[np.uint8]]


def decode_config(
    settings: Settings, input_size: int, preprocess: Callable[[Any], NDArray[np.uint8]]
) -> DecodeConfig:
    """The decode step's settings for an image model of ``input_size`` and its ``preprocess``."""
    return DecodeConfig(
        limits=ImageLimits.from_settings(settings),
        input_size=input_size,
        thumbnail_size=settings.ingest.thumbnail_size,
        timeout=settings.ingest.fetch_timeout_s,
        allow_url=settings.api.allow_url_fetch,
        preprocess=preprocess,
    )


@dataclass
class Prepared:
    """One source item, decoded: the model input, the thumbnail and the hashes."""

    item: SourceItem
    content_hash: str
    pixels: NDArray[np.uint8]  # empty while the model input waits in a shared-memory slot
    thumbnail: bytes
    phash: str
    width: int
    height: int
    format: str
    slot: int = -1  # the local runner's shared-memory slot holding the model input, or -1
    shape: tuple[int, ...] = ()  # the model input's shape while it waits in ``slot``


@dataclass
class Rejected:
    """One source item that will not be a pin, and why (it goes to the quarantine)."""

    ref: str
    reason: str
    message: str


@dataclass
class Encoded:
    """A batch after the models: what :func:`derive_rows` turns into store rows."""

    ok: list[Prepared]
    out: ImageOutput | None = None
    text_vecs: NDArray[np.float32] | None = None
    text_row: dict[int, int] = field(default_factory=dict)  # image i -> row of text_vecs


# ---------------------------------------------------------------------------------------------
# 1. read and decode


def prepare(item: SourceItem, cfg: DecodeConfig, data: bytes | None = None) -> Prepared | Rejected:
    """Bytes -> validated, decoded, model-ready pixels + thumbnail + hashes.

    The image is decoded once (JPEG draft mode where the picture is large) and the model input,
    the thumbnail and the pHash are all derived from that one decode. ``data``: the bytes when
    already in memory (an upload), else they are read from ``item.ref``.
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


def decode_items(
    items: Sequence[SourceItem], cfg: DecodeConfig, data: Mapping[str, bytes] | None = None
) -> list[Prepared | Rejected]:
    """:func:`prepare` over a batch of items, in order (``data``: bytes by ref, when known)."""
    return [prepare(it, cfg, data.get(it.ref) if data else None) for it in items]


# ---------------------------------------------------------------------------------------------
# 2. and 3. the models


def encode_images(ok: list[Prepared], image: ImageEncoder) -> Encoded:
    """The image model over a batch of prepared images (their ``pixels``)."""
    if not ok:
        return Encoded(ok)
    return Encoded(ok, image.encode([p.pixels for p in ok]))


def encode_texts(batch: Encoded, text: TextEncoder) -> Encoded:
    """The text model over the words of the batch's items that have some."""
    texts = [item_text(p.item) for p in batch.ok]
    with_text = [i for i, s in enumerate(texts) if s]
    if not with_text:
        return replace(batch, text_vecs=None, text_row={})
    vecs = text.encode([texts[i] for i in with_text])
    return replace(batch, text_vecs=vecs, text_row={i: r for r, i in enumerate(with_text)})


def item_text(item: SourceItem) -> str:
    """The words the text vector encodes (the same as an edit re-encodes)."""
    return pin_text(item.title, item.description)


# ---------------------------------------------------------------------------------------------
# 4. bridge, labels and tags


def derive_rows(batch: Encoded, encoders: Encoders, top_labels: Labeller) -> list[NewPin]:
    """ConSE vectors, labels and tags for an encoded batch -> rows ready for the store."""
    from tastegraph.store import NewPin

    ok, out = batch.ok, batch.out
    if not ok or out is None:
        return []
    conse = encoders.bridge.transform(out)
    labels = top_labels(out.probs) if out.probs is not None else [[] for _ in ok]
    pins: list[NewPin] = []
    for i, p in enumerate(ok):
        vectors = {
            "image": (encoders.image.model_id, out.features[i]),
            "conse": (encoders.bridge.model_id, conse[i]),
        }
        if batch.text_vecs is not None and i in batch.text_row:
            vectors["text"] = (encoders.text.model_id, batch.text_vecs[batch.text_row[i]])
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


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Keep this process's BLAS calls (ConSE, labels) on one thread while the block runs.

    Step 4's vectors are the same bits wherever it runs inside this block. The limit is process
    wide while it lasts, so a server's upload ingest does not take it (see :mod:`.local`).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        yield
