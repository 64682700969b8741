"""The live relational schema, as SQLAlchemy Core tables.

Repositories query these. Migrations (``migrations/versions``) never import this module: each
carries its own frozen DDL, and ``tests/contract/store/test_migrations.py`` checks that a fresh
database migrated to the newest revision has exactly these tables, columns and indexes.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData()

# Ids and the columns naming them are 64-bit: the API accepts ids up to 2**53-1 and the CLI up
# to 2**63-1. SQLite's INTEGER already is (and must stay INTEGER: only ``INTEGER PRIMARY KEY``
# is the rowid); PostgreSQL's would be 32-bit (revision 0004 widens it there).
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# JSON documents; JSONB on PostgreSQL, so attribute and tag filters can use its operators.
Json = sa.JSON().with_variant(JSONB(), "postgresql")

# Tables whose ids leave the process (in URLs, API bodies, logs, index files) are AUTOINCREMENT:
# SQLite otherwise hands a deleted row's id (the largest) to the next insert, and the new row
# inherits whatever still points at the old one (saves, clicks, cached thumbnails, audit lines).
NEVER_REUSED = (
    "pins",
    "changes",
    "quarantine",
    "tokens",
    "audit_log",
    "users",
    "boards",
    "events",
    "artefacts",
)

pins = sa.Table(
    "pins",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("content_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("phash", sa.String(16), nullable=False, server_default=""),
    sa.Column("title", sa.Text, nullable=False, server_default=""),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("link", sa.Text, nullable=False, server_default=""),
    sa.Column("board", sa.Text, nullable=False, server_default=""),
    sa.Column("tags", Json, nullable=False),
    sa.Column("labels", Json, nullable=False),
    sa.Column("attributes", Json, nullable=False),
    sa.Column("source", sa.Text, nullable=False, server_default=""),
    sa.Column("width", sa.Integer, nullable=False, server_default="0"),
    sa.Column("height", sa.Integer, nullable=False, server_default="0"),
    sa.Column("format", sa.String(16), nullable=False, server_default=""),
    sa.Column("dup_group", Id, nullable=True),
    sa.Column("thumbnail", sa.LargeBinary, nullable=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
    sa.Index("ix_pins_board", "board"),
    sa.Index("ix_pins_phash", "phash"),
    # Tag filters (``tags @> '["red"]'``) on PostgreSQL; SQLite scans its JSON.
    sa.Index("ix_pins_tags", "tags", postgresql_using="gin").ddl_if(dialect="postgresql"),
    sqlite_autoincrement=True,
)

# One row per (pin, vector space). Raw vectors live here so any index can be rebuilt from the store.
vectors = sa.Table(
    "vectors",
    metadata,
    sa.Column("pin_id", Id, sa.ForeignKey("pins.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("space", sa.String(16), primary_key=True),
    sa.Column("model_id", sa.String(64), nullable=False),
    sa.Column("dim", sa.Integer, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
)

# Append-only change log: indexes remember the last seq they applied (their watermark) and
# replay the rest on open, so a crash between the store commit and the index save loses nothing.
changes = sa.Table(
    "changes",
    metadata,
    sa.Column("seq", Id, primary_key=True, autoincrement=True),
    sa.Column("pin_id", Id, nullable=False),
    sa.Column("op", sa.String(8), nullable=False),  # "upsert" | "delete"
    sqlite_autoincrement=True,
)

# Which source reference produced which pin: a resumed ingest skips finished work by reference.
sources = sa.Table(
    "sources",
    metadata,
    sa.Column("ref", sa.Text, primary_key=True),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("pin_id", Id, nullable=True),
)

ingest_runs = sa.Table(
    "ingest_runs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("started_at", sa.String(32), nullable=False),
    sa.Column("finished_at", sa.String(32), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("counts", Json, nullable=False),
)

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), nullable=False, index=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sqlite_autoincrement=True,
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("revoked_at", sa.String(32), nullable=True),
    sqlite_autoincrement=True,
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("token_id", Id, nullable=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    sqlite_autoincrement=True,
)

kv = sa.Table(
    "kv",
    metadata,
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("value", Json, nullable=False),
)

# ---- users, boards, saves and engagement
users = sa.Table(
    "users",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("handle", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.String(32), nullable=False),
    sqlite_autoincrement=True,
)

boards = sa.Table(
    "boards",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("user_id", Id, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.UniqueConstraint("user_id", "name", name="uq_board_user_name"),
    sqlite_autoincrement=True,
)

board_pins = sa.Table(
    "board_pins",
    metadata,
    sa.Column("board_id", Id, sa.ForeignKey("boards.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("pin_id", Id, sa.ForeignKey("pins.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("saved_at", sa.String(32), nullable=False),
    sa.Index("ix_board_pins_pin", "pin_id"),
)

# Engagement log. ``key`` makes delivery idempotent: a retried batch inserts nothing twice.
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(64), nullable=False, unique=True),
    sa.Column("user_id", Id, nullable=False),
    sa.Column("pin_id", Id, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("dwell_ms", sa.Float, nullable=False, server_default="0"),
    sa.Column("surface", sa.String(32), nullable=False, server_default=""),
    sa.Column("position", Id, nullable=True),  # 64-bit like the ids: logged as sent
    sa.Column("request_id", sa.String(64), nullable=False, server_default=""),
    sa.Index("ix_events_user_ts", "user_id", "ts"),
    sa.Index("ix_events_pin", "pin_id"),
    sqlite_autoincrement=True,
)

# ---- artefacts: files any node can fetch (revision 0005)
# One row per published (name, digest); the bytes are kept once per digest, in chunks.
artefacts = sa.Table(
    "artefacts",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("chunks", sa.Integer, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("provenance", Json, nullable=False),
    sa.UniqueConstraint("name", "digest", name="uq_artefact_name_digest"),
    sa.Index("ix_artefacts_digest", "digest"),
    sqlite_autoincrement=True,
)

artefact_chunks = sa.Table(
    "artefact_chunks",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)
