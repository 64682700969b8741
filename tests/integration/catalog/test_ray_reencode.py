"""``reindex --reencode`` on Ray remakes the vectors the local re-encoding remakes, bit for bit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tastegraph.catalog.pipeline.ray_reencode import RayReencoder
from tastegraph.catalog.pipeline.ray_session import RayOptions
from tastegraph.catalog.reencode import stale_vectors
from tests.integration.catalog.ray_helpers import (
    fake_app,
    other_encoders,
    sources,
    stored,
)


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
