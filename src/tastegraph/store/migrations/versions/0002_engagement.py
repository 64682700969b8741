"""Users, boards, saves and the engagement event log.

Frozen like 0001: the DDL is written out here and never read from ``schema.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

_NEVER_REUSED = {"sqlite_autoincrement": True}


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("handle", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.String(32), nullable=False),
        **_NEVER_REUSED,
    )
    op.create_table(
        "boards",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.UniqueConstraint("user_id", "name", name="uq_board_user_name"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        **_NEVER_REUSED,
    )
    op.create_table(
        "board_pins",
        sa.Column("board_id", sa.Integer, primary_key=True),
        sa.Column("pin_id", sa.Integer, primary_key=True),
        sa.Column("saved_at", sa.String(32), nullable=False),
        sa.ForeignKeyConstraint(["board_id"], ["boards.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["pin_id"], ["pins.id"], ondelete="CASCADE"),
    )
    op.create_index("ix_board_pins_pin", "board_pins", ["pin_id"])
    op.create_table(
        "events",
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
        **_NEVER_REUSED,
    )
    op.create_index("ix_events_user_ts", "events", ["user_id", "ts"])
    op.create_index("ix_events_pin", "events", ["pin_id"])


def downgrade() -> None:
    for name in ("events", "board_pins", "boards", "users"):
        op.drop_table(name)
