"""Alembic environment: runs on the connection :func:`sevlaunch.host.migrate.upgrade` passes."""

from __future__ import annotations

from alembic import context

from sevlaunch.host.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the host store's migrations through sevlaunch.host.migrate.upgrade")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
