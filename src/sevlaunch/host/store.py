"""The host manager's state: SQLite (WAL) in its state directory, through SQLAlchemy Core.

Domains (their XML and runtime state), the timeline of every launch step, and secret
definitions; the schema is :mod:`~sevlaunch.host.schema`, brought up to date at open by
:mod:`~sevlaunch.host.migrate`. Secret *values* live in files of mode 0600 beside the
database and are never returned by a read API; the store is the
:class:`~sevlaunch.host.secretstore.SecretVault` of the persistent secrets.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from sevlaunch._files import write_atomic
from sevlaunch.host.migrate import upgrade
from sevlaunch.host.schema import domains, secrets, timeline


@dataclass(frozen=True)
class DomainRow:
    uuid: str
    name: str
    xml: str
    state: str
    reason: str
    pid: int | None
    run_dir: str | None
    launch: int
    sev_handle: int | None = None


@dataclass(frozen=True)
class StepRow:
    launch: int
    step: int
    name: str
    party: str
    started: float
    duration: float | None
    outcome: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "launch": self.launch,
            "step": self.step,
            "name": self.name,
            "party": self.party,
            "started": self.started,
            "duration": self.duration,
            "outcome": self.outcome,
            "detail": self.detail,
        }


class Store:
    """All reads and writes of the host manager's database."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.state_dir = state_dir
        self.secret_dir = state_dir / "secrets"
        self.secret_dir.mkdir(exist_ok=True, mode=0o700)
        self.engine = sa.create_engine(
            f"sqlite:///{state_dir / 'host.db'}", connect_args={"check_same_thread": False}
        )
        event.listen(self.engine, "connect", _sqlite_pragmas)
        upgrade(self.engine)
        os.chmod(state_dir / "host.db", 0o600)

    def close(self) -> None:
        self.engine.dispose()

    # ---- domains

    def domain_rows(self) -> list[DomainRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(domains).order_by(domains.c.name)).all()
        return [DomainRow(**r._mapping) for r in rows]

    def domain(self, key: str) -> DomainRow | None:
        """Look a domain up by name or UUID, as virsh does."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(domains).where((domains.c.name == key) | (domains.c.uuid == key))
            ).first()
        return DomainRow(**row._mapping) if row else None

    def put_domain(self, uuid: str, name: str, xml: str) -> None:
        with self.engine.begin() as conn:
            if conn.execute(sa.select(domains.c.uuid).where(domains.c.uuid == uuid)).first():
                conn.execute(
                    domains.update().where(domains.c.uuid == uuid).values(name=name, xml=xml)
                )
            else:
                conn.execute(
                    domains.insert().values(
                        uuid=uuid, name=name, xml=xml, state="shutoff", reason="unknown", launch=0
                    )
                )

    def delete_domain(self, uuid: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(domains.delete().where(domains.c.uuid == uuid))
            conn.execute(timeline.delete().where(timeline.c.domain == uuid))

    def set_runtime(self, uuid: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(domains.update().where(domains.c.uuid == uuid).values(**values))

    # ---- timeline

    def add_step(
        self,
        uuid: str,
        launch: int,
        step: int,
        name: str,
        party: str,
        outcome: str,
        detail: str = "",
        *,
        started: float | None = None,
        duration: float | None = None,
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                timeline.insert().values(
                    domain=uuid,
                    launch=launch,
                    step=step,
                    name=name,
                    party=party,
                    started=started if started is not None else time.time(),
                    duration=duration,
                    outcome=outcome,
                    detail=detail,
                )
            )

    def steps(self, uuid: str, launch: int | None = None) -> list[StepRow]:
        query = sa.select(timeline).where(timeline.c.domain == uuid)
        if launch is not None:
            query = query.where(timeline.c.launch == launch)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(timeline.c.id)).all()
        return [
            StepRow(**{k: v for k, v in r._mapping.items() if k not in ("id", "domain")})
            for r in rows
        ]

    # ---- secrets (the SecretVault of sevlaunch.host.secretstore)

    def saved_secrets(self) -> Iterator[tuple[str, str, bool]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(secrets).order_by(secrets.c.uuid)).all()
        yield from ((r.uuid, r.xml, r.has_value) for r in rows)

    def save_secret(self, uid: str, xml: str) -> None:
        with self.engine.begin() as conn:
            if conn.execute(sa.select(secrets.c.uuid).where(secrets.c.uuid == uid)).first():
                conn.execute(secrets.update().where(secrets.c.uuid == uid).values(xml=xml))
            else:
                has_value = self._value_path(uid).exists()
                conn.execute(secrets.insert().values(uuid=uid, xml=xml, has_value=has_value))

    def save_value(self, uid: str, value: bytes) -> None:
        write_atomic(self._value_path(uid), value)
        with self.engine.begin() as conn:
            conn.execute(secrets.update().where(secrets.c.uuid == uid).values(has_value=True))

    def saved_value(self, uid: str) -> bytes | None:
        """Internal use only (resolving a domain's dhCert/session); no API returns it."""
        try:
            return self._value_path(uid).read_bytes()
        except FileNotFoundError:
            return None

    def forget_secret(self, uid: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(secrets.delete().where(secrets.c.uuid == uid))
        self._value_path(uid).unlink(missing_ok=True)

    def _value_path(self, uid: str) -> Path:
        return self.secret_dir / f"{uid}.value"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()
