"""The attestation path's lean transactions and prepared statements; SQLite writers queue in
the process, reads take no write lock, kept connections close with their engine."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from sevlaunch.broker import db, store
from sevlaunch.broker.schema import audit, workloads


def _audit_count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(audit)).scalar_one())


def _add_audit(tx: db.Tx) -> None:
    store.add_audit(tx, at=1.0, instance="i", actor="owner", action="a", outcome="ok")


def _abandon(engine: sa.Engine) -> None:
    with db.lean_transaction(engine) as tx:
        _add_audit(tx)
        raise RuntimeError("abandoned")


def test_lean_transaction_commits_and_rolls_back(db_url: str) -> None:
    engine = db.create_engine(db_url)
    try:
        db.upgrade(engine)
        with db.lean_transaction(engine) as tx:
            _add_audit(tx)
        with pytest.raises(RuntimeError):
            _abandon(engine)
        assert _audit_count(engine) == 1
    finally:
        engine.dispose()


def test_driver_errors_arrive_as_sqlalchemy_errors(sqlite_url: str) -> None:
    engine = db.create_engine(sqlite_url)
    try:
        db.upgrade(engine)
        row = store.LaunchRow(
            "0" * 32, "none", 3, "f", b"k", store.AWAITING, None, 1, 2, None, "i", None
        )
        with pytest.raises(sa.exc.IntegrityError), db.lean_transaction(engine) as tx:
            store.add_launch(tx, row)  # no such workload: the foreign key refuses it
    finally:
        engine.dispose()


def test_statements_needing_type_processing_are_refused() -> None:
    with pytest.raises(TypeError, match="policies"):
        db.Prepared(sa.select(workloads.c.policies))
    with pytest.raises(TypeError, match="bindparam"):
        db.Prepared(sa.select(workloads.c.name).where(workloads.c.name == "web")).rows(
            _FakeTx(), {}
        )


class _FakeTx(db.Lean):
    def __init__(self) -> None:
        super().__init__(sa.create_engine("sqlite://").dialect, None)


@pytest.fixture
def impatient(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[sa.Engine]:
    """An engine whose SQLite busy handler gives up at once: any wait is the broker's own."""
    monkeypatch.setattr(db, "SQLITE_BUSY_MS", 0)
    engine = db.create_engine(sqlite_url)
    db.upgrade(engine)
    yield engine
    engine.dispose()


def test_writers_of_one_process_queue_on_their_own_lock(impatient: sa.Engine) -> None:
    """With no busy handler, a second writer would fail with 'database is locked'; it waits
    for the first instead, and both commit."""
    holding, failures = threading.Event(), []

    def first() -> None:
        with db.writing(impatient) as conn:
            _add_audit(conn)
            holding.set()
            time.sleep(0.2)  # the second writer arrives meanwhile

    def second() -> None:
        holding.wait()
        try:
            with db.lean_transaction(impatient) as tx:
                _add_audit(tx)
        except sa.exc.OperationalError as exc:
            failures.append(exc)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert _audit_count(impatient) == 2


def test_reads_take_no_write_lock(impatient: sa.Engine) -> None:
    with db.writing(impatient) as conn:
        _add_audit(conn)
        with db.reading(impatient) as reader:  # BEGIN IMMEDIATE here would be refused
            assert reader.execute(sa.select(sa.func.count()).select_from(audit)).scalar() == 0
        with db.lean_read(impatient) as tx:
            assert store.generation(tx)


def test_kept_connections_close_with_the_engine(sqlite_url: str) -> None:
    engine = db.create_engine(sqlite_url)
    db.upgrade(engine)
    with db.lean_transaction(engine) as tx:
        _add_audit(tx)
        kept = tx.driver
    with db.lean_read(engine) as again:
        assert again.driver is kept  # the same connection, not one from the pool
    engine.dispose()
    with pytest.raises(sqlite3.ProgrammingError):
        kept.execute("SELECT 1")
