"""Ingest on a local Ray stores, bit for bit, what the local runner stores."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from tastegraph.catalog.pipeline.ray_runner import RayRunner
from tastegraph.catalog.pipeline.ray_session import RayOptions
from tests.integration.catalog.ray_helpers import (
    SPACES,
    dying_encoders,
    fake_app,
    local_ray,
    runner,
    sources,
    sources_stored,
    stored,
)

__all__ = ["local_ray"]


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
    finally:
        local.close()
        on_ray.close()


def test_ray_ingest_rerun_stores_each_source_once(tmp_path: Path, local_ray: Any) -> None:
    items = sources(tmp_path / "imgs", 10, bad=1)
    app = fake_app(tmp_path, "ray")
    try:
        first = app.catalog.ingest_items(
            items[:6], source_label="x", progress=False, runner=runner()
        )
        again = app.catalog.ingest_items(items, source_label="x", progress=False, runner=runner())
        assert first.added + again.added == 10
        assert again.skipped == 5  # the cut file was rejected, not done: it is tried again
        assert (first.rejected, again.rejected) == (1, 1)
        assert sources_stored(app) == sorted(it.ref for it in items if "cut" not in it.ref)
    finally:
        app.close()


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
