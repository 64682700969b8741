"""Opening a store that cannot be used says why in one line: the URL (never its password) and
what to do; a shared database at an older schema names ``tastegraph db upgrade``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from typer.testing import CliRunner

from tastegraph import cli
from tastegraph.errors import InvalidInput, SchemaOutdated, StoreUnavailable
from tastegraph.store import open_store
from tastegraph.store.db import _alembic_config
from tests.postgres import Server as PostgresServer


def test_an_unreachable_server_is_one_line_without_the_password() -> None:
    with pytest.raises(StoreUnavailable) as e:
        open_store("postgresql+psycopg://tg:s3cret@127.0.0.1:1/catalog")
    assert "tg:***@127.0.0.1:1/catalog" in e.value.message
    assert "s3cret" not in e.value.message + e.value.hint
    assert "\n" not in e.value.message and "TASTEGRAPH_STORE_URL" in e.value.hint
    assert e.value.status == 503


def test_a_malformed_url_is_invalid_input() -> None:
    with pytest.raises(InvalidInput) as e:
        open_store("postgresql+psycopg://tg:s3cret@host:notaport/db")
    assert "s3cret" not in e.value.message


def test_a_missing_database_is_named(postgres: PostgresServer) -> None:
    url = postgres.url("no_such_database")
    with pytest.raises(StoreUnavailable, match="no_such_database"):
        open_store(url)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    open_store(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999_future'")
    engine.dispose()
    with pytest.raises(SchemaOutdated, match="newer"):
        open_store(url)


def test_an_older_postgresql_schema_names_db_upgrade(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = postgres.fresh_database(migrated=False)
    try:
        engine = sa.create_engine(url)
        cfg = _alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0003_ids_never_reused")
        engine.dispose()
        with pytest.raises(SchemaOutdated) as e:
            open_store(url)
        assert "`tastegraph db upgrade`" in e.value.hint
        monkeypatch.setenv("TASTEGRAPH_STORE_URL", url)
        res = CliRunner().invoke(cli.app, ["db", "upgrade", "--data", str(tmp_path), "--json"])
        assert res.exit_code == 0, res.output
        newest = sorted(ScriptDirectory.from_config(cfg).get_heads())
        assert json.loads(res.stdout)["schema"] == newest != ["0003_ids_never_reused"]
        store = open_store(url)  # now at the newest schema: opens as it is
        store.close()
    finally:
        postgres.drop(url)


def test_db_upgrade_reports_an_unreachable_store(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TASTEGRAPH_STORE_URL", "postgresql+psycopg://tg:s3cret@127.0.0.1:1/c")
    res = CliRunner().invoke(cli.app, ["db", "upgrade", "--data", str(tmp_path)])
    assert res.exit_code == 1
    assert "tg:***@127.0.0.1:1/c" in res.output and "s3cret" not in res.output


def test_a_connection_lost_mid_request_is_a_503_and_the_next_request_reconnects(
    postgres: PostgresServer, postgres_url: str
) -> None:
    store = open_store(postgres_url)
    admin = sa.create_engine(postgres.url("postgres"), isolation_level="AUTOCOMMIT")
    kill = sa.text(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = :db AND pid <> pg_backend_pid()"
    )
    try:
        with pytest.raises(StoreUnavailable) as e, store.read() as conn:
            conn.exec_driver_sql("SELECT 1")
            with admin.connect() as a:
                a.execute(kill, {"db": sa.make_url(postgres_url).database})
            conn.exec_driver_sql("SELECT 1")
        assert e.value.status == 503 and "retry" in e.value.hint
        with admin.connect() as a:  # idle pooled connections die too: the pool replaces them
            a.execute(kill, {"db": sa.make_url(postgres_url).database})
        assert store.count_pins() == 0
        assert store.add_pins([]) == [] and store.create_user("ann")["id"] == 1
    finally:
        admin.dispose()
        store.close()
