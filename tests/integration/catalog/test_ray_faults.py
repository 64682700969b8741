"""A node lost mid-ingest on a simulated 2-node Ray cluster: after a rerun, each source once."""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tastegraph.catalog.pipeline.ray_runner import RayRunner
from tastegraph.catalog.pipeline.ray_session import RayOptions
from tests.integration.catalog.ray_helpers import fake_app, slow_encoders, sources, sources_stored

MB = 1024 * 1024


def _stored_count(db: Path) -> int:
    """Pins committed so far (a plain read beside the run's own connection)."""
    with contextlib.closing(sqlite3.connect(db)) as con:
        return int(con.execute("SELECT count(*) FROM pins").fetchone()[0])


@pytest.mark.slow  # ~60 s on two busy cores: a 3-node cluster, two runs
def test_a_node_removed_mid_ingest_then_a_rerun_stores_every_source_exactly_once(
    tmp_path: Path,
) -> None:
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    # A head that runs nothing (as a real one is often set up) and two worker nodes.
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "object_store_memory": 80 * MB},
    )
    doomed = cluster.add_node(num_cpus=1, object_store_memory=80 * MB)
    cluster.add_node(num_cpus=1, object_store_memory=80 * MB)
    cluster.wait_for_nodes()
    items = sources(tmp_path / "imgs", 48, bad=2)
    app = fake_app(tmp_path, "ray")
    db = tmp_path / "ray" / "tastegraph.db"
    runner = RayRunner(
        options=RayOptions(address=cluster.address, actors=2, actor_cpus=0.5),
        encoders=functools.partial(slow_encoders, 0.4),
    )
    outcome: dict[str, Any] = {}

    def first_run() -> None:
        try:
            outcome["report"] = app.catalog.ingest_items(
                items, source_label="x", progress=False, runner=runner
            )
        except Exception as e:  # the run may fail with the node: the rerun finishes it
            outcome["error"] = e

    try:
        run = threading.Thread(target=first_run)
        run.start()
        deadline = time.monotonic() + 60
        while _stored_count(db) < 8 and run.is_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        lost_at = _stored_count(db)
        # Its replacement joins first, while this process is still connected to the cluster
        # (Cluster.add_node needs the driver's connection; a first run that fails fast on the
        # lost node disconnects it, which made adding it afterwards fail now and then).
        cluster.add_node(num_cpus=1, object_store_memory=80 * MB)
        cluster.remove_node(doomed)  # mid-ingest: batches in flight there are lost
        run.join(120)
        assert not run.is_alive(), "the run hung after losing a node"
        assert 8 <= lost_at < 48, "the node was not removed mid-ingest"
        again = app.catalog.ingest_items(items, source_label="x", progress=False, runner=runner)
        first = outcome.get("report")
        assert (first.added if first else lost_at) + again.added >= 48 - lost_at
        assert again.rejected == 2 and again.existing == 0
        assert sources_stored(app) == sorted(it.ref for it in items if "cut" not in it.ref)
    finally:
        app.close()
        cluster.shutdown()
