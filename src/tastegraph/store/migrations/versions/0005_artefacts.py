"""Artefacts in the database: the trained feed model, the whitening projection, any file a
serving process needs, fetched by digest from whichever machine wrote it.

``artefacts`` names each published version (name, SHA-256 of the bytes, size, provenance);
``artefact_chunks`` holds the bytes once per digest, in chunks (a trained model is tens of
MB: no single value that large has to pass through a driver at once). Both backends.

Frozen: the columns are written out here, never read from ``schema.py``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005_artefacts"
down_revision = "0004_postgresql_types"

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "artefacts",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("chunks", sa.Integer, nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("provenance", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.UniqueConstraint("name", "digest", name="uq_artefact_name_digest"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_artefacts_digest", "artefacts", ["digest"])
    op.create_table(
        "artefact_chunks",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("artefact_chunks")
    op.drop_table("artefacts")
