"""The broker's decisions: who may do what, when a launch gets a session and when a secret.

One :class:`Broker` per process over a shared database. Every decision is written to the
audit table in the same transaction as the state change it describes; log lines and audit
rows name launches, workloads and reasons, never keys or secret values. Trust roots,
workloads and secrets live here; launches in :mod:`~sevlaunch.broker.launches`.
"""

from __future__ import annotations

import logging
import secrets as pysecrets
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec

from sevlaunch.broker import attest, db, store
from sevlaunch.broker.catalog import Catalog
from sevlaunch.broker.launch_steps import LaunchSteps
from sevlaunch.broker.launchers import Launcher, LauncherLimits, Launchers, NewLauncher
from sevlaunch.broker.launches import LAUNCHER, Launches, LaunchStarted, Released, Settings
from sevlaunch.broker.seal import Sealer, secret_context
from sevlaunch.broker.snp_admin import NewSnpWorkload, SnpAdmin, SnpSettings
from sevlaunch.broker.snp_attest import PeerLimits, SnpAttestations
from sevlaunch.broker.snp_certs import SnpCertificates
from sevlaunch.broker.sweeper import Expiry
from sevlaunch.crypto import ecc
from sevlaunch.errors import UsageError
from sevlaunch.formats.policy import Policy
from sevlaunch.formats.secret import guid_alias, resolve_guid

log = logging.getLogger("sevlaunch.broker")

OWNER = "owner"

__all__ = [
    "LAUNCHER",
    "OWNER",
    "Broker",
    "LaunchStarted",
    "Launcher",
    "LauncherLimits",
    "NewLauncher",
    "NewSnpWorkload",
    "NewWorkload",
    "Released",
    "Settings",
    "SnpSettings",
]


@dataclass(frozen=True)
class NewWorkload:
    name: str
    policies: tuple[int, ...]
    digests: tuple[bytes, ...]
    min_api: tuple[int, int] = (0, 0)
    min_build: int = 0
    secrets: Mapping[str, bytes] = field(default_factory=dict, repr=False)


class Broker(Launchers, Launches, LaunchSteps, Expiry, SnpAdmin, SnpAttestations):
    """The service over one engine: trust roots, workloads, secrets, launchers and launches
    (SEV's pre-attestation); SNP roots, workloads and attestations (SNP's post-attestation)."""

    def __init__(
        self,
        engine: sa.Engine,
        kek: bytes,
        settings: Settings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        random: Callable[[int], bytes] = pysecrets.token_bytes,
        godh_key: Callable[[], ec.EllipticCurvePrivateKey] = ecc.generate_p384,
    ) -> None:
        self.engine = engine
        self.settings = settings or Settings()
        self.sealer = Sealer(kek, random)
        self.clock = clock
        self.random = random
        self.godh_key = godh_key
        self.catalog = Catalog()
        self._rate_blocked = {}
        snp = self.snp_settings = self.settings.snp
        self.snp_certs = SnpCertificates(
            snp.kds_url, snp.cache_dir, crl_ttl=snp.crl_ttl, clock=clock, monotonic=time.monotonic
        )
        self.snp_peers = PeerLimits(snp.peer_rate, snp.peer_burst, clock)

    def sweep(self) -> int:
        """One sweep: expired launches (their keys erased) and expired SNP nonces."""
        return self.expire() + self.expire_nonces()

    # -- audit ---------------------------------------------------------------------------------

    def _audit(self, tx: db.Tx, actor: str, action: str, outcome: str, **kw: Any) -> None:
        store.add_audit(
            tx,
            at=self.clock(),
            instance=self.settings.instance,
            actor=actor,
            action=action,
            outcome=outcome,
            **kw,
        )
        if log.isEnabledFor(logging.INFO):
            log.info(
                "%s %s: %s%s",
                actor,
                action,
                outcome,
                "".join(f" {k}={v}" for k, v in kw.items() if k != "detail" and v is not None),
            )

    # -- trust roots ---------------------------------------------------------------------------

    def add_root(self, data: bytes, name: str | None = None) -> store.TrustRootRow:
        parsed = attest.parse_root(data, name)
        row = store.TrustRootRow(
            name=parsed.name,
            fingerprint=parsed.fingerprint,
            key_id=parsed.key_id,
            amd=parsed.amd,
            ark=parsed.ark,
            ask=parsed.ask,
            created_at=self.clock(),
        )
        with db.writing(self.engine) as conn:
            store.add_root(conn, row)
            self._audit(
                conn, OWNER, "trust.add", "ok", detail={"root": row.name, "fp": row.fingerprint}
            )
        return row

    def remove_root(self, name: str) -> None:
        with db.writing(self.engine) as conn:
            store.remove_root(conn, name)
            self._audit(conn, OWNER, "trust.remove", "ok", detail={"root": name})

    def roots(self) -> list[store.TrustRootRow]:
        with db.reading(self.engine) as conn:
            return store.list_roots(conn)

    # -- workloads and secrets -----------------------------------------------------------------

    def add_workload(self, new: NewWorkload) -> store.WorkloadRow:
        _check_workload(new)
        now = self.clock()
        row = store.WorkloadRow(
            name=new.name,
            policies=new.policies,
            digests=tuple(d.hex() for d in new.digests),
            min_api_major=new.min_api[0],
            min_api_minor=new.min_api[1],
            min_build=new.min_build,
            created_at=now,
        )
        guids = {str(resolve_guid(k)): v for k, v in new.secrets.items()}
        attest.check_secret_sizes({uuid.UUID(g): v for g, v in guids.items()})
        with db.writing(self.engine) as conn:
            store.add_workload(conn, row)
            for guid, value in guids.items():
                sealed = self.sealer.seal(value, secret_context(new.name, guid))
                store.set_secret(conn, new.name, guid, sealed, now)
            self._audit(
                conn,
                OWNER,
                "workload.add",
                "ok",
                workload=new.name,
                detail={
                    "policies": list(new.policies),
                    "digests": list(row.digests),
                    "secrets": [guid_alias(uuid.UUID(g)) for g in sorted(guids)],
                },
            )
            return store.get_workload(conn, new.name)

    def workload(self, name: str) -> store.WorkloadRow:
        with db.reading(self.engine) as conn:
            return store.get_workload(conn, name)

    def workloads(self) -> list[store.WorkloadRow]:
        with db.reading(self.engine) as conn:
            return store.list_workloads(conn)

    def remove_workload(self, name: str) -> None:
        with db.writing(self.engine) as conn:
            store.remove_workload(conn, name)
            self._audit(conn, OWNER, "workload.remove", "ok", workload=name)

    def set_secret(self, workload: str, guid_text: str, value: bytes) -> str:
        guid = str(resolve_guid(guid_text))
        with db.writing(self.engine) as conn:
            current = store.sealed_secrets(conn, workload)
            sizes = {uuid.UUID(g): bytes(_sealed_len(s)) for g, s in current.items()}
            attest.check_secret_sizes({**sizes, uuid.UUID(guid): value})
            sealed = self.sealer.seal(value, secret_context(workload, guid))
            store.set_secret(conn, workload, guid, sealed, self.clock())
            self._audit(
                conn,
                OWNER,
                "secret.set",
                "ok",
                workload=workload,
                detail={"guid": guid_alias(uuid.UUID(guid))},
            )
        return guid

    def remove_secret(self, workload: str, guid_text: str) -> None:
        guid = str(resolve_guid(guid_text))
        with db.writing(self.engine) as conn:
            store.remove_secret(conn, workload, guid)
            self._audit(
                conn,
                OWNER,
                "secret.remove",
                "ok",
                workload=workload,
                detail={"guid": guid_alias(uuid.UUID(guid))},
            )

    def audit(self, **filters: Any) -> Sequence[store.AuditRow]:
        with db.reading(self.engine) as conn:
            return store.list_audit(conn, **filters)


def _sealed_len(sealed: bytes) -> int:
    return len(sealed) - 1 - 12 - 16


def _check_workload(new: NewWorkload) -> None:
    if not new.policies:
        raise UsageError("a workload needs at least one allowed policy (--policy)")
    for policy in new.policies:
        Policy.from_int(policy)
    if not new.digests:
        raise UsageError("a workload needs at least one expected launch digest")
    for digest in new.digests:
        if len(digest) != 32:
            raise UsageError(f"a launch digest is 32 bytes (SHA-256), got {len(digest)}")
