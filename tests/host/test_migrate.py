"""Host-store migrations: a fresh database gets exactly the schema the code queries, and a
database made by the version before migrations (both of its shapes) upgrades in place."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from sevlaunch.host import migrate
from sevlaunch.host.schema import metadata
from sevlaunch.host.secrets import Secret
from sevlaunch.host.secretstore import SecretStore
from sevlaunch.host.store import Store

# The DDL SQLAlchemy's create_all emitted for the host store up to 081c8e4 (no migrations);
# the first releases had the same tables without domains.sev_handle.
LANDED_SCHEMA = """
CREATE TABLE domains (
    uuid VARCHAR(36) NOT NULL, name VARCHAR(255) NOT NULL, xml TEXT NOT NULL,
    state VARCHAR(16) NOT NULL, reason VARCHAR(32) NOT NULL, pid INTEGER, run_dir TEXT,
    launch INTEGER NOT NULL, sev_handle INTEGER, PRIMARY KEY (uuid), UNIQUE (name));
CREATE TABLE timeline (
    id INTEGER NOT NULL, domain VARCHAR(36) NOT NULL, launch INTEGER NOT NULL,
    step INTEGER NOT NULL, name VARCHAR(64) NOT NULL, party VARCHAR(32) NOT NULL,
    started FLOAT NOT NULL, duration FLOAT, outcome VARCHAR(16) NOT NULL, detail TEXT NOT NULL,
    PRIMARY KEY (id));
CREATE INDEX ix_timeline_domain ON timeline (domain);
CREATE TABLE secrets (
    uuid VARCHAR(36) NOT NULL, xml TEXT NOT NULL, has_value BOOLEAN NOT NULL,
    PRIMARY KEY (uuid));
"""
DOMAIN = "0b6a2d3e-1111-4c2e-9a5e-000000000001"
SECRET = "0b6a2d3e-1111-4c2e-9a5e-0000000000aa"


def _old_database(state: Path, *, with_sev_handle: bool) -> None:
    state.mkdir(mode=0o700)
    schema = LANDED_SCHEMA if with_sev_handle else LANDED_SCHEMA.replace(" sev_handle INTEGER,", "")
    with sqlite3.connect(state / "host.db") as db:
        db.executescript(schema)
        values = "?, ?, ?, ?, ?, ?, ?, ?" + (", ?" if with_sev_handle else "")
        row = [DOMAIN, "old-vm", "<domain/>", "paused", "user", 4242, "/run/x", 3]
        db.execute(f"INSERT INTO domains VALUES ({values})", [*row, 9][: values.count("?")])
        db.execute(
            "INSERT INTO timeline VALUES (1, ?, 3, 8, 'hypervisor started paused (-S)',"
            " 'hypervisor', 1.5, 0.25, 'ok', 'pid 4242')",
            [DOMAIN],
        )
        xml = Secret(private=True, description="godh").to_xml()
        db.execute("INSERT INTO secrets VALUES (?, ?, 1)", [SECRET, xml])
    secret_dir = state / "secrets"
    secret_dir.mkdir(mode=0o700)
    (secret_dir / f"{SECRET}.value").write_bytes(b"godh blob")


def _schema_diff(engine: sa.Engine) -> list[object]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))


def test_a_fresh_database_matches_the_metadata_and_upgrading_again_is_a_no_op(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "state")
    migrate.upgrade(store.engine)
    assert migrate.current_revision(store.engine) == "0002"
    assert _schema_diff(store.engine) == []
    store.close()


def test_a_database_from_the_landed_version_upgrades_in_place(tmp_path: Path) -> None:
    for with_sev_handle in (True, False):
        state = tmp_path / f"state-{with_sev_handle}"
        _old_database(state, with_sev_handle=with_sev_handle)
        store = Store(state)
        try:
            assert migrate.current_revision(store.engine) == "0002"
            assert _schema_diff(store.engine) == []
            row = store.domain("old-vm")
            assert row is not None
            assert (row.uuid, row.state, row.reason, row.pid, row.launch) == (
                DOMAIN, "paused", "user", 4242, 3,
            )  # fmt: skip
            assert row.sev_handle == (9 if with_sev_handle else None)
            steps = store.steps(DOMAIN, 3)
            assert [(s.step, s.detail, s.duration) for s in steps] == [(8, "pid 4242", 0.25)]
            secrets = SecretStore(store)
            (secret,) = secrets.list()
            assert str(secret.uuid) == SECRET
            assert secret.private
            assert secrets.value(uuid.UUID(SECRET)) == b"godh blob"
            store.add_step(DOMAIN, 4, 6, "launch blobs received", "VM tool", "ok")
            assert [s.launch for s in store.steps(DOMAIN)] == [3, 4]
        finally:
            store.close()
