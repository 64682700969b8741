"""PostgreSQL's own column types and keyword index; SQLite is left as it is.

Ids (the columns naming them, and an event's position) become BIGINT, with their sequences:
the API accepts ids up to 2**53-1 and the CLI up to 2**63-1, and PostgreSQL's INTEGER is 32-bit
(SQLite's is 64-bit already). JSON documents become JSONB, which attribute and tag filters
query with its operators (tags through a GIN index). The keyword index is a table of weighted
``tsvector`` documents (title A, tags B, description C) under a GIN index, the counterpart of
SQLite's FTS5 table from 0001, under the same name.

Frozen: the columns are written out here, never read from ``schema.py``.
"""

from __future__ import annotations

from alembic import op

revision = "0004_postgresql_types"
down_revision = "0003_ids_never_reused"

# table -> its id-valued columns (the serial primary key first, where it has one)
_IDS: dict[str, tuple[str, ...]] = {
    "pins": ("id", "dup_group"),
    "vectors": ("pin_id",),
    "changes": ("seq", "pin_id"),
    "sources": ("pin_id",),
    "quarantine": ("id",),
    "tokens": ("id",),
    "audit_log": ("id", "token_id"),
    "users": ("id",),
    "boards": ("id", "user_id"),
    "board_pins": ("board_id", "pin_id"),
    "events": ("id", "user_id", "pin_id", "position"),
}
_SERIAL = {"pins": "id", "changes": "seq", "quarantine": "id", "tokens": "id",
           "audit_log": "id", "users": "id", "boards": "id", "events": "id"}  # fmt: skip
_JSON = {"pins": ("tags", "labels", "attributes"), "ingest_runs": ("counts",), "kv": ("value",)}

_KEYWORDS = (
    "CREATE TABLE pins_fts (pin_id BIGINT PRIMARY KEY REFERENCES pins (id) ON DELETE CASCADE, "
    "doc TSVECTOR NOT NULL)",
    "CREATE INDEX pins_fts_doc ON pins_fts USING GIN (doc)",
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, cols in _IDS.items():
        for col in cols:
            op.execute(f'ALTER TABLE {table} ALTER COLUMN "{col}" TYPE BIGINT')
    for table, col in _SERIAL.items():
        op.execute(f"ALTER SEQUENCE {table}_{col}_seq AS BIGINT")
    for table, cols in _JSON.items():
        for col in cols:
            op.execute(f'ALTER TABLE {table} ALTER COLUMN "{col}" TYPE JSONB USING "{col}"::jsonb')
    op.execute("CREATE INDEX ix_pins_tags ON pins USING GIN (tags)")
    # No backfill: no PostgreSQL store held pins before this revision existed.
    for stmt in _KEYWORDS:
        op.execute(stmt)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TABLE IF EXISTS pins_fts")
