"""Migrations carry frozen DDL; migrated to the newest revision, a fresh database has exactly
the live schema (``store/schema.py``): same tables, columns, keys and indexes."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import tastegraph.store
from tastegraph.store import open_store, schema
from tests.postgres import Server as PostgresServer

MIGRATIONS = Path(tastegraph.store.__file__).parent / "migrations"
# Tables that are not the metadata's: Alembic's own, and a backend's keyword index and sequences.
NOT_IN_METADATA = ("alembic_version", "sqlite_sequence", "pins_fts")


def _describe(insp: Any, table: str) -> dict[str, Any]:
    cols = [
        (
            c["name"],
            str(c["type"]),
            c["nullable"],
            None if c.get("default") is None else str(c["default"]).strip("'\""),
        )
        for c in insp.get_columns(table)
    ]
    return {
        "columns": cols,
        "pk": sorted(insp.get_pk_constraint(table)["constrained_columns"]),
        "fks": sorted(
            (
                tuple(f["constrained_columns"]),
                f["referred_table"],
                tuple(f["referred_columns"]),
                (f.get("options") or {}).get("ondelete"),
            )
            for f in insp.get_foreign_keys(table)
        ),
        "indexes": sorted(
            (i["name"], tuple(i["column_names"]), bool(i["unique"]))
            for i in insp.get_indexes(table)
        ),
        "unique": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table)),
    }


def _schema_of(engine: sa.Engine) -> dict[str, dict[str, Any]]:
    insp = sa.inspect(engine)
    return {
        name: _describe(insp, name)
        for name in insp.get_table_names()
        if not name.startswith(NOT_IN_METADATA)
    }


def _sqlite_pair(tmp_path: Path) -> tuple[str, str]:
    return f"sqlite:///{tmp_path / 'migrated.db'}", f"sqlite:///{tmp_path / 'live.db'}"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_fresh_database_at_head_has_the_live_schema(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        migrated_url, live_url = _sqlite_pair(tmp_path)
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        migrated_url = server.fresh_database(migrated=False)
        live_url = server.fresh_database(migrated=False)
        request.addfinalizer(lambda: [server.drop(u) for u in (migrated_url, live_url)])
    migrated = open_store(migrated_url)
    live = sa.create_engine(live_url)
    schema.metadata.create_all(live)
    try:
        got, want = _schema_of(migrated.db.engine), _schema_of(live)
    finally:
        migrated.close()
        live.dispose()
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name] == want[name], name


def test_migrations_never_import_the_live_schema() -> None:
    for path in [MIGRATIONS / "env.py", *sorted((MIGRATIONS / "versions").glob("*.py"))]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            assert not any(n.startswith("tastegraph") for n in names), f"{path.name}: {names}"
