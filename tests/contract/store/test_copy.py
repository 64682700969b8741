"""``tastegraph db copy``: every pair of backends, a non-empty destination, bad URLs, a copy
killed mid-way and rerun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from tastegraph import cli
from tastegraph.domain import QuarantineEntry
from tastegraph.errors import Conflict, InvalidInput, StoreUnavailable
from tastegraph.store import NewPin, open_store
from tastegraph.store import schema as t
from tastegraph.store.copy import copy_store, table_checksum
from tastegraph.store.sql import SQLStore
from tests.contract.store.conftest import BACKENDS

PAIRS = [(a, b) for a in sorted(BACKENDS) for b in sorted(BACKENDS)]
ACROSS = [("sqlite", "postgresql"), ("postgresql", "sqlite")]


def _pin(i: int, **kw: object) -> NewPin:
    vec = np.arange(4, dtype=np.float32) * i
    return NewPin(
        content_hash=f"{i:064x}", source=f"p{i}.jpg", vectors={"image": ("m@1", vec)}, **kw
    )  # type: ignore[arg-type]


def fill(url: str, pins: int = 30, events: int = 45) -> None:
    """A small catalog touching every table, with a deleted pin above the others' ids."""
    s = open_store(url)
    try:
        ids = [
            pid
            for pid, _ in s.add_pins(
                [
                    _pin(
                        i,
                        title=f"red dress {i}" if i % 2 else f"blue coat {i}",
                        tags=["a", "ünï"],
                        labels=[("dress", 0.25)],
                        attributes={"colour": "red", "n": i, "x": 0.1 * i},
                        thumbnail=bytes([i % 256]) * 50,
                    )
                    for i in range(1, pins + 2)
                ]
            )
        ]
        s.delete_pin(ids[-1])  # ids never reused: the copy must keep this one taken
        s.set_dup_groups({ids[0]: ids[0], ids[1]: ids[0]})
        s.set_kv("projection", {"file": "models/p.npz", "digest": "ab"})
        s.put_artefact("feed_model", bytes(range(256)) * 40, {"version": "v1"})
        s.start_run("r1", "folder")
        s.add_quarantine("r1", [QuarantineEntry("bad.jpg", "decode", "not an image")])
        s.finish_run("r1", "done", {"added": pins})
        s.create_token("ed", "editor")
        s.audit(None, "admin", "made", "token 1")
        u = s.create_user("ann")["id"]
        s.create_user("bob")
        b = s.create_board(u, "dresses")["id"]
        s.save_pin(b, ids[0])
        s.add_events(
            [
                {
                    "key": f"k{i}",
                    "user_id": u,
                    "pin_id": ids[i % pins],
                    "kind": "click",
                    "ts": 1.7e9 + i / 3,
                    "dwell_ms": 0.5,
                    "surface": "home",
                    "position": i,
                    "request_id": "",
                }
                for i in range(events)
            ]
        )
    finally:
        s.close()


def checksums(url: str) -> dict[str, tuple[int, str]]:
    s = open_store(url)
    try:
        with s.read() as conn:
            return {tb.name: table_checksum(conn, tb) for tb in t.metadata.sorted_tables}
    finally:
        s.close()


@pytest.fixture
def two_databases(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(source, destination) of the pair named by the test's parameter."""
    src, dst = request.param
    (tmp_path / "s").mkdir()
    (tmp_path / "d").mkdir()
    a = BACKENDS[src](request, tmp_path / "s")
    if src == dst == "postgresql":
        server = request.getfixturevalue("postgres")
        b = server.fresh_database(migrated=False)
        request.addfinalizer(lambda: server.drop(b))
    else:
        b = BACKENDS[dst](request, tmp_path / "d")
    return a, b


@pytest.mark.parametrize("two_databases", PAIRS, indirect=True, ids=lambda p: "-to-".join(p))
def test_a_copy_keeps_every_row_id_and_word(two_databases: tuple[str, str]) -> None:
    src, dst = two_databases
    fill(src)
    seen: list[tuple[str, int, int]] = []
    report = copy_store(src, dst, batch=7, progress=lambda *a: seen.append(a))
    assert checksums(dst) == checksums(src)
    by_name = {tc.name: tc for tc in report.tables}
    assert by_name["pins"].rows == 30 and by_name["events"].rows == 45
    assert ("events", 45, 45) in seen and ("events", 7, 45) in seen
    a, b = open_store(src), open_store(dst)
    try:
        assert b.get_pin(3) == a.get_pin(3)
        assert b.get_thumbnail(3) == a.get_thumbnail(3)
        assert b.get_vectors("image")[0].tolist() == a.get_vectors("image")[0].tolist()
        assert np.array_equal(b.get_vectors("image")[1], a.get_vectors("image")[1])
        assert b.events_since(0) == a.events_since(0)
        assert b.get_kv("projection") == a.get_kv("projection")
        assert b.dup_groups() == a.dup_groups()
        model = b.latest_artefact("feed_model")
        assert model is not None and b.get_artefact(model.digest) == bytes(range(256)) * 40
        assert b.filter_ids(tag="ünï") is not None
        # The keyword index was rebuilt in the destination's own form.
        assert {i for i, _ in b.fts_search("dress")} == {i for i, _ in a.fts_search("dress")}
        assert len(b.fts_search("dress")) == 15
        # The next ids follow the source's high-water marks: pin 31 was deleted, never reused.
        assert b.add_pins([_pin(99)])[0][0] == 32 == a.add_pins([_pin(99)])[0][0]
        assert b.create_user("cy")["id"] == 3
        b.add_events([{"key": "new", "user_id": 1, "pin_id": 1, "kind": "save", "ts": 1.8e9}])
        assert b.last_event_id() == 46
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("two_databases", ACROSS, indirect=True, ids=lambda p: "-to-".join(p))
def test_a_destination_holding_anything_is_refused_and_left_alone(
    two_databases: tuple[str, str],
) -> None:
    src, dst = two_databases
    fill(src, pins=3, events=2)
    d = open_store(dst)
    d.create_user("already")
    d.close()
    before = checksums(dst)
    with pytest.raises(Conflict, match=r"is not empty \(users: 1\)"):
        copy_store(src, dst)
    assert checksums(dst) == before


def test_bad_urls_are_one_clear_line(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path / 'nope.db'}"
    with pytest.raises(InvalidInput, match="no SQLite database at"):
        copy_store(missing, f"sqlite:///{tmp_path / 'd.db'}")
    assert not (tmp_path / "nope.db").exists()
    src = f"sqlite:///{tmp_path / 's.db'}"
    fill(src, pins=2, events=1)
    with pytest.raises(InvalidInput, match="same store"):
        copy_store(src, src)
    with pytest.raises(InvalidInput, match="unsupported store URL") as bad:
        copy_store(src, "mysql://u:pw@h/db")
    assert "pw" not in bad.value.message
    with pytest.raises(StoreUnavailable) as e:
        copy_store(src, "postgresql+psycopg://tg:s3cret@127.0.0.1:1/tg")
    assert "s3cret" not in e.value.message and "***" in e.value.message
    with pytest.raises(InvalidInput, match="batch size"):
        copy_store(src, f"sqlite:///{tmp_path / 'd.db'}", batch=0)


def test_the_command_prints_a_summary_and_never_a_password(tmp_path: Path) -> None:
    src, dst = f"sqlite:///{tmp_path / 's.db'}", f"sqlite:///{tmp_path / 'd.db'}"
    fill(src, pins=4, events=3)
    res = CliRunner().invoke(cli.app, ["db", "copy", src, dst, "--json", "--batch-size", "2"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["tables"]["pins"]["rows"] == 4
    assert summary["tables"]["pins"]["next_id"] == 6
    assert summary["rows"] == sum(v["rows"] for v in summary["tables"].values())
    res = CliRunner().invoke(cli.app, ["db", "copy", src, dst])
    assert res.exit_code == 1 and "is not empty" in " ".join(res.output.split())
    bad = "postgresql+psycopg://tg:s3cret@127.0.0.1:1/tg"
    res = CliRunner().invoke(cli.app, ["db", "copy", src, bad])
    text = " ".join(res.output.split())
    assert res.exit_code == 1 and "s3cret" not in text and "tg:***@127.0.0.1:1" in text


_KILLER = """
import os, signal, sys
from tastegraph.store.copy import copy_store

def progress(table, done, total):
    if table == "events" and done > 0:  # pins, vectors and users are in by now
        os.kill(os.getpid(), signal.SIGKILL)

copy_store(sys.argv[1], sys.argv[2], batch=5, progress=progress)
"""


@pytest.mark.parametrize("two_databases", ACROSS, indirect=True, ids=lambda p: "-to-".join(p))
def test_a_copy_killed_mid_way_commits_nothing_and_a_rerun_completes(
    two_databases: tuple[str, str],
) -> None:
    src, dst = two_databases
    fill(src)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_KILLER), src, dst],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    d = SQLStore(dst)
    try:
        with d.read() as conn:
            assert all(
                n == 0 for n, _ in (table_checksum(conn, tb) for tb in t.metadata.tables.values())
            )
        assert d.db.schema_heads()  # the schema upgrade itself was committed before
    finally:
        d.close()
    copy_store(src, dst)
    assert checksums(dst) == checksums(src)


def test_a_row_the_destination_cannot_hold_names_the_table_and_commits_nothing(
    tmp_path: Path, postgres_url: str
) -> None:
    src = f"sqlite:///{tmp_path / 's.db'}"
    fill(src, pins=3, events=3)
    s = open_store(src)
    with s.write() as conn:  # SQLite keeps whatever it is given; PostgreSQL's BIGINT does not
        conn.execute(sa.text("UPDATE events SET user_id = 'ann' WHERE id = 2"))
    s.close()
    with pytest.raises(InvalidInput, match=r"row of events between \(id=1\) and \(id=3\)"):
        copy_store(src, postgres_url)
    assert all(n == 0 for n, _ in checksums(postgres_url).values())
