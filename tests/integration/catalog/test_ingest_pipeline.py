"""The pipelined ingest: decode workers, bounded prefetch, the writer thread and its failures."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tastegraph.app import App, build
from tastegraph.catalog.pipeline import decode_pool
from tastegraph.catalog.pipeline.report import Clock
from tastegraph.catalog.pipeline.steps import Prepared, Rejected
from tastegraph.catalog.sources import SourceItem
from tastegraph.settings import Settings
from tests import fixtures as fx
from tests.fakes import fake_encoders


def _app(tmp_path: Path, name: str, **kw: Any) -> App:
    app = build(
        Settings(data_dir=tmp_path / name, index_kind="exact", **kw), encoders=fake_encoders()
    )
    return app


def _folder(path: Path, n: int, *, extras: bool = True) -> Path:
    path.mkdir(parents=True)
    for i in range(n):
        w, h = (400, 533) if i % 3 else (900, 700)  # some large enough for JPEG draft mode
        (path / f"img{i:03d}.jpg").write_bytes(fx.jpeg_bytes(w, h, seed=i))
    if extras:  # two bad files and a copy of a good one
        (path / "zz-page.jpg").write_bytes(fx.html_bytes())
        (path / "zz-cut.jpg").write_bytes(fx.truncated_jpeg())
        (path / "img005-copy.jpg").write_bytes((path / "img005.jpg").read_bytes())
    return path


def _failing_on_call(n: int, real: Any, error: Exception) -> Any:
    """``real``, except that its ``n``-th call raises ``error``."""
    calls = 0

    def wrapped(arg: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == n:
            raise error
        return real(arg)

    return wrapped


def _by_source(app: App) -> dict[str, tuple[Any, ...]]:
    pins = app.store.list_pins(limit=10_000)
    ids, mat, _ = app.store.get_vectors("image")
    vec = {int(i): v for i, v in zip(ids.tolist(), mat, strict=True)}
    return {
        Path(p.source).name: (
            p.content_hash,
            p.phash,
            p.width,
            p.height,
            tuple(p.tags),
            app.store.get_thumbnail(p.id),
            vec[p.id].tobytes(),
        )
        for p in pins
    }


def _wide(app: App) -> App:
    """The fake encoder with wide inputs, as the lite one has: 64 x 64, 64 x 96 and 96 x 64."""
    image = app.encoders.image
    image.input_size, image.max_aspect = 64, 1.5  # type: ignore[misc]
    return app


def test_worker_pool_gives_what_in_process_ingest_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _folder(tmp_path / "imgs", 40)
    (src / "square.png").write_bytes(fx.png_bytes(300, 300))
    pooled = _wide(_app(tmp_path, "pooled", batch_size=8, decode_workers=2))
    inline = _wide(_app(tmp_path, "inline", batch_size=8, decode_workers=1))
    # model inputs of every shape come back through shared memory, not the pipe
    via_slots: list[tuple[int, ...]] = []
    real_pixels = decode_pool.PixelSlots.pixels

    def pixels(self: decode_pool.PixelSlots, p: Prepared) -> np.ndarray:
        via_slots.append(p.shape)
        return real_pixels(self, p)

    monkeypatch.setattr(decode_pool.PixelSlots, "pixels", pixels)
    try:
        a = pooled.catalog.ingest(str(src), progress=False)
        assert len(via_slots) == 42
        assert set(via_slots) == {(64, 64, 3), (64, 96, 3), (96, 64, 3)}
        b = inline.catalog.ingest(str(src), progress=False)
        assert a.added == b.added == 41 and a.existing == b.existing == 1
        reasons = sorted((Path(q.source).name, q.reason) for q in a.quarantine)
        assert reasons == [("zz-cut.jpg", "truncated"), ("zz-page.jpg", "not_an_image")]
        assert reasons == sorted((Path(q.source).name, q.reason) for q in b.quarantine)
        # same pixels in, same thumbnails, hashes and vectors out, whichever path decoded them
        assert _by_source(pooled) == _by_source(inline)
        assert len(pooled.indexes.get("image")) == 41
        # where the time went is reported for both paths
        for report in (a, b):
            assert {"decode", "image_model", "store", "bridge_tags"} <= set(report.timings)
        assert "wait_decode" in a.timings and "writer_cpu" in a.timings
    finally:
        pooled.close()
        inline.close()


def test_prefetch_is_bounded() -> None:
    """Decode work is submitted at most ``ahead`` chunks before the consumer takes it."""
    submitted: list[list[SourceItem]] = []

    class Pool:
        def submit(self, fn: Any, chunk: list[SourceItem], *args: Any) -> Future[Any]:
            submitted.append(chunk)
            f: Future[Any] = Future()
            f.set_result(([Rejected(it.ref, "corrupt", "") for it in chunk], 0.001))
            return f

    todo = [SourceItem(ref=f"/x/{i}.jpg") for i in range(100)]
    ahead = 3
    gen = decode_pool.prepared_in_pool(Pool(), todo, ahead, Clock())  # type: ignore[arg-type]
    seen = []
    for r in gen:
        assert isinstance(r, Rejected)
        seen.append(r.ref)
        consumed_chunks = -(-len(seen) // decode_pool.CHUNK)
        assert len(submitted) <= consumed_chunks + ahead
    assert seen == [it.ref for it in todo]  # in order, nothing lost


def test_a_failed_write_stops_the_run_and_keeps_whole_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _folder(tmp_path / "imgs", 40, extras=False)
    app = _app(tmp_path, "data", batch_size=8, decode_workers=2)
    real_add = app.store.add_pins
    monkeypatch.setattr(app.store, "add_pins", _failing_on_call(3, real_add, OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        app.catalog.ingest(str(src), progress=False)
    assert app.store.count_pins() == 16  # the first two batches, whole; nothing after
    monkeypatch.setattr(app.store, "add_pins", real_add)
    again = app.catalog.ingest(str(src), progress=False)
    assert again.skipped == 16 and again.added == 24
    assert app.store.count_pins() == 40
    ids, _, _ = app.store.get_vectors("image")
    assert len(set(ids.tolist())) == 40
    app.close()


def test_a_failed_model_call_keeps_batches_already_encoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _folder(tmp_path / "imgs", 40, extras=False)
    app = _app(tmp_path, "data", batch_size=8, decode_workers=2)
    enc = app.encoders.image
    real_encode = enc.encode
    failing = _failing_on_call(4, real_encode, RuntimeError("model crashed"))
    monkeypatch.setattr(enc, "encode", failing)
    with pytest.raises(RuntimeError, match="model crashed"):
        app.catalog.ingest(str(src), progress=False)
    assert app.store.count_pins() == 24  # three batches were encoded before the failure
    monkeypatch.setattr(enc, "encode", real_encode)
    again = app.catalog.ingest(str(src), progress=False)
    assert again.skipped == 24 and app.store.count_pins() == 40
    app.close()


def test_batches_fill_with_accepted_images(tmp_path: Path) -> None:
    """Rejected files do not shrink model batches (they are quarantined as they come)."""
    src = tmp_path / "imgs"
    src.mkdir()
    for i in range(24):
        (src / f"a{i:02d}.jpg").write_bytes(fx.jpeg_bytes(64, 48, seed=i))
        (src / f"b{i:02d}.jpg").write_bytes(fx.random_bytes(seed=i))
    app = _app(tmp_path, "data", batch_size=8, decode_workers=2)
    sizes: list[int] = []
    real_encode = app.encoders.image.encode

    def spy(pixels: np.ndarray) -> Any:
        sizes.append(len(pixels))
        return real_encode(pixels)

    app.encoders.image.encode = spy  # type: ignore[method-assign]
    report = app.catalog.ingest(str(src), progress=False)
    assert report.added == 24 and report.rejected == 24
    assert sizes == [8, 8, 8]
    app.close()


def _items(n: int) -> Iterator[SourceItem]:
    for i in range(n):
        yield SourceItem(ref=f"/nowhere/{i}.jpg")


def test_unreadable_files_in_a_pool_run_are_quarantined(tmp_path: Path) -> None:
    app = _app(tmp_path, "data", batch_size=4, decode_workers=2)
    report = app.catalog.ingest_items(_items(20), source_label="x", progress=False)
    assert report.added == 0 and report.rejected == 20
    assert {q.reason for q in report.quarantine} == {"unreadable_file"}
    app.close()


@pytest.mark.parametrize("slot_bytes", [0, 12 * 32 * 32 * 3])
def test_without_enough_shared_slots_arrays_travel_by_pipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slot_bytes: int
) -> None:
    """No shared memory (0) or too little of it (12 slots): same results, some by pickling."""
    monkeypatch.setattr(decode_pool, "SLOTS_MAX_BYTES", slot_bytes)
    src = _folder(tmp_path / "imgs", 40)
    pooled = _app(tmp_path, "pooled", batch_size=8, decode_workers=2)
    inline = _app(tmp_path, "inline", batch_size=8, decode_workers=1)
    try:
        assert pooled.catalog.ingest(str(src), progress=False).added == 40
        assert inline.catalog.ingest(str(src), progress=False).added == 40
        assert _by_source(pooled) == _by_source(inline)
    finally:
        pooled.close()
        inline.close()
