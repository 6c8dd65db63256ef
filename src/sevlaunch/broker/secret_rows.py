"""Sealed secrets rows, for SEV's ``workload_secrets`` and SNP's ``snp_secrets`` alike: one
table of (workload, GUID, sealed blob, updated_at), whichever kind of workload owns it."""

from __future__ import annotations

import sqlalchemy as sa

from sevlaunch.errors import NotFoundError


def upsert(
    conn: sa.Connection, table: sa.Table, workload: str, guid: str, sealed: bytes, now: float
) -> None:
    """Set (or replace) one secret; the caller has checked the workload exists."""
    where = (table.c.workload == workload) & (table.c.guid == guid)
    values = {"sealed": sealed, "updated_at": now}
    if conn.execute(sa.update(table).where(where).values(**values)).rowcount == 0:
        conn.execute(sa.insert(table).values(workload=workload, guid=guid, **values))


def delete(conn: sa.Connection, table: sa.Table, workload: str, guid: str, kind: str) -> None:
    """Remove one secret, or NotFoundError naming ``kind`` of workload."""
    where = (table.c.workload == workload) & (table.c.guid == guid)
    if conn.execute(sa.delete(table).where(where)).rowcount == 0:
        raise NotFoundError("no-such-secret", f"{kind} {workload!r} has no secret with GUID {guid}")


def guids_by_workload(conn: sa.Connection, table: sa.Table) -> dict[str, list[str]]:
    """Every workload's secret GUIDs, sorted."""
    found: dict[str, list[str]] = {}
    for name, guid in conn.execute(
        sa.select(table.c.workload, table.c.guid).order_by(table.c.guid)
    ):
        found.setdefault(name, []).append(guid)
    return found
