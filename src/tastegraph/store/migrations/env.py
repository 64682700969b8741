"""Alembic environment: migrations run on the connection the store hands over."""

from __future__ import annotations

from alembic import context

from tastegraph.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only when someone runs the alembic CLI by hand
    raise RuntimeError("run migrations through tastegraph.store.open_store()")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
