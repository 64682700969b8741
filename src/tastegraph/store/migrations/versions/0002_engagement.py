"""Users, boards, saves and the engagement event log."""

from __future__ import annotations

from alembic import op

from tastegraph.store.schema import TABLES_0002, metadata

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    metadata.create_all(op.get_bind(), tables=list(TABLES_0002))


def downgrade() -> None:
    metadata.drop_all(op.get_bind(), tables=list(TABLES_0002))
