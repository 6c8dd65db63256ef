"""The packaged migrations build exactly the schema the code queries, re-running is a no-op, and
an older database upgrades in place with its rows."""

from __future__ import annotations

import base64

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from sevlaunch.broker import db
from sevlaunch.broker.schema import launches, metadata
from sevlaunch.broker.service import Broker, Settings
from tests.broker.conftest import DIGEST, KEK, POLICY
from tests.broker.fakeplatform import FakePlatform


def test_upgrade_matches_metadata_and_is_idempotent(db_url: str) -> None:
    engine = db.create_engine(db_url)
    try:
        assert db.current_revision(engine) is None
        db.upgrade(engine)
        db.upgrade(engine)
        assert db.current_revision(engine) == "0004"
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
            "launchers",
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


def _insert_v2_launch(conn: sa.Connection, launch_id: str, state: str, reason: str | None) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO launches (id, workload, policy, platform, sealed_keys, state, reason, "
            "created_at, expires_at, finished_at, created_by, finished_by) VALUES (:id, 'web', "
            "3, 'fp', :keys, :state, :reason, 1.0, 601.0, NULL, 'old', NULL)"
        ),
        {
            "id": launch_id,
            "keys": b"sealed-" + launch_id.encode(),
            "state": state,
            "reason": reason,
        },
    )


def test_a_revision_0002_database_upgrades_in_place(db_url: str, platform: FakePlatform) -> None:
    """Launches of an older broker get the default launcher; the old 'refused (expired)' is
    'expired'; keys of settled launches are erased, the open launch keeps its own; then the
    token file's launcher starts and finishes a launch."""
    engine = db.create_engine(db_url)
    try:
        db.upgrade(engine, "0002")
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO workloads (name, policies, digests, min_api_major, "
                    "min_api_minor, min_build, created_at) VALUES ('web', :p, :d, 0, 0, 0, 1.0)"
                ),
                {"p": f"[{POLICY}]", "d": f'["{DIGEST.hex()}"]'},
            )
            for launch_id, state, reason in (
                ("a" * 32, "released", None),
                ("b" * 32, "refused", "expired"),
                ("c" * 32, "refused", "measurement-mismatch"),
                ("d" * 32, "measuring", None),
                ("e" * 32, "awaiting-measurement", None),
            ):
                _insert_v2_launch(conn, launch_id, state, reason)
        db.upgrade(engine)
        assert db.current_revision(engine) == "0004"
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(launches.c.id, launches.c.state, launches.c.reason, launches.c.launcher,
                          launches.c.sealed_keys).order_by(launches.c.id)
            ).all()  # fmt: skip
        sealed = [None if r[4] is None else bytes(r[4]) for r in rows]
        assert [(r[0][0], r[1], r[2], r[3], k) for r, k in zip(rows, sealed, strict=True)] == [
            ("a", "released", None, "default", None),
            ("b", "expired", "expired", "default", None),
            ("c", "refused", "measurement-mismatch", "default", None),
            ("d", "refused", "interrupted", "default", None),
            ("e", "awaiting-measurement", None, "default", b"sealed-" + b"e" * 32),
        ]
        broker = Broker(engine, KEK, Settings(instance="new"), clock=lambda: 100.0)
        broker.add_root(platform.ca_file, "lab")
        broker.ensure_default_launcher(b"the-token-file-token-0123456789")
        started = broker.start_launch("web", platform.pdh.to_bytes(), platform.node.cert_chain)
        keys = platform.launch_start(
            base64.b64encode(started.godh).decode(),
            base64.b64encode(started.session).decode(),
            POLICY,
        )
        report = platform.launch_info(platform.launch_measure(keys, DIGEST, POLICY), POLICY)
        assert broker.finish_launch(started.id, report).id == started.id
    finally:
        engine.dispose()
