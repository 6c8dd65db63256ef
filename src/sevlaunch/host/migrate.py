"""The host store's schema migrations (alembic, as the broker's), including the adoption of a
database made before migrations existed.

Such a database has the three tables and no ``alembic_version``; the oldest ones also lack
columns added later (``sev_handle``). :func:`upgrade` adds what is missing, stamps it at
revision 0001 and upgrades from there, in one transaction, so every row is kept.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BASELINE = "0001"
# Columns a pre-migration database may lack, with the DDL that adds them (all nullable).
_LATE_COLUMNS = {("domains", "sev_handle"): "INTEGER"}


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``; idempotent."""
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        if _is_unversioned(conn):
            _add_late_columns(conn)
            command.stamp(config, BASELINE)
        command.upgrade(config, revision)


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _is_unversioned(conn: sa.Connection) -> bool:
    """A database from before migrations: our tables, but no revision recorded."""
    tables = set(sa.inspect(conn).get_table_names())
    return "domains" in tables and "alembic_version" not in tables


def _add_late_columns(conn: sa.Connection) -> None:
    inspector = sa.inspect(conn)
    for (table, column), kind in _LATE_COLUMNS.items():
        present = {c["name"] for c in inspector.get_columns(table)}
        if column not in present:
            conn.exec_driver_sql(f'ALTER TABLE {table} ADD COLUMN "{column}" {kind}')
