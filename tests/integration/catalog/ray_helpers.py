"""What the Ray ingest tests share: a catalog's sources, what a store holds, fake models."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tastegraph.app import App, build
from tastegraph.catalog.pipeline.ray_runner import RayRunner
from tastegraph.catalog.pipeline.ray_session import RayOptions
from tastegraph.catalog.sources import SourceItem
from tastegraph.models.base import Encoders
from tastegraph.settings import Settings
from tests import fixtures as fx
from tests.fakes import FakeBridge, FakeImageEncoder, FakeTextEncoder, fake_encoders

SPACES = ("image", "text", "conse")
# (source, space) -> (model id, vector bytes)
Vectors = dict[tuple[str, str], tuple[str, bytes]]


def sources(folder: Path, n: int, *, bad: int = 1) -> list[SourceItem]:
    """``n`` JPEGs (some large enough for draft mode, some without words) and ``bad`` cut ones."""
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        w, h = (400, 533) if i % 3 else (900, 700)
        path = folder / f"img{i:03d}.jpg"
        path.write_bytes(fx.jpeg_bytes(w, h, seed=i))
        items.append(
            SourceItem(
                ref=str(path),
                title=f"photo {i} " + "long words " * (i % 5) if i % 2 else "",
                tags=["mine"] if i % 4 == 0 else [],
            )
        )
    for j in range(bad):
        cut = folder / f"zz-cut{j}.jpg"
        cut.write_bytes(fx.truncated_jpeg())
        items.insert(min(len(items), 5 + 7 * j), SourceItem(ref=str(cut)))
    return items


def stored(app: App) -> tuple[Vectors, dict[str, Any]]:
    """Every vector (by source and space) and every pin's hashes, tags and thumbnail."""
    pins = {p.id: p for p in app.store.list_pins(limit=100_000)}
    vectors: Vectors = {}
    for space in SPACES:
        ids, mat, models = app.store.get_vectors(space)
        for pin_id, vec, model_id in zip(ids.tolist(), mat, models, strict=True):
            v = np.ascontiguousarray(vec, dtype=np.float32).ravel()
            vectors[pins[pin_id].source, space] = (model_id, v.tobytes())
    rows = {
        p.source: (p.content_hash, p.phash, p.tags, app.store.get_thumbnail(p.id))
        for p in pins.values()
    }
    return vectors, rows


def sources_stored(app: App) -> list[str]:
    """The source of every pin, once per pin (sorted)."""
    return sorted(p.source for p in app.store.list_pins(limit=100_000))


class PaddedTextEncoder(FakeTextEncoder):
    """Vectors that depend on the whole batch, as the real text model's are (it pads a batch to
    its longest text): a runner that batches other texts together stores other bits."""

    def encode(self, texts: list[str]) -> Any:
        longest = max((len(t) for t in texts), default=0)
        return super().encode([t + " pad" * (longest - len(t)) for t in texts])


def padded_encoders() -> Encoders:
    """The fake pack with :class:`PaddedTextEncoder` (a picklable factory for the actors)."""
    img, text = FakeImageEncoder(), PaddedTextEncoder()
    return Encoders(image=img, text=text, bridge=FakeBridge(text, img.label_names))


class DyingImageEncoder(FakeImageEncoder):
    """Kills its own process the first time it encodes (``marker`` records that it did)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def encode(self, pixels: Any) -> Any:
        if not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os._exit(1)  # a worker that dies mid-batch, as an OOM kill would
        return super().encode(pixels)


def dying_encoders(marker: Path) -> Encoders:
    """The fake pack, whose image model kills the first actor that uses it."""
    img, text = DyingImageEncoder(marker), FakeTextEncoder()
    return Encoders(image=img, text=text, bridge=FakeBridge(text, img.label_names))


class SlowImageEncoder(FakeImageEncoder):
    """Takes ``seconds`` per batch, so that a test can act while a run is under way."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def encode(self, pixels: Any) -> Any:
        import time

        time.sleep(self.seconds)
        return super().encode(pixels)


def slow_encoders(seconds: float) -> Encoders:
    img, text = SlowImageEncoder(seconds), FakeTextEncoder()
    return Encoders(image=img, text=text, bridge=FakeBridge(text, img.label_names))


class OtherImageEncoder(FakeImageEncoder):
    """Another image model (another id, other vectors): the catalog needs re-encoding."""

    model_id = "fake-image@2"

    def encode(self, pixels: Any) -> Any:
        out = super().encode(pixels)
        return type(out)(out.features[:, ::-1].copy(), out.probs)


def other_encoders() -> Encoders:
    img, text = OtherImageEncoder(), FakeTextEncoder()
    return Encoders(image=img, text=text, bridge=FakeBridge(text, img.label_names))


def fake_app(
    tmp_path: Path, name: str, *, padded: bool = False, other: bool = False, **kw: Any
) -> App:
    settings = Settings(
        data_dir=tmp_path / name, index_kind="exact", batch_size=4, decode_workers=2, **kw
    )
    pack = other_encoders() if other else padded_encoders() if padded else fake_encoders()
    return build(settings, encoders=pack)


def runner(*, padded: bool = False, **kw: Any) -> RayRunner:
    """A Ray runner whose actors load the fake models."""
    return RayRunner(
        options=RayOptions(actors=2, actor_cpus=0.5, **kw),
        encoders=padded_encoders if padded else fake_encoders,
    )
