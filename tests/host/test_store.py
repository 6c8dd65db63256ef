"""The host manager's SQLite store: WAL, lookups by name or UUID, the timeline, secret values
kept in 0600 files and never listed."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from sevlaunch.host.store import DomainRow, Store

UUID_A = "0b6a2d3e-1111-4c2e-9a5e-000000000001"
UUID_B = "0b6a2d3e-1111-4c2e-9a5e-000000000002"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "state")


def test_database_is_wal_and_private(store: Store) -> None:
    db = store.state_dir / "host.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.state_dir.stat().st_mode) == 0o700
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_domains_by_name_or_uuid_and_runtime_updates(store: Store) -> None:
    store.put_domain(UUID_B, "beta", "<domain/>")
    store.put_domain(UUID_A, "alpha", "<domain/>")
    assert [r.name for r in store.domain_rows()] == ["alpha", "beta"]
    assert store.domain("alpha") == store.domain(UUID_A)
    assert store.domain("gamma") is None
    store.set_runtime(UUID_A, state="running", reason="unpaused", pid=42, sev_handle=7)
    row = store.domain("alpha")
    assert row == DomainRow(UUID_A, "alpha", "<domain/>", "running", "unpaused", 42, None, 0, 7)
    store.put_domain(UUID_A, "alpha", "<domain>v2</domain>")  # redefine keeps runtime state
    updated = store.domain(UUID_A)
    assert updated is not None
    assert (updated.xml, updated.state) == ("<domain>v2</domain>", "running")
    store.delete_domain(UUID_A)
    assert store.domain(UUID_A) is None


def test_state_survives_reopening(tmp_path: Path) -> None:
    first = Store(tmp_path / "s")
    first.put_domain(UUID_A, "alpha", "<domain/>")
    first.add_step(UUID_A, 1, 8, "hypervisor started paused (-S)", "hypervisor", "ok")
    first.close()
    second = Store(tmp_path / "s")
    assert second.domain("alpha") is not None
    assert [s.step for s in second.steps(UUID_A)] == [8]


def test_timeline_in_order_per_launch(store: Store) -> None:
    store.put_domain(UUID_A, "alpha", "<domain/>")
    for launch, step in ((1, 8), (1, 9), (2, 8), (2, 12), (2, 13)):
        store.add_step(
            UUID_A, launch, step, f"step {step}", "host", "ok", started=1.0, duration=0.5
        )
    assert [s.step for s in store.steps(UUID_A)] == [8, 9, 8, 12, 13]
    second = store.steps(UUID_A, 2)
    assert [s.step for s in second] == [8, 12, 13]
    assert second[0].as_dict() == {
        "launch": 2,
        "step": 8,
        "name": "step 8",
        "party": "host",
        "started": 1.0,
        "duration": 0.5,
        "outcome": "ok",
        "detail": "",
    }
    store.delete_domain(UUID_A)
    assert store.steps(UUID_A) == []


def test_secret_values_live_in_private_files_and_are_never_listed(store: Store) -> None:
    store.save_secret(UUID_A, "<secret/>")
    assert list(store.saved_secrets()) == [(UUID_A, "<secret/>", False)]
    assert store.saved_value(UUID_A) is None
    store.save_value(UUID_A, b"\x00godh bytes")
    assert list(store.saved_secrets()) == [(UUID_A, "<secret/>", True)]
    value_file = store.secret_dir / f"{UUID_A}.value"
    assert stat.S_IMODE(value_file.stat().st_mode) == 0o600
    assert store.saved_value(UUID_A) == b"\x00godh bytes"
    assert b"godh bytes" not in (store.state_dir / "host.db").read_bytes()
    store.forget_secret(UUID_A)
    assert not value_file.exists()
    assert list(store.saved_secrets()) == []
