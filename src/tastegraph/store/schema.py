"""The live relational schema, as SQLAlchemy Core tables.

Repositories query these. Migrations (``migrations/versions``) never import this module: each
carries its own frozen DDL, and ``tests/contract/store/test_migrations.py`` checks that a fresh
database migrated to the newest revision has exactly these tables, columns and indexes.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# Tables whose ids leave the process (in URLs, API bodies, logs, index files) are AUTOINCREMENT:
# SQLite otherwise hands a deleted row's id (the largest) to the next insert, and the new row
# inherits whatever still points at the old one (saves, clicks, cached thumbnails, audit lines).
NEVER_REUSED = ("pins", "changes", "quarantine", "tokens", "audit_log", "users", "boards", "events")

pins = sa.Table(
    "pins",
    metadata,
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
    sa.Index("ix_pins_board", "board"),
    sa.Index("ix_pins_phash", "phash"),
    sqlite_autoincrement=True,
)

# One row per (pin, vector space). Raw vectors live here so any index can be rebuilt from the store.
vectors = sa.Table(
    "vectors",
    metadata,
    sa.Column("pin_id", sa.Integer, sa.ForeignKey("pins.id", ondelete="CASCADE"), primary_key=True),
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
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("pin_id", sa.Integer, nullable=False),
    sa.Column("op", sa.String(8), nullable=False),  # "upsert" | "delete"
    sqlite_autoincrement=True,
)

# Which source reference produced which pin: a resumed ingest skips finished work by reference.
sources = sa.Table(
    "sources",
    metadata,
    sa.Column("ref", sa.Text, primary_key=True),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("pin_id", sa.Integer, nullable=True),
)

ingest_runs = sa.Table(
    "ingest_runs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("started_at", sa.String(32), nullable=False),
    sa.Column("finished_at", sa.String(32), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("counts", sa.JSON, nullable=False),
)

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
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
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
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
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("token_id", sa.Integer, nullable=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    sqlite_autoincrement=True,
)

kv = sa.Table(
    "kv",
    metadata,
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("value", sa.JSON, nullable=False),
)

# ---- users, boards, saves and engagement
users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("handle", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.String(32), nullable=False),
    sqlite_autoincrement=True,
)

boards = sa.Table(
    "boards",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.UniqueConstraint("user_id", "name", name="uq_board_user_name"),
    sqlite_autoincrement=True,
)

board_pins = sa.Table(
    "board_pins",
    metadata,
    sa.Column(
        "board_id", sa.Integer, sa.ForeignKey("boards.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("pin_id", sa.Integer, sa.ForeignKey("pins.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("saved_at", sa.String(32), nullable=False),
    sa.Index("ix_board_pins_pin", "pin_id"),
)

# Engagement log. ``key`` makes delivery idempotent: a retried batch inserts nothing twice.
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String(64), nullable=False, unique=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("pin_id", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("dwell_ms", sa.Float, nullable=False, server_default="0"),
    sa.Column("surface", sa.String(32), nullable=False, server_default=""),
    sa.Column("position", sa.Integer, nullable=True),
    sa.Column("request_id", sa.String(64), nullable=False, server_default=""),
    sa.Index("ix_events_user_ts", "user_id", "ts"),
    sa.Index("ix_events_pin", "pin_id"),
    sqlite_autoincrement=True,
)
