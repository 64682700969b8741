"""The catalog service on its own: create, update, delete, reindex, and what it tells listeners."""

from __future__ import annotations

from pathlib import Path

import pytest

from tastegraph.app import App
from tastegraph.catalog.service import CatalogHooks, CatalogService, upload_ref
from tastegraph.catalog.sources import SourceItem
from tastegraph.errors import InvalidInput, NotFound
from tests import fixtures as fx


def _service(app: App, calls: list[tuple[str, object]]) -> CatalogService:
    """A catalog service over the app's store and models that records what it announces."""
    return CatalogService(
        app.store,
        app.settings,
        encoders=lambda: app.encoders,
        indexes=lambda: app.indexes,
        preprocess=lambda: app.preprocess,
        top_labels=app.top_labels,
        hooks=CatalogHooks(
            pins_added=lambda ids: calls.append(("added", list(ids))),
            pins_deleted=lambda ids: calls.append(("deleted", list(ids))),
            projection_fitted=lambda digest: calls.append(("projection", digest)),
            indexes_reset=lambda: calls.append(("reset", None)),
        ),
    )


def _upload(seed: int, title: str = "") -> tuple[SourceItem, bytes]:
    data = fx.jpeg_bytes(seed=seed)
    return SourceItem(ref=upload_ref(data, f"p{seed}.jpg"), title=title), data


def test_create_adds_once_and_says_so(fake_app: App) -> None:
    calls: list[tuple[str, object]] = []
    catalog = _service(fake_app, calls)
    item, data = _upload(1, "red shoes")
    first = catalog.create(item, data)
    assert first.created and first.pin.title == "red shoes"
    assert calls == [("added", [first.pin.id])]
    again = catalog.create(*_upload(1))
    assert not again.created and again.pin.id == first.pin.id
    assert fake_app.indexes.stats()["image"]["size"] == 1
    with pytest.raises(InvalidInput):
        catalog.create(SourceItem(ref="upload:x:page.jpg"), fx.html_bytes())


def test_update_re_encodes_the_words_and_delete_forgets_the_pin(fake_app: App) -> None:
    calls: list[tuple[str, object]] = []
    catalog = _service(fake_app, calls)
    pins = [catalog.create(*_upload(seed)).pin for seed in (1, 2, 3)]
    target = pins[1]
    catalog.update(target.id, {"title": "wool coat"})
    assert fake_app.store.get_pin(target.id).title == "wool coat"
    assert fake_app.search.text("wool coat").hits[0].pin_id == target.id
    with pytest.raises(NotFound):
        catalog.update(10_000, {"title": "x"})

    catalog.delete(target.id)
    assert calls[-1] == ("deleted", [target.id])
    assert fake_app.indexes.stats()["image"]["size"] == 2
    with pytest.raises(NotFound):
        fake_app.store.get_pin(target.id)


def test_reindex_rebuilds_the_indexes_from_the_store(fake_app: App, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for seed in range(4):
        (folder / f"{seed}.jpg").write_bytes(fx.jpeg_bytes(seed=seed))
    assert fake_app.catalog.ingest(str(folder), progress=False).added == 4
    done = fake_app.catalog.reindex()
    assert done.rebuilt and done.reencode is None
    assert done.stats["image"]["size"] == 4 and done.applied["image"] >= 4
    assert set(done.to_dict()) == {"indexes", "applied"}
    saved = fake_app.settings.data_dir / "indexes" / fake_app.settings.index.kind / "image"
    assert saved.is_dir() and any(saved.iterdir())
    # Nothing made by another model: re-encoding has nothing to do and the rebuild goes on.
    again = fake_app.catalog.reindex(reencode=True)
    assert again.rebuilt and again.reencode is not None and again.reencode.stale == 0


def test_a_new_projection_is_announced_instead_of_added_pins(fake_app: App) -> None:
    """Once the catalog is large enough the whitening is fitted: every image vector moves, so
    listeners hear "rebuild" (projection_fitted), not "extend" (pins_added)."""
    fake_app.settings.models.image_dim = 4
    fake_app.settings.models.whiten_min_pins = 6
    calls: list[tuple[str, object]] = []
    catalog = _service(fake_app, calls)
    items = [_upload(seed) for seed in range(6)]
    report = catalog.ingest_items(
        [item for item, _ in items],
        source_label="t",
        progress=False,
        data={item.ref: data for item, data in items},
    )
    assert report.added == 6
    ((kind, digest),) = calls
    assert kind == "projection" and digest == fake_app.store.get_kv("image_projection")["digest"]
    assert fake_app.indexes.projection is not None
    assert fake_app.indexes.stats()["image"]["size"] == 6
