"""The ingest steps run by hand, in order, store exactly what the local runner stores.

A runner elsewhere (Ray Data stages) is checked the same way: the same batches in, the same
bytes out. Between steps every batch goes through pickle, as it would between Ray stages, and
the last step runs on one BLAS thread, as the local runner's bulk path runs it.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from tastegraph.app import App, build
from tastegraph.catalog.pipeline.steps import (
    Prepared,
    Rejected,
    decode_config,
    decode_items,
    derive_rows,
    encode_images,
    encode_texts,
    one_blas_thread,
)
from tastegraph.catalog.sources import SourceItem
from tastegraph.settings import Settings
from tests import fixtures as fx
from tests.conftest import real_settings
from tests.fakes import fake_encoders

T = TypeVar("T")
SPACES = ("image", "text", "conse")
# (source, space) -> (model id, vector bytes); source -> what else the row holds
Vectors = dict[tuple[str, str], tuple[str, bytes]]


def _hop(x: T) -> T:
    """A stage boundary: the batch leaves this process and comes back."""
    out: T = pickle.loads(pickle.dumps(x))
    return out


def _sources(folder: Path, n: int) -> list[SourceItem]:
    folder.mkdir(parents=True)
    items = []
    for i in range(n):
        w, h = (400, 533) if i % 3 else (900, 700)  # some large enough for JPEG draft mode
        path = folder / f"img{i:02d}.jpg"
        path.write_bytes(fx.jpeg_bytes(w, h, seed=i))
        items.append(
            SourceItem(
                ref=str(path),
                title=f"photo {i}" if i % 2 else "",  # some rows have no words: no text vector
                tags=["mine"] if i % 4 == 0 else [],
            )
        )
    bad = folder / "zz-cut.jpg"
    bad.write_bytes(fx.truncated_jpeg())
    items.insert(5, SourceItem(ref=str(bad)))
    return items


def _by_hand(app: App, items: list[SourceItem]) -> tuple[Vectors, dict[str, Any], list[str]]:
    """The four steps in order over ``items``, batched as the runner batches them."""
    enc, batch_size = app.encoders, app.settings.models.batch_size
    cfg = _hop(decode_config(app.settings, enc.image.input_size, app.preprocess))
    decoded = _hop(decode_items(_hop(items), cfg))
    ok = [p for p in decoded if isinstance(p, Prepared)]
    rejected = [r.ref for r in decoded if isinstance(r, Rejected)]
    vectors: Vectors = {}
    rows: dict[str, Any] = {}
    for start in range(0, len(ok), batch_size):
        batch = _hop(encode_images(ok[start : start + batch_size], enc.image))
        batch = _hop(encode_texts(batch, enc.text))
        with one_blas_thread():
            derived = derive_rows(batch, enc, app.top_labels)
        for row in _hop(derived):
            for space, (model_id, vec) in row.vectors.items():
                v = np.ascontiguousarray(vec, dtype=np.float32).ravel()
                vectors[row.source, space] = (model_id, v.tobytes())
            rows[row.source] = (row.content_hash, row.phash, row.tags, row.thumbnail)
    return vectors, rows, rejected


def _stored(app: App) -> tuple[Vectors, dict[str, Any], list[str]]:
    pins = {p.id: p for p in app.store.list_pins(limit=10_000)}
    vectors: Vectors = {}
    for space in SPACES:
        ids, mat, models = app.store.get_vectors(space)
        for pin_id, vec, model_id in zip(ids.tolist(), mat, models, strict=True):
            vectors[pins[pin_id].source, space] = (model_id, vec.tobytes())
    rows = {
        p.source: (p.content_hash, p.phash, p.tags, app.store.get_thumbnail(p.id))
        for p in pins.values()
    }
    return vectors, rows, []


def _check(app: App, items: list[SourceItem]) -> None:
    report = app.catalog.ingest_items(items, source_label="steps", progress=False)
    assert report.added == len(items) - 1 and report.rejected == 1
    assert "wait_decode" in report.timings  # the runner used its decode worker pool
    stored_vecs, stored_rows, _ = _stored(app)
    vecs, rows, rejected = _by_hand(app, items)
    assert rejected == [q.source for q in report.quarantine]
    assert {space for _, space in vecs} == set(SPACES)
    assert vecs.keys() == stored_vecs.keys()
    for key, got in vecs.items():
        assert got == stored_vecs[key], key  # model id and every bit of the vector
    assert rows == stored_rows


def test_steps_by_hand_store_what_the_local_runner_stores(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", index_kind="exact", batch_size=4, decode_workers=2
    )
    app = build(settings, encoders=fake_encoders())
    try:
        _check(app, _sources(tmp_path / "imgs", 13))
    finally:
        app.close()


@pytest.mark.slow
def test_steps_by_hand_store_what_the_local_runner_stores_with_the_real_models(
    tmp_path: Path,
) -> None:
    """The real image model batches by input shape: the same batches give the same bits."""
    app = build(real_settings(tmp_path, index_kind="exact", batch_size=4, decode_workers=2))
    try:
        _check(app, _sources(tmp_path / "imgs", 13))
    finally:
        app.close()
