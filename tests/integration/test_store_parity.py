"""One catalog and one event log on SQLite, copied to PostgreSQL with ``db copy``: every
feed, related list, similar-image search and trained model answer the same on both stores
(issue 17, item 7, with the fake encoders; the real-model figures: tests/e2e/test_store_parity)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from tastegraph.app import App, build
from tastegraph.settings import Settings
from tastegraph.store.copy import copy_store
from tests.fakes import fake_encoders
from tests.fixtures import write_images

NOW = time.time()  # one "now" for every answer compared


def _app(data: Path, url: str) -> App:
    return build(
        Settings(data_dir=data, store_url=url, index_kind="exact", whiten_min_pins=10_000),
        encoders=fake_encoders(),
    )


def _fill(app: App, folder: Path) -> None:
    write_images(
        folder, {"red": (210, 30, 30), "green": (30, 190, 40), "blue": (30, 40, 210)}, 10, seed=3
    )
    assert app.catalog.ingest(str(folder), progress=False).added == 30
    rng = np.random.default_rng(3)
    pins = [p.id for p in app.store.list_pins(limit=100)]
    users = [app.store.create_user(f"u{i}")["id"] for i in range(5)]
    kinds = ("impression", "click", "save", "hide", "dwell")
    rows = [
        (
            k,
            {
                "user_id": int(u),
                "pin_id": int(p),
                "type": kinds[k % 5],
                "ts": NOW - 500 + k,
                "dwell_ms": 900.0 * (k % 5 == 4),
            },
        )
        for k, (u, p) in enumerate(zip(rng.choice(users, 150), rng.choice(pins, 150), strict=True))
    ]
    app.engagement.record(rows)


def _answers(app: App) -> dict[str, object]:
    users = app.store.user_ids(10)
    pins = [p.id for p in app.store.list_pins(limit=100)]
    return {
        "feeds": {
            u: [(i.pin, round(i.score, 6)) for i in app.feeds.feed(u, 12, now=NOW)[0]]
            for u in users
        },
        "related": {p: [i.pin for i in app.feeds.related(p, 6, now=NOW)] for p in pins[:8]},
        "similar": {p: [h.pin_id for h in app.search.similar(p, limit=8).hits] for p in pins[:8]},
    }


def test_feeds_related_and_search_answer_alike_on_sqlite_and_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    lite = _app(tmp_path / "a", f"sqlite:///{tmp_path / 'a.db'}")
    try:
        _fill(lite, tmp_path / "imgs")
        before = _answers(lite)
        copy_store(lite.store.url, postgres_url)  # type: ignore[attr-defined]
        pg = _app(tmp_path / "b", postgres_url)
        try:
            assert _answers(pg) == before
            # And a model trained on each store is the same model.
            trained = lite.feeds.train(now=NOW), pg.feeds.train(now=NOW)
            assert trained[0]["events"] == trained[1]["events"] == 150
            assert _answers(pg) == _answers(lite)
        finally:
            pg.close()
    finally:
        lite.close()
