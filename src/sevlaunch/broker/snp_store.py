"""SNP rows in and out: pinned roots, workloads, their sealed secrets and nonces, as small
functions over one SQLAlchemy connection returning frozen records.

Secrets arrive sealed (:mod:`sevlaunch.broker.seal`) and nonces arrive hashed: a database
reader learns neither. A nonce is spent by one conditional UPDATE, so of any number of
attestations presenting it, across every instance sharing the database, exactly one wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import sqlalchemy as sa

from sevlaunch.broker import secret_rows
from sevlaunch.broker.db import Prepared, Tx
from sevlaunch.broker.schema import snp_nonces, snp_roots, snp_secrets, snp_workloads
from sevlaunch.broker.store import _is_unique_violation
from sevlaunch.errors import ConflictError, NotFoundError


@dataclass(frozen=True)
class SnpRootRow:
    name: str
    fingerprint: str
    product: str
    ark: bytes = field(repr=False)
    created_at: float


@dataclass(frozen=True)
class SnpWorkloadRow:
    name: str
    expectations: str  # SnpExpectations as JSON
    created_at: float
    secret_guids: tuple[str, ...] = ()


@dataclass(frozen=True)
class NonceRow:
    id: str  # the attestation id, in the audit log of the challenge and of the attestation
    nonce_hash: str
    workload: str
    created_at: float
    expires_at: float
    used_at: float | None
    created_by: str


# -- roots -------------------------------------------------------------------------------------


def add_root(conn: sa.Connection, row: SnpRootRow) -> None:
    try:
        with conn.begin_nested():
            conn.execute(sa.insert(snp_roots).values(**row.__dict__))
    except sa.exc.IntegrityError as exc:
        if not _is_unique_violation(exc):
            raise
        raise ConflictError(
            "root-exists",
            f"an SNP root named {row.name!r} or with fingerprint {row.fingerprint} is "
            "already pinned; remove it first to replace it",
        ) from exc


def list_roots(conn: sa.Connection) -> list[SnpRootRow]:
    rows = conn.execute(sa.select(snp_roots).order_by(snp_roots.c.name)).mappings()
    return [SnpRootRow(**{**r, "ark": bytes(r["ark"])}) for r in rows]


def remove_root(conn: sa.Connection, name: str) -> None:
    if conn.execute(sa.delete(snp_roots).where(snp_roots.c.name == name)).rowcount == 0:
        raise NotFoundError("no-such-root", f"no SNP root named {name!r}")


# -- workloads and secrets ---------------------------------------------------------------------


def add_workload(conn: sa.Connection, row: SnpWorkloadRow) -> None:
    values = {k: v for k, v in row.__dict__.items() if k != "secret_guids"}
    try:
        with conn.begin_nested():
            conn.execute(sa.insert(snp_workloads).values(**values))
    except sa.exc.IntegrityError as exc:
        if not _is_unique_violation(exc):
            raise
        raise ConflictError(
            "workload-exists",
            f"an SNP workload named {row.name!r} exists; remove it first or pick another name",
        ) from exc


def get_workload(conn: sa.Connection, name: str) -> SnpWorkloadRow:
    row = conn.execute(sa.select(snp_workloads).where(snp_workloads.c.name == name)).first()
    if row is None:
        raise NotFoundError("no-such-workload", f"no SNP workload named {name!r}")
    guids = conn.execute(
        sa.select(snp_secrets.c.guid)
        .where(snp_secrets.c.workload == name)
        .order_by(snp_secrets.c.guid)
    ).scalars()
    return SnpWorkloadRow(row.name, row.expectations, row.created_at, tuple(guids))


def list_workloads(conn: sa.Connection) -> list[SnpWorkloadRow]:
    guids = secret_rows.guids_by_workload(conn, snp_secrets)
    rows = conn.execute(sa.select(snp_workloads).order_by(snp_workloads.c.name))
    return [
        SnpWorkloadRow(r.name, r.expectations, r.created_at, tuple(guids.get(r.name, ())))
        for r in rows
    ]


def remove_workload(conn: sa.Connection, name: str) -> None:
    # Children first: SQLite enforces ON DELETE CASCADE only with foreign_keys=ON.
    conn.execute(sa.delete(snp_secrets).where(snp_secrets.c.workload == name))
    conn.execute(sa.delete(snp_nonces).where(snp_nonces.c.workload == name))
    if conn.execute(sa.delete(snp_workloads).where(snp_workloads.c.name == name)).rowcount == 0:
        raise NotFoundError("no-such-workload", f"no SNP workload named {name!r}")


def set_secret(conn: sa.Connection, workload: str, guid: str, sealed: bytes, now: float) -> None:
    get_workload(conn, workload)
    secret_rows.upsert(conn, snp_secrets, workload, guid, sealed, now)


def remove_secret(conn: sa.Connection, workload: str, guid: str) -> None:
    secret_rows.delete(conn, snp_secrets, workload, guid, "SNP workload")


def sealed_secrets(conn: sa.Connection, workload: str) -> dict[str, bytes]:
    rows = conn.execute(
        sa.select(snp_secrets.c.guid, snp_secrets.c.sealed).where(
            snp_secrets.c.workload == workload
        )
    )
    return {str(guid): bytes(sealed) for guid, sealed in rows}


# -- nonces ------------------------------------------------------------------------------------


def open_nonces(conn: sa.Connection, workload: str, now: float) -> int:
    """How many of ``workload``'s nonces are unspent and unexpired."""
    query = (
        sa.select(sa.func.count())
        .select_from(snp_nonces)
        .where(
            snp_nonces.c.workload == workload,
            snp_nonces.c.expires_at > now,
            snp_nonces.c.used_at.is_(None),
        )
    )
    return int(conn.execute(query).scalar_one())


def add_nonce(conn: sa.Connection, row: NonceRow) -> None:
    conn.execute(sa.insert(snp_nonces).values(**row.__dict__))


def any_expired_nonce(conn: sa.Connection, now: float) -> bool:
    query = sa.select(snp_nonces.c.id).where(snp_nonces.c.expires_at <= now).limit(1)
    return conn.execute(query).first() is not None


def erase_expired_nonces(conn: sa.Connection, now: float) -> int:
    """Erase every nonce past its expiry, spent or not (what the sweeper calls)."""
    return int(conn.execute(sa.delete(snp_nonces).where(snp_nonces.c.expires_at <= now)).rowcount)


# -- the attestation path: prepared statements (see sevlaunch.broker.db.Prepared) ---------------

_NONCE_FIELDS = tuple(f.name for f in fields(NonceRow))
_FIND_NONCE = Prepared(
    sa.select(*(snp_nonces.c[n] for n in _NONCE_FIELDS)).where(
        snp_nonces.c.nonce_hash == sa.bindparam("hash")
    )
)
_EXPECTATIONS = Prepared(
    sa.select(snp_workloads.c.expectations).where(snp_workloads.c.name == sa.bindparam("name"))
)
_PINNED = Prepared(sa.select(snp_roots.c.fingerprint, snp_roots.c.product))
_SPEND = Prepared(
    sa.update(snp_nonces)
    .where(
        (snp_nonces.c.id == sa.bindparam("b_id"))
        & snp_nonces.c.used_at.is_(None)
        & (snp_nonces.c.expires_at > sa.bindparam("b_now"))
    )
    .values(used_at=sa.bindparam("b_used"))
)
_SEALED = Prepared(
    sa.select(snp_secrets.c.guid, snp_secrets.c.sealed).where(
        snp_secrets.c.workload == sa.bindparam("name")
    )
)


def expectations_text(tx: Tx, workload: str) -> str:
    """The workload's stored expectations (JSON), or NotFoundError."""
    rows = _EXPECTATIONS.rows(tx, {"name": workload})
    if not rows:
        raise NotFoundError("no-such-workload", f"no SNP workload named {workload!r}")
    return str(rows[0][0])


def nonce_by_hash(tx: Tx, nonce_hash: str) -> NonceRow | None:
    rows = _FIND_NONCE.rows(tx, {"hash": nonce_hash})
    return NonceRow(*rows[0]) if rows else None


def pinned(tx: Tx) -> dict[str, str]:
    """Fingerprint -> product of every pinned SNP root."""
    return {str(fp): str(product) for fp, product in _PINNED.rows(tx, {})}


def spend(tx: Tx, nonce_id: str, now: float) -> bool:
    """Mark the nonce used; True for exactly one caller, and only before it expires."""
    return _SPEND.rowcount(tx, {"b_id": nonce_id, "b_now": now, "b_used": now}) == 1


def sealed_of(tx: Tx, workload: str) -> dict[str, bytes]:
    return {str(guid): bytes(sealed) for guid, sealed in _SEALED.rows(tx, {"name": workload})}
