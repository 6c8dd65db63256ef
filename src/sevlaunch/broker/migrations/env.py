"""Alembic environment: runs on the connection :func:`sevlaunch.broker.db.upgrade` passes."""

from __future__ import annotations

from alembic import context

from sevlaunch.broker.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the broker's migrations through sevlaunch.broker.db.upgrade")
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
