"""Alembic environment: migrations run on the connection the store hands over.

No ``target_metadata``: revisions carry their own frozen DDL and nothing here reads the live
schema (``tests/contract/store/test_migrations.py`` compares the two instead).
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only when someone runs the alembic CLI by hand
    raise RuntimeError("run migrations through tastegraph.store.open_store()")
context.configure(connection=connection, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
