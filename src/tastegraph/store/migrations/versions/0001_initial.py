"""Initial schema: pins, vectors, change log, sources, ingest runs, quarantine, tokens, audit.

Frozen: the tables as this revision creates them, written out here, never read from
``schema.py`` (a column added there later must not change what this revision does). The tables
whose ids leave the process are created AUTOINCREMENT, as 0003 leaves older databases.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

_NEVER_REUSED = {"sqlite_autoincrement": True}

# SQLite's keyword index (other databases index words their own way, in their own revision).
_FTS_DDL = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS pins_fts USING fts5("
    "title, description, tags, tokenize='porter unicode61 remove_diacritics 2')"
)


def upgrade() -> None:
    op.create_table(
        "pins",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("content_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("phash", sa.String(16), nullable=False, server_default=""),
        sa.Column("title", sa.Text, nullable=False, server_default=""),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("link", sa.Text, nullable=False, server_default=""),
        sa.Column("board", sa.Text, nullable=False, server_default=""),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("attributes", sa.JSON, nullable=False),
        sa.Column("source", sa.Text, nullable=False, server_default=""),
        sa.Column("width", sa.Integer, nullable=False, server_default="0"),
        sa.Column("height", sa.Integer, nullable=False, server_default="0"),
        sa.Column("format", sa.String(16), nullable=False, server_default=""),
        sa.Column("dup_group", sa.Integer, nullable=True),
        sa.Column("thumbnail", sa.LargeBinary, nullable=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        **_NEVER_REUSED,
    )
    op.create_index("ix_pins_board", "pins", ["board"])
    op.create_index("ix_pins_phash", "pins", ["phash"])
    op.create_table(
        "vectors",
        sa.Column("pin_id", sa.Integer, primary_key=True),
        sa.Column("space", sa.String(16), primary_key=True),
        sa.Column("model_id", sa.String(64), nullable=False),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.ForeignKeyConstraint(["pin_id"], ["pins.id"], ondelete="CASCADE"),
    )
    op.create_table(
        "changes",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pin_id", sa.Integer, nullable=False),
        sa.Column("op", sa.String(8), nullable=False),
        **_NEVER_REUSED,
    )
    op.create_table(
        "sources",
        sa.Column("ref", sa.Text, primary_key=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("pin_id", sa.Integer, nullable=True),
    )
    op.create_table(
        "ingest_runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("started_at", sa.String(32), nullable=False),
        sa.Column("finished_at", sa.String(32), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("counts", sa.JSON, nullable=False),
    )
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        **_NEVER_REUSED,
    )
    op.create_index("ix_quarantine_run_id", "quarantine", ["run_id"])
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("revoked_at", sa.String(32), nullable=True),
        **_NEVER_REUSED,
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("token_id", sa.Integer, nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        **_NEVER_REUSED,
    )
    op.create_table(
        "kv",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", sa.JSON, nullable=False),
    )
    if op.get_bind().dialect.name == "sqlite":
        op.execute(_FTS_DDL)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS pins_fts")
    for name in ("kv", "audit_log", "tokens", "quarantine", "ingest_runs", "sources", "changes"):
        op.drop_table(name)
    op.drop_table("vectors")
    op.drop_table("pins")
