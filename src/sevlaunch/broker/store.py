"""Rows in and out: small functions over one SQLAlchemy connection, frozen records back.

No key material leaves this module in plaintext because none enters it: launch keys and
secrets arrive sealed (see :mod:`sevlaunch.broker.seal`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from sevlaunch.broker.schema import audit, chain_cache, launches, trust_roots, workload_secrets
from sevlaunch.broker.schema import workloads as workloads_t
from sevlaunch.errors import ConflictError, NotFoundError

AWAITING = "awaiting-measurement"
MEASURING = "measuring"
RELEASED = "released"
REFUSED = "refused"


@dataclass(frozen=True)
class TrustRootRow:
    name: str
    fingerprint: str
    key_id: str
    amd: bool
    ark: bytes = field(repr=False)
    ask: bytes | None = field(repr=False)
    created_at: float


@dataclass(frozen=True)
class WorkloadRow:
    name: str
    policies: tuple[int, ...]
    digests: tuple[str, ...]
    min_api_major: int
    min_api_minor: int
    min_build: int
    created_at: float
    secret_guids: tuple[str, ...] = ()


@dataclass(frozen=True)
class LaunchRow:
    id: str
    workload: str
    policy: int
    platform: str
    sealed_keys: bytes = field(repr=False)
    state: str
    reason: str | None
    created_at: float
    expires_at: float
    finished_at: float | None
    created_by: str
    finished_by: str | None


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: float
    instance: str
    actor: str
    action: str
    outcome: str
    reason: str | None
    workload: str | None
    launch: str | None
    detail: dict[str, Any] | None


def _is_unique_violation(exc: sa.exc.IntegrityError) -> bool:
    text = str(exc.orig).lower()
    return "unique" in text or "duplicate" in text


# -- trust roots -------------------------------------------------------------------------------


def add_root(conn: sa.Connection, row: TrustRootRow) -> None:
    try:
        with conn.begin_nested():
            conn.execute(sa.insert(trust_roots).values(**row.__dict__))
    except sa.exc.IntegrityError as exc:
        if not _is_unique_violation(exc):
            raise
        raise ConflictError(
            "root-exists",
            f"a trust root named {row.name!r} or with key fingerprint {row.fingerprint} is "
            "already registered; remove it first to replace it",
        ) from None
    conn.execute(sa.delete(chain_cache))


def remove_root(conn: sa.Connection, name: str) -> None:
    if conn.execute(sa.delete(trust_roots).where(trust_roots.c.name == name)).rowcount == 0:
        raise NotFoundError("no-such-root", f"no trust root named {name!r}")
    conn.execute(sa.delete(chain_cache))


def list_roots(conn: sa.Connection) -> list[TrustRootRow]:
    rows = conn.execute(sa.select(trust_roots).order_by(trust_roots.c.name)).mappings()
    return [TrustRootRow(**r) for r in rows]


# -- workloads ---------------------------------------------------------------------------------


def add_workload(conn: sa.Connection, row: WorkloadRow) -> None:
    values = {**row.__dict__, "policies": list(row.policies), "digests": list(row.digests)}
    del values["secret_guids"]
    try:
        with conn.begin_nested():
            conn.execute(sa.insert(workloads_t).values(**values))
    except sa.exc.IntegrityError as exc:
        if not _is_unique_violation(exc):
            raise
        raise ConflictError(
            "workload-exists",
            f"a workload named {row.name!r} exists; remove it first or pick another name",
        ) from None


def get_workload(conn: sa.Connection, name: str, *, with_secrets: bool = True) -> WorkloadRow:
    """A workload; ``with_secrets=False`` skips listing its secret GUIDs."""
    row = conn.execute(_SELECT_WORKLOAD, {"name": name}).mappings().first()
    if row is None:
        raise NotFoundError("no-such-workload", f"no workload named {name!r}")
    if not with_secrets:
        return _workload(row, ())
    guids = conn.execute(
        sa.select(workload_secrets.c.guid)
        .where(workload_secrets.c.workload == name)
        .order_by(workload_secrets.c.guid)
    ).scalars()
    return _workload(row, tuple(guids))


def _workload(row: sa.RowMapping, guids: tuple[str, ...]) -> WorkloadRow:
    return WorkloadRow(
        name=row["name"],
        policies=tuple(int(p) for p in row["policies"]),
        digests=tuple(str(d) for d in row["digests"]),
        min_api_major=row["min_api_major"],
        min_api_minor=row["min_api_minor"],
        min_build=row["min_build"],
        created_at=row["created_at"],
        secret_guids=guids,
    )


def list_workloads(conn: sa.Connection) -> list[WorkloadRow]:
    guids: dict[str, list[str]] = {}
    for name, guid in conn.execute(
        sa.select(workload_secrets.c.workload, workload_secrets.c.guid).order_by(
            workload_secrets.c.guid
        )
    ):
        guids.setdefault(name, []).append(guid)
    rows = conn.execute(sa.select(workloads_t).order_by(workloads_t.c.name)).mappings()
    return [_workload(r, tuple(guids.get(r["name"], ()))) for r in rows]


def remove_workload(conn: sa.Connection, name: str) -> None:
    # Children first: SQLite enforces ON DELETE CASCADE only with foreign_keys=ON.
    conn.execute(sa.delete(workload_secrets).where(workload_secrets.c.workload == name))
    conn.execute(sa.delete(launches).where(launches.c.workload == name))
    if conn.execute(sa.delete(workloads_t).where(workloads_t.c.name == name)).rowcount == 0:
        raise NotFoundError("no-such-workload", f"no workload named {name!r}")


# -- secrets -----------------------------------------------------------------------------------


def set_secret(conn: sa.Connection, workload: str, guid: str, sealed: bytes, now: float) -> None:
    get_workload(conn, workload)
    where = (workload_secrets.c.workload == workload) & (workload_secrets.c.guid == guid)
    updated = conn.execute(
        sa.update(workload_secrets).where(where).values(sealed=sealed, updated_at=now)
    ).rowcount
    if updated == 0:
        conn.execute(
            sa.insert(workload_secrets).values(
                workload=workload, guid=guid, sealed=sealed, updated_at=now
            )
        )


def remove_secret(conn: sa.Connection, workload: str, guid: str) -> None:
    where = (workload_secrets.c.workload == workload) & (workload_secrets.c.guid == guid)
    if conn.execute(sa.delete(workload_secrets).where(where)).rowcount == 0:
        raise NotFoundError(
            "no-such-secret", f"workload {workload!r} has no secret with GUID {guid}"
        )


def sealed_secrets(conn: sa.Connection, workload: str) -> dict[str, bytes]:
    rows = conn.execute(_SELECT_SECRETS, {"name": workload})
    return {str(guid): bytes(sealed) for guid, sealed in rows}


# -- launches ----------------------------------------------------------------------------------


# Hot-path statements are built once: constructing Core statements per call costs more than
# running them on SQLite.
_INSERT_LAUNCH = launches.insert()
_SELECT_LAUNCH = sa.select(launches).where(launches.c.id == sa.bindparam("id"))
_CLAIM = (
    sa.update(launches)
    .where(
        (launches.c.id == sa.bindparam("b_id"))
        & (launches.c.state == AWAITING)
        & (launches.c.expires_at > sa.bindparam("b_now"))
    )
    .values(state=MEASURING, finished_by=sa.bindparam("b_instance"))
)
_FINISH = (
    sa.update(launches)
    .where(launches.c.id == sa.bindparam("b_id"))
    .values(
        state=sa.bindparam("b_state"),
        reason=sa.bindparam("b_reason"),
        finished_at=sa.bindparam("b_now"),
    )
)
_SELECT_WORKLOAD = sa.select(workloads_t).where(workloads_t.c.name == sa.bindparam("name"))
_SELECT_SECRETS = sa.select(workload_secrets.c.guid, workload_secrets.c.sealed).where(
    workload_secrets.c.workload == sa.bindparam("name")
)
_CACHED_ROOT = sa.select(chain_cache.c.root).where(
    (chain_cache.c.fingerprint == sa.bindparam("fp"))
    & (chain_cache.c.verified_at >= sa.bindparam("not_before"))
)
_INSERT_AUDIT = audit.insert()


def add_launch(conn: sa.Connection, row: LaunchRow) -> None:
    conn.execute(_INSERT_LAUNCH, row.__dict__)


def get_launch(conn: sa.Connection, launch_id: str) -> LaunchRow:
    row = conn.execute(_SELECT_LAUNCH, {"id": launch_id}).mappings().first()
    if row is None:
        raise NotFoundError("no-such-launch", f"no launch with id {launch_id}")
    return LaunchRow(**row)


def claim_launch(conn: sa.Connection, launch_id: str, now: float, instance: str) -> bool:
    """Move an unexpired launch from awaiting-measurement to measuring; at most one caller
    in the whole fleet wins, because the database applies the conditional UPDATE once."""
    result = conn.execute(_CLAIM, {"b_id": launch_id, "b_now": now, "b_instance": instance})
    return result.rowcount == 1


def finish_launch(
    conn: sa.Connection, launch_id: str, state: str, reason: str | None, now: float
) -> None:
    conn.execute(_FINISH, {"b_id": launch_id, "b_state": state, "b_reason": reason, "b_now": now})


def expire_launches(conn: sa.Connection, now: float) -> int:
    """Mark launches past their TTL as refused (reason ``expired``); how many there were."""
    return int(
        conn.execute(
            sa.update(launches)
            .where((launches.c.state == AWAITING) & (launches.c.expires_at <= now))
            .values(state=REFUSED, reason="expired", finished_at=now)
        ).rowcount
    )


# -- chain cache -------------------------------------------------------------------------------


def cached_root(conn: sa.Connection, fingerprint: str, not_before: float) -> str | None:
    return conn.execute(
        _CACHED_ROOT, {"fp": fingerprint, "not_before": not_before}
    ).scalar_one_or_none()


def cache_root(conn: sa.Connection, fingerprint: str, root: str, now: float) -> None:
    conn.execute(sa.delete(chain_cache).where(chain_cache.c.fingerprint == fingerprint))
    conn.execute(sa.insert(chain_cache).values(fingerprint=fingerprint, root=root, verified_at=now))


# -- audit -------------------------------------------------------------------------------------


def add_audit(
    conn: sa.Connection,
    *,
    at: float,
    instance: str,
    actor: str,
    action: str,
    outcome: str,
    reason: str | None = None,
    workload: str | None = None,
    launch: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    conn.execute(
        _INSERT_AUDIT,
        {
            "at": at,
            "instance": instance,
            "actor": actor,
            "action": action,
            "outcome": outcome,
            "reason": reason,
            "workload": workload,
            "launch": launch,
            "detail": json.dumps(dict(detail), sort_keys=True) if detail else None,
        },
    )


def list_audit(
    conn: sa.Connection,
    *,
    after: int = 0,
    limit: int = 100,
    workload: str | None = None,
    launch: str | None = None,
) -> Sequence[AuditRow]:
    query = sa.select(audit).where(audit.c.id > after)
    if workload is not None:
        query = query.where(audit.c.workload == workload)
    if launch is not None:
        query = query.where(audit.c.launch == launch)
    rows = conn.execute(query.order_by(audit.c.id).limit(limit)).mappings()
    return [
        AuditRow(**{**r, "detail": json.loads(r["detail"]) if r["detail"] else None}) for r in rows
    ]
