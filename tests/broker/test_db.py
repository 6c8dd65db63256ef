"""The attestation path's lean transactions and prepared statements."""

from __future__ import annotations

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
