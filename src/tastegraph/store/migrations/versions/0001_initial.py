"""Initial schema: pins, vectors, change log, sources, ingest runs, quarantine, tokens, audit."""

from __future__ import annotations

from alembic import op

from tastegraph.store.schema import FTS_DDL, TABLES_0001, metadata

revision = "0001"
down_revision = None


def upgrade() -> None:
    bind = op.get_bind()
    # Only this revision's tables: later revisions add theirs (and alter these explicitly).
    metadata.create_all(bind, tables=list(TABLES_0001))
    if bind.dialect.name == "sqlite":
        op.execute(FTS_DDL)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS pins_fts")
    metadata.drop_all(bind, tables=list(TABLES_0001))
