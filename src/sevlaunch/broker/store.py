"""Rows in and out: small functions over one SQLAlchemy connection, frozen records back.

No key material leaves this module in plaintext because none enters it: launch keys and
secrets arrive sealed (see :mod:`sevlaunch.broker.seal`). Every change to trust roots or
workloads also replaces the catalog generation, in the same transaction (see
:mod:`sevlaunch.broker.catalog`). The statements an attestation runs are
:class:`~sevlaunch.broker.db.Prepared`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import sqlalchemy as sa

from sevlaunch.broker import secret_rows
from sevlaunch.broker.db import Prepared, Tx
from sevlaunch.broker.schema import (
    PENDING,
    audit,
    catalog,
    chain_cache,
    launches,
    trust_roots,
    workload_secrets,
)
from sevlaunch.broker.schema import workloads as workloads_t
from sevlaunch.errors import ConflictError, NotFoundError

AWAITING = "awaiting-measurement"
RELEASED = "released"
REFUSED = "refused"
EXPIRED = "expired"  # no measurement before expires_at: the sweeper or a late measurement
STATES = (AWAITING, RELEASED, REFUSED, EXPIRED)
DEFAULT_LAUNCHER = "default"
SWEEPER = "sweeper"  # the audit actor of expiries


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
    sealed_keys: bytes | None = field(repr=False)  # None once settled: TEK/TIK erased
    state: str
    reason: str | None
    created_at: float
    expires_at: float
    finished_at: float | None
    created_by: str
    finished_by: str | None
    launcher: str = DEFAULT_LAUNCHER


@dataclass(frozen=True)
class Finishing:
    """A launch as its measurement finds it, its workload's sealed secrets (GUID to blob) and
    the catalog generation, all read by one statement."""

    launch: LaunchRow
    sealed: Mapping[str, bytes] = field(repr=False)
    generation: str


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
    launcher: str | None = None


@dataclass(frozen=True)
class Expired:
    """A launch the sweeper expired (its keys erased in the same statement)."""

    id: str
    workload: str
    launcher: str


def _is_unique_violation(exc: sa.exc.IntegrityError) -> bool:
    text = str(exc.orig).lower()
    return "unique" in text or "duplicate" in text


# -- catalog generation ------------------------------------------------------------------------

CATALOG_ROW = 1
_GENERATION = Prepared(
    sa.select(catalog.c.generation).where(catalog.c.id == sa.bindparam("catalog_id"))
)


def generation(tx: Tx) -> str:
    """The current catalog generation token."""
    rows = _GENERATION.rows(tx, {"catalog_id": CATALOG_ROW})
    if not rows:
        raise sa.exc.InvalidRequestError(
            "the broker's catalog row is missing: run the migrations (sevlaunch broker serve "
            "upgrades the database at start)"
        )
    return str(rows[0][0])


def bump_generation(conn: sa.Connection) -> None:
    """Tell every broker process its copies of roots and workloads are stale. A random token,
    not a counter, so a database restored from a backup cannot repeat a generation."""
    conn.execute(
        sa.update(catalog).where(catalog.c.id == CATALOG_ROW).values(generation=uuid.uuid4().hex)
    )


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
        ) from exc
    conn.execute(sa.delete(chain_cache))
    bump_generation(conn)


def remove_root(conn: sa.Connection, name: str) -> None:
    if conn.execute(sa.delete(trust_roots).where(trust_roots.c.name == name)).rowcount == 0:
        raise NotFoundError("no-such-root", f"no trust root named {name!r}")
    conn.execute(sa.delete(chain_cache))
    bump_generation(conn)


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
        ) from exc
    bump_generation(conn)


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
    guids = secret_rows.guids_by_workload(conn, workload_secrets)
    rows = conn.execute(sa.select(workloads_t).order_by(workloads_t.c.name)).mappings()
    return [_workload(r, tuple(guids.get(r["name"], ()))) for r in rows]


def remove_workload(conn: sa.Connection, name: str) -> None:
    # Children first: SQLite enforces ON DELETE CASCADE only with foreign_keys=ON.
    conn.execute(sa.delete(workload_secrets).where(workload_secrets.c.workload == name))
    conn.execute(sa.delete(launches).where(launches.c.workload == name))
    if conn.execute(sa.delete(workloads_t).where(workloads_t.c.name == name)).rowcount == 0:
        raise NotFoundError("no-such-workload", f"no workload named {name!r}")
    bump_generation(conn)


# -- secrets -----------------------------------------------------------------------------------


def set_secret(conn: sa.Connection, workload: str, guid: str, sealed: bytes, now: float) -> None:
    get_workload(conn, workload)
    secret_rows.upsert(conn, workload_secrets, workload, guid, sealed, now)


def remove_secret(conn: sa.Connection, workload: str, guid: str) -> None:
    secret_rows.delete(conn, workload_secrets, workload, guid, "workload")


def sealed_secrets(conn: sa.Connection, workload: str) -> dict[str, bytes]:
    rows = conn.execute(_SELECT_SECRETS, {"name": workload})
    return {str(guid): bytes(sealed) for guid, sealed in rows}


# -- launches ----------------------------------------------------------------------------------

_LAUNCH_FIELDS = tuple(f.name for f in fields(LaunchRow))
_LAUNCH_COLUMNS = tuple(launches.c[name] for name in _LAUNCH_FIELDS)
_INSERT_LAUNCH = Prepared(
    launches.insert().values({c.name: sa.bindparam(c.name) for c in _LAUNCH_COLUMNS})
)
_FINISHING = Prepared(
    sa.select(
        *_LAUNCH_COLUMNS,
        workload_secrets.c.guid,
        workload_secrets.c.sealed,
        sa.select(catalog.c.generation)
        .where(catalog.c.id == sa.bindparam("catalog_id"))
        .scalar_subquery(),
    )
    .select_from(
        launches.outerjoin(workload_secrets, workload_secrets.c.workload == launches.c.workload)
    )
    .where(
        (launches.c.id == sa.bindparam("id")) & (launches.c.launcher == sa.bindparam("launcher"))
    )
)
_SETTLE = Prepared(
    sa.update(launches)
    .where((launches.c.id == sa.bindparam("b_id")) & (launches.c.state == sa.bindparam("b_from")))
    .values(
        state=sa.bindparam("b_state"),
        reason=sa.bindparam("b_reason"),
        finished_at=sa.bindparam("b_now"),
        finished_by=sa.bindparam("b_instance"),
        sealed_keys=sa.null(),
    )
)
_SELECT_WORKLOAD = sa.select(workloads_t).where(workloads_t.c.name == sa.bindparam("name"))
_SELECT_SECRETS = sa.select(workload_secrets.c.guid, workload_secrets.c.sealed).where(
    workload_secrets.c.workload == sa.bindparam("name")
)
_INSERT_AUDIT = Prepared(
    audit.insert().values({c.name: sa.bindparam(c.name) for c in audit.c if c.name != "id"})
)


def add_launch(tx: Tx, row: LaunchRow) -> None:
    _INSERT_LAUNCH.rowcount(tx, row.__dict__)


def _no_launch(launch_id: str) -> NotFoundError:
    """The same answer whether the launch does not exist or belongs to another launcher, so
    launch ids are no oracle."""
    return NotFoundError("no-such-launch", f"no launch with id {launch_id}")


def get_launch(conn: sa.Connection, launch_id: str, launcher: str | None = None) -> LaunchRow:
    """A launch; with ``launcher``, only one of that launcher's (else NotFoundError)."""
    query = sa.select(launches).where(launches.c.id == launch_id)
    if launcher is not None:
        query = query.where(launches.c.launcher == launcher)
    row = conn.execute(query).mappings().first()
    if row is None:
        raise _no_launch(launch_id)
    return _launch(row)


def _launch(row: sa.RowMapping) -> LaunchRow:
    values = dict(row)
    if values["sealed_keys"] is not None:
        values["sealed_keys"] = bytes(values["sealed_keys"])
    return LaunchRow(**values)


def list_launches(
    conn: sa.Connection,
    *,
    launcher: str | None = None,
    workload: str | None = None,
    state: str | None = None,
    before: float | None = None,
    limit: int = 100,
) -> list[LaunchRow]:
    """Launches, newest first; ``before`` pages on ``created_at``."""
    columns = [c for c in launches.c if c.name != "sealed_keys"]
    query = sa.select(*columns)
    for column, value in (
        (launches.c.launcher, launcher),
        (launches.c.workload, workload),
        (launches.c.state, state),
    ):
        if value is not None:
            query = query.where(column == value)
    if before is not None:
        query = query.where(launches.c.created_at < before)
    query = query.order_by(launches.c.created_at.desc(), launches.c.id).limit(limit)
    # the keys are never read for a listing: every row says None, sealed or not
    return [LaunchRow(**r, sealed_keys=None) for r in conn.execute(query).mappings()]


def finishing(tx: Tx, launch_id: str, launcher: str) -> Finishing:
    """``launcher``'s launch, its workload's sealed secrets and the catalog generation, in one
    read (NotFoundError if there is no such launch of this launcher)."""
    rows = _FINISHING.rows(tx, {"id": launch_id, "launcher": launcher, "catalog_id": CATALOG_ROW})
    if not rows:
        raise _no_launch(launch_id)
    n = len(_LAUNCH_COLUMNS)
    first = rows[0]
    launch = dict(zip(_LAUNCH_FIELDS, first[:n], strict=True))
    if launch["sealed_keys"] is not None:  # a driver may hand out a memoryview
        launch["sealed_keys"] = bytes(launch["sealed_keys"])
    sealed = {str(r[n]): bytes(r[n + 1]) for r in rows if r[n] is not None}
    return Finishing(LaunchRow(**launch), sealed, str(first[n + 2]))


def settle_launch(
    tx: Tx,
    launch_id: str,
    state: str,
    reason: str | None,
    now: float,
    instance: str,
) -> bool:
    """Move a launch out of awaiting-measurement and erase its sealed keys; True for at most
    one caller in the whole fleet, because the database applies the conditional UPDATE once."""
    params = {
        "b_id": launch_id,
        "b_from": AWAITING,
        "b_state": state,
        "b_reason": reason,
        "b_now": now,
        "b_instance": instance,
    }
    return _SETTLE.rowcount(tx, params) == 1


def expire_launches(conn: sa.Connection, now: float, instance: str, batch: int) -> list[Expired]:
    """Expire up to ``batch`` launches past their TTL and erase their keys, in one statement.

    On PostgreSQL the rows are picked ``FOR UPDATE SKIP LOCKED``: sweepers of several
    instances take disjoint rows and never wait on a launch being finished; the outer
    condition keeps an UPDATE from touching a launch settled meanwhile. On SQLite the caller's
    transaction holds the write lock.
    """
    due = (
        sa.select(launches.c.id)
        .where(PENDING, launches.c.expires_at <= now)
        .order_by(launches.c.expires_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    )
    statement = (
        sa.update(launches)
        .where(launches.c.id.in_(due.scalar_subquery()), PENDING)
        .values(
            state=EXPIRED, reason="expired", finished_at=now, finished_by=instance, sealed_keys=None
        )
        .returning(launches.c.id, launches.c.workload, launches.c.launcher)
    )
    return [Expired(*row) for row in conn.execute(statement)]


# -- audit -------------------------------------------------------------------------------------


def add_audit(
    tx: Tx,
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
    launcher: str | None = None,
) -> None:
    _INSERT_AUDIT.rowcount(
        tx,
        {
            "at": at,
            "instance": instance,
            "actor": actor,
            "action": action,
            "outcome": outcome,
            "reason": reason,
            "workload": workload,
            "launch": launch,
            "detail": _JSON.encode(dict(detail)) if detail else None,
            "launcher": launcher,
        },
    )


_JSON = json.JSONEncoder(sort_keys=True)


def list_audit(
    conn: sa.Connection,
    *,
    after: int = 0,
    limit: int = 100,
    workload: str | None = None,
    launch: str | None = None,
    launcher: str | None = None,
    newest: bool = False,
) -> Sequence[AuditRow]:
    """Entries after ``after`` in id order: the first ``limit``, or with ``newest`` the last."""
    query = sa.select(audit).where(audit.c.id > after)
    for column, value in (
        (audit.c.workload, workload),
        (audit.c.launch, launch),
        (audit.c.launcher, launcher),
    ):
        if value is not None:
            query = query.where(column == value)
    order = audit.c.id.desc() if newest else audit.c.id
    rows = list(conn.execute(query.order_by(order).limit(limit)).mappings())
    return [
        AuditRow(**{**r, "detail": json.loads(r["detail"]) if r["detail"] else None})
        for r in (reversed(rows) if newest else rows)
    ]
