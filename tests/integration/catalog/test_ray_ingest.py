"""Ingest and re-encoding on a local Ray store, bit for bit, what the local runs store."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

from tastegraph.app import build
from tastegraph.catalog.pipeline.ray_reencode import RayReencoder
from tastegraph.catalog.pipeline.ray_runner import RayRunner
from tastegraph.catalog.pipeline.ray_session import RayOptions
from tastegraph.catalog.reencode import stale_vectors
from tests.conftest import real_settings
from tests.integration.catalog.ray_helpers import (
    SPACES,
    dying_encoders,
    fake_app,
    other_encoders,
    runner,
    sources,
    sources_stored,
    stored,
)


def test_ray_ingest_stores_the_local_runs_vectors_bit_for_bit(
    tmp_path: Path, local_ray: Any
) -> None:
    """The text model pads each batch: the same bits only from the same batches."""
    items = sources(tmp_path / "imgs", 21, bad=2)
    local = fake_app(tmp_path, "local", padded=True)
    on_ray = fake_app(tmp_path, "ray", padded=True)
    try:
        want = local.catalog.ingest_items(items, source_label="x", progress=False)
        got = on_ray.catalog.ingest_items(
            items, source_label="x", progress=False, runner=runner(padded=True)
        )
        assert (got.added, got.rejected) == (want.added, want.rejected) == (21, 2)
        # The same rejections, with the same reasons, in the same order.
        assert [(q.source, q.reason, q.message) for q in got.quarantine] == [
            (q.source, q.reason, q.message) for q in want.quarantine
        ]
        want_vecs, want_rows = stored(local)
        got_vecs, got_rows = stored(on_ray)
        assert {space for _, space in got_vecs} == set(SPACES)
        assert got_vecs.keys() == want_vecs.keys()
        for key, vec in got_vecs.items():
            assert vec == want_vecs[key], key  # model id and every bit of the vector
        assert got_rows == want_rows
        assert got.timings["actor_start"] >= 0 and got.timings["encode_cpu"] > 0
        # A rerun skips every source stored; the cut files were rejected, not done: tried again.
        again = on_ray.catalog.ingest_items(
            items, source_label="x", progress=False, runner=runner(padded=True)
        )
        assert (again.added, again.skipped, again.rejected) == (0, 21, 2)
        assert sources_stored(on_ray) == sorted(it.ref for it in items if "cut" not in it.ref)
    finally:
        local.close()
        on_ray.close()


def test_a_worker_that_dies_mid_batch_has_its_batch_retried_and_nothing_written_twice(
    tmp_path: Path, local_ray: Any
) -> None:
    items = sources(tmp_path / "imgs", 12, bad=1)
    marker = tmp_path / "died"
    app = fake_app(tmp_path, "ray")
    dying = RayRunner(
        options=RayOptions(actors=1, actor_cpus=0.5),
        encoders=functools.partial(dying_encoders, marker),
    )
    try:
        report = app.catalog.ingest_items(items, source_label="x", progress=False, runner=dying)
        assert marker.exists()  # an actor did die, mid-batch
        assert (report.added, report.existing, report.rejected) == (12, 0, 1)
        assert sources_stored(app) == sorted(it.ref for it in items if "cut" not in it.ref)
    finally:
        app.close()


def test_on_postgresql_the_write_stage_writes_in_parallel_and_a_rerun_adds_nothing(
    tmp_path: Path, local_ray: Any, postgres_url: str
) -> None:
    items = sources(tmp_path / "imgs", 14, bad=1)
    local = fake_app(tmp_path, "local")
    on_pg = fake_app(tmp_path, "pg", store={"url": postgres_url})
    try:
        assert on_pg.store.url.startswith("postgresql")
        want = local.catalog.ingest_items(items, source_label="x", progress=False)
        got = on_pg.catalog.ingest_items(items, source_label="x", progress=False, runner=runner())
        assert (got.added, got.rejected) == (want.added, want.rejected) == (14, 1)
        assert "store_cpu" in got.timings and got.timings["store"] > 0  # written by the actors
        assert stored(on_pg) == stored(local)
        again = on_pg.catalog.ingest_items(items, source_label="x", progress=False, runner=runner())
        assert (again.added, again.skipped, again.rejected) == (0, 14, 1)
        assert sources_stored(on_pg) == sorted(it.ref for it in items if "cut" not in it.ref)
    finally:
        local.close()
        on_pg.close()


@pytest.mark.slow  # loads the real models in this process and in two actors
def test_ray_ingest_with_the_real_models_stores_the_local_runs_vectors_bit_for_bit(
    tmp_path: Path, local_ray: Any
) -> None:
    """The actors run the models on one thread each (Ray's default): still the same bits."""
    items = sources(tmp_path / "imgs", 13, bad=1)
    apps = [build(real_settings(tmp_path / n, index_kind="exact", batch_size=4)) for n in "lr"]
    try:
        want = apps[0].catalog.ingest_items(items, source_label="x", progress=False)
        got = apps[1].catalog.ingest_items(
            items, source_label="x", progress=False, runner=RayRunner(RayOptions(actors=2))
        )
        assert (got.added, got.rejected) == (want.added, want.rejected) == (13, 1)
        assert stored(apps[1]) == stored(apps[0])
    finally:
        for app in apps:
            app.close()


def test_reencode_on_ray_remakes_what_the_local_reencode_remakes(
    tmp_path: Path, local_ray: Any
) -> None:
    items = sources(tmp_path / "imgs", 9, bad=0)
    for name in ("local", "ray"):
        app = fake_app(tmp_path, name)
        try:
            assert app.catalog.ingest_items(items, source_label="x", progress=False).added == 9
        finally:
            app.close()
    Path(items[4].ref).unlink()  # one file gone: that pin keeps its vectors and is reported
    local, on_ray = fake_app(tmp_path, "local", other=True), fake_app(tmp_path, "ray", other=True)
    try:
        want = local.catalog.reencode()
        seen: list[tuple[int, int]] = []
        got = on_ray.catalog.reencode(
            reencoder=RayReencoder(RayOptions(actors=2), encoders=other_encoders),
            on_batch=lambda n, total: seen.append((n, total)),
        )
        assert got.to_dict() == want.to_dict()
        assert got.reencoded == {"image": 8, "conse": 8, "text": 0}
        assert [(s, why) for _, s, why in got.failed] == [(items[4].ref, want.failed[0][2])]
        assert seen and seen[-1] == (9, 9)
        assert stored(on_ray) == stored(local)  # every vector, bit for bit
        gone = next(p.id for p in on_ray.store.list_pins(limit=100) if p.source == items[4].ref)
        assert stale_vectors(on_ray.catalog) == {gone: {"image"}}  # kept, not half-done
    finally:
        local.close()
        on_ray.close()
