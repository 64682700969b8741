"""The trained feed model and the whitening projection travel through the store: a process
with an empty data dir over the same store loads what another data dir made (artefacts)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from tastegraph.app import App, build
from tastegraph.feed.service import MODEL_KEY
from tastegraph.index.spaces import PROJECTION_KEY
from tastegraph.settings import Settings
from tastegraph.store import schema as t
from tastegraph.store.artefact_cache import cache_dir
from tests.fakes import fake_encoders
from tests.fixtures import write_images


def _settings(data: Path, url: str) -> Settings:
    s = Settings(data_dir=data, store_url=url, index_kind="exact")
    s.models.image_dim = 4  # small enough to fit a whitening on 24 pins
    s.models.whiten_min_pins = 6
    return s


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":  # one file both data dirs name
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def trained(tmp_path: Path, store_url: str) -> Iterator[tuple[App, dict[str, object]]]:
    app = build(_settings(tmp_path / "a", store_url), encoders=fake_encoders())
    folder = tmp_path / "imgs"
    write_images(
        folder, {"red": (210, 30, 30), "green": (30, 190, 40), "blue": (30, 40, 210)}, 8, seed=0
    )
    assert app.catalog.ingest(str(folder), progress=False).added == 24
    pins = [p.id for p in app.store.list_pins(limit=100)]
    users = [app.store.create_user(f"u{i}")["id"] for i in range(4)]
    now = time.time()
    rows = [
        (k, {"user_id": u, "pin_id": pins[(u * 5 + j) % 24], "type": kind, "ts": now - 90 + j})
        for k, (u, j, kind) in enumerate(
            (u, j, kind) for u in users for j in range(12) for kind in ("impression", "click")
        )
    ]
    app.engagement.record(rows)
    report = app.feeds.train()
    yield app, report
    app.close()


def test_an_empty_data_dir_over_the_same_store_loads_the_model_and_projection(
    trained: tuple[App, dict[str, object]], tmp_path: Path, store_url: str
) -> None:
    a, report = trained
    rec = a.store.get_kv(MODEL_KEY)
    proj = a.store.get_kv(PROJECTION_KEY)
    assert rec["artefact"] and proj["artefact"]
    assert a.indexes.projection is not None
    b = build(_settings(tmp_path / "b", store_url), encoders=fake_encoders())
    try:
        assert not (tmp_path / "b" / rec["path"]).exists()
        _ = b.feeds.engine  # built on first use, loading the published model
        assert b.feeds.version == report["version"]
        assert b.feeds.status().get("model_error") is None
        assert (cache_dir(tmp_path / "b") / rec["artefact"] / "feed.json").is_file()
        assert b.indexes.projection is not None
        assert b.indexes.projection.digest_ == a.indexes.projection.digest_
        assert (cache_dir(tmp_path / "b") / proj["artefact"]).is_file()
        # The same model on the same log: the same feed, and the same images found.
        now = time.time()
        uid = a.store.user_ids(10)[0]
        assert [i.pin for i in b.feeds.feed(uid, 8, now=now)[0]] == [
            i.pin for i in a.feeds.feed(uid, 8, now=now)[0]
        ]
        q = a.store.get_vectors("image")[1][:1]
        ids_a = a.indexes.get("image").search(a.indexes.to_index_space("image", q), 5)
        ids_b = b.indexes.get("image").search(b.indexes.to_index_space("image", q), 5)
        assert np.array_equal(ids_a[1], ids_b[1])
    finally:
        b.close()
    # A third process over b's data dir uses the cached copy: the store's bytes are not read.
    with a.store.write() as conn:
        conn.execute(sa.delete(t.artefact_chunks))
    c = build(_settings(tmp_path / "b", store_url), encoders=fake_encoders())
    try:
        _ = c.feeds.engine
        assert c.feeds.version == report["version"]
    finally:
        c.close()


def test_a_data_dir_from_before_artefacts_keeps_its_own_files_or_says_what_is_missing(
    trained: tuple[App, dict[str, object]], tmp_path: Path, store_url: str
) -> None:
    a, report = trained
    rec = dict(a.store.get_kv(MODEL_KEY))
    del rec["artefact"]  # as a version before this one recorded it
    a.store.set_kv(MODEL_KEY, rec)
    a.parts.feeds.reset()
    _ = a.feeds.engine
    assert a.feeds.version == report["version"]  # its own files, as before
    b = build(_settings(tmp_path / "b", store_url), encoders=fake_encoders())
    try:
        _ = b.feeds.engine
        assert b.feeds.version is None
        assert "not loaded" in b.feeds.status()["model_error"]
        assert str(rec["path"]) in b.feeds.status()["model_error"]
    finally:
        b.close()
