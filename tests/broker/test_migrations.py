"""The packaged migrations build exactly the schema the code queries, and re-running is a no-op."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from sevlaunch.broker import db
from sevlaunch.broker.schema import metadata


def test_upgrade_matches_metadata_and_is_idempotent(db_url: str) -> None:
    engine = db.create_engine(db_url)
    try:
        assert db.current_revision(engine) is None
        db.upgrade(engine)
        db.upgrade(engine)
        assert db.current_revision(engine) == "0002"
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []
        assert set(sa.inspect(engine).get_table_names()) >= {
            "trust_roots",
            "workloads",
            "workload_secrets",
            "launches",
            "chain_cache",
            "audit",
        }
    finally:
        engine.dispose()


def test_sqlite_runs_in_wal_mode(sqlite_url: str) -> None:
    engine = db.create_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()
