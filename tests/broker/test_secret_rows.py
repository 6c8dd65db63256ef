"""Sealed secret rows for SEV and SNP workloads alike: set, replace, list by workload, remove,
and a missing one named with its kind of workload; the two tables never mix."""

from __future__ import annotations

from pathlib import Path

import pytest

from sevlaunch.broker import db, secret_rows
from sevlaunch.broker.schema import snp_secrets, snp_workloads, workload_secrets, workloads
from sevlaunch.errors import NotFoundError


def test_secret_rows_of_either_table(tmp_path: Path) -> None:
    engine = db.create_engine(f"sqlite:///{tmp_path / 'b.db'}")
    db.upgrade(engine)
    try:
        with engine.begin() as conn:
            conn.execute(
                workloads.insert().values(
                    name="web", policies=[3], digests=["00" * 32], min_api_major=0,
                    min_api_minor=0, min_build=0, created_at=1.0,
                )
            )  # fmt: skip
            conn.execute(snp_workloads.insert().values(name="web", expectations="{}", created_at=1))
            secret_rows.upsert(conn, workload_secrets, "web", "g2", b"sev", 1.0)
            secret_rows.upsert(conn, snp_secrets, "web", "g1", b"one", 1.0)
            secret_rows.upsert(conn, snp_secrets, "web", "g1", b"two", 2.0)  # replaced
            secret_rows.upsert(conn, snp_secrets, "web", "g0", b"zero", 2.0)
            assert secret_rows.guids_by_workload(conn, snp_secrets) == {"web": ["g0", "g1"]}
            assert secret_rows.guids_by_workload(conn, workload_secrets) == {"web": ["g2"]}
            sealed = conn.execute(snp_secrets.select().where(snp_secrets.c.guid == "g1")).one()
            assert (sealed.sealed, sealed.updated_at) == (b"two", 2.0)
            secret_rows.delete(conn, snp_secrets, "web", "g1", "SNP workload")
            with pytest.raises(NotFoundError, match=r"SNP workload 'web' has no secret .* g2"):
                secret_rows.delete(conn, snp_secrets, "web", "g2", "SNP workload")
            assert secret_rows.guids_by_workload(conn, snp_secrets) == {"web": ["g0"]}
    finally:
        engine.dispose()
