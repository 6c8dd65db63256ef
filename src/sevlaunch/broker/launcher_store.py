"""Launcher rows in and out: tokens by their SHA-256 only, limits, the rate bucket.

The statements a launch start runs (lock the launcher, count its open launches, take from its
bucket) are :class:`~sevlaunch.broker.db.Prepared`, inside the start's own transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from sevlaunch.broker.db import Prepared, Tx
from sevlaunch.broker.schema import PENDING, catalog, launchers, launches
from sevlaunch.broker.store import AWAITING, CATALOG_ROW, REFUSED, _is_unique_violation
from sevlaunch.errors import ConflictError, NotFoundError


@dataclass(frozen=True)
class LauncherRow:
    name: str
    token_hash: str
    created_at: float
    revoked_at: float | None = None
    max_open: int | None = None  # None: the serving instance's default
    rate: float | None = None  # new launches a minute; None: the default
    burst: int | None = None  # the bucket's size; None: the default
    bucket: float | None = None  # launches the bucket holds at bucket_at; None: full
    bucket_at: float | None = None


@dataclass(frozen=True)
class Gate:
    """What a start needs to know of its launcher, read under the launcher's row lock."""

    revoked: bool
    max_open: int | None
    rate: float | None
    burst: int | None
    bucket: float | None
    bucket_at: float | None
    open: int
    next_expiry: float | None
    generation: str  # the catalog's, read in the same statement


_COLUMNS = tuple(launchers.c[name] for name in LauncherRow.__dataclass_fields__)
_BY_HASH = Prepared(
    sa.select(launchers.c.name, launchers.c.token_hash, launchers.c.revoked_at).where(
        launchers.c.token_hash == sa.bindparam("token_hash")
    )
)
_LOCK = Prepared(
    sa.select(launchers.c.name).where(launchers.c.name == sa.bindparam("name")).with_for_update()
)
_OPEN = (
    sa.select(sa.func.count(launches.c.id))
    .where(
        launches.c.launcher == sa.bindparam("name"),
        PENDING,
        launches.c.expires_at > sa.bindparam("now"),
    )
    .scalar_subquery()
)
_NEXT_EXPIRY = (
    sa.select(sa.func.min(launches.c.expires_at))
    .where(
        launches.c.launcher == sa.bindparam("name"),
        PENDING,
        launches.c.expires_at > sa.bindparam("now"),
    )
    .scalar_subquery()
)
_GATE = Prepared(
    sa.select(
        launchers.c.revoked_at,
        launchers.c.max_open,
        launchers.c.rate,
        launchers.c.burst,
        launchers.c.bucket,
        launchers.c.bucket_at,
        sa.type_coerce(_OPEN, sa.Integer),
        sa.type_coerce(_NEXT_EXPIRY, sa.Float),
        sa.select(catalog.c.generation)
        .where(catalog.c.id == sa.bindparam("catalog_id"))
        .scalar_subquery(),
    ).where(launchers.c.name == sa.bindparam("name"))
)
_TAKE = Prepared(
    sa.update(launchers)
    .where(launchers.c.name == sa.bindparam("t_name"))
    .values(bucket=sa.bindparam("t_bucket"), bucket_at=sa.bindparam("t_at"))
)


def by_hash(tx: Tx, token_hash: str) -> tuple[str, str, float | None] | None:
    """``(name, stored hash, revoked_at)`` of the launcher with this token hash, if any."""
    rows = _BY_HASH.rows(tx, {"token_hash": token_hash})
    return (str(rows[0][0]), str(rows[0][1]), rows[0][2]) if rows else None


def gate(tx: Tx, name: str, now: float) -> Gate | None:
    """The launcher's row, its open launches and the catalog generation, counted after the
    launcher is locked so concurrent starts count one by one: on PostgreSQL a ``FOR UPDATE``
    first (a statement waiting on a lock reads other tables as they were when it began), on
    SQLite the transaction's write lock, and one statement."""
    if tx.dialect.name != "sqlite" and not _LOCK.rows(tx, {"name": name}):
        return None
    found = _GATE.rows(tx, {"name": name, "now": now, "catalog_id": CATALOG_ROW})
    if not found:
        return None
    revoked_at, max_open, rate, burst, bucket, bucket_at, count, next_expiry, gen = found[0]
    return Gate(
        revoked_at is not None,
        max_open,
        rate,
        burst,
        bucket,
        bucket_at,
        int(count),
        next_expiry,
        str(gen),
    )


def take(tx: Tx, name: str, bucket: float, at: float) -> None:
    _TAKE.rowcount(tx, {"t_name": name, "t_bucket": bucket, "t_at": at})


def add(conn: sa.Connection, row: LauncherRow) -> None:
    try:
        with conn.begin_nested():
            conn.execute(sa.insert(launchers).values(**row.__dict__))
    except sa.exc.IntegrityError as exc:
        if not _is_unique_violation(exc):
            raise
        raise ConflictError(
            "launcher-exists",
            f"a launcher named {row.name!r} exists (names are never reused, even revoked "
            "ones); pick another name",
        ) from exc


def get(conn: sa.Connection, name: str) -> LauncherRow:
    row = conn.execute(sa.select(*_COLUMNS).where(launchers.c.name == name)).mappings().first()
    if row is None:
        raise NotFoundError("no-such-launcher", f"no launcher named {name!r}")
    return LauncherRow(**row)


def list_all(conn: sa.Connection) -> list[LauncherRow]:
    rows = conn.execute(sa.select(*_COLUMNS).order_by(launchers.c.name)).mappings()
    return [LauncherRow(**r) for r in rows]


def open_counts(conn: sa.Connection, now: float) -> dict[str, int]:
    """Open launches (awaiting a measurement, not expired) by launcher."""
    query = (
        sa.select(launches.c.launcher, sa.func.count())
        .where(PENDING, launches.c.expires_at > now)
        .group_by(launches.c.launcher)
    )
    return {str(name): int(n) for name, n in conn.execute(query)}


def revoke(conn: sa.Connection, name: str, now: float, instance: str) -> list[str]:
    """Revoke a launcher and refuse its open launches (their keys erased); their ids."""
    if (
        conn.execute(
            sa.update(launchers)
            .where(launchers.c.name == name, launchers.c.revoked_at.is_(None))
            .values(revoked_at=now)
        ).rowcount
        == 0
    ):
        get(conn, name)  # NotFoundError if it does not exist
        raise ConflictError("launcher-revoked", f"launcher {name!r} is already revoked")
    ended = conn.execute(
        sa.update(launches)
        .where(launches.c.launcher == name, launches.c.state == AWAITING)
        .values(
            state=REFUSED,
            reason="launcher-revoked",
            finished_at=now,
            finished_by=instance,
            sealed_keys=None,
        )
        .returning(launches.c.id)
    )
    return [str(r[0]) for r in ended]


def set_token(conn: sa.Connection, name: str, token_hash: str, now: float) -> bool:
    """Give ``name`` a new token (a rotated ``--launcher-token-file``), un-revoking it; False
    if there is no such launcher."""
    updated = conn.execute(
        sa.update(launchers)
        .where(launchers.c.name == name)
        .values(token_hash=token_hash, revoked_at=None, created_at=now)
    ).rowcount
    return bool(updated)
