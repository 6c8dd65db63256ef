"""The broker's decisions: who may do what, when a launch gets a session and when a secret.

One :class:`Broker` per process over a shared database. Every decision is written to the
audit table in the same transaction as the state change it describes; log lines and audit
rows name launches, workloads and reasons, never keys or secret values. An attestation is two
transactions, one per step: workloads, parsed trust roots and verified platforms come from the
process's :class:`~sevlaunch.broker.catalog.Catalog`, checked against the database's catalog
generation inside the transaction. When this process has them, the transaction is a
:func:`~sevlaunch.broker.db.lean_transaction` of prepared statements; when it must read them,
an ordinary SQLAlchemy one.
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
from sevlaunch.broker.catalog import Catalog, Remembered, View
from sevlaunch.broker.seal import Sealer, launch_context, secret_context
from sevlaunch.crypto import ecc
from sevlaunch.crypto.chain import VerifiedPlatform
from sevlaunch.crypto.launch import TransportKeys
from sevlaunch.errors import (
    FormatError,
    LaunchRefusedError,
    MeasurementMismatchError,
    UsageError,
    VerificationError,
)
from sevlaunch.formats.policy import Policy
from sevlaunch.formats.secret import guid_alias, resolve_guid

log = logging.getLogger("sevlaunch.broker")

OWNER = "owner"
LAUNCHER = "launcher"


@dataclass(frozen=True)
class Settings:
    """Tunables; ``instance`` names this process in launches and the audit log."""

    launch_ttl: float = 600.0
    chain_cache_ttl: float = 86_400.0
    use_chain_cache: bool = True
    instance: str = "broker"


@dataclass(frozen=True)
class NewWorkload:
    name: str
    policies: tuple[int, ...]
    digests: tuple[bytes, ...]
    min_api: tuple[int, int] = (0, 0)
    min_build: int = 0
    secrets: Mapping[str, bytes] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class LaunchStarted:
    id: str
    godh: bytes
    session: bytes
    policy: int
    expires_at: float


@dataclass(frozen=True)
class Released:
    id: str
    secret_header: str | None = field(repr=False)
    secret: str | None = field(repr=False)


@dataclass(frozen=True)
class _Request:
    workload: str
    pdh: bytes
    cert_chain: bytes
    cek: bytes | None
    policy: int | None
    fingerprint: str


@dataclass(frozen=True)
class _Attempt:
    """A launch start decided under one catalog generation: a launch row to insert, or the
    refusal to audit. ``verified`` names the root when this process verified the chain."""

    generation: str
    row: store.LaunchRow | None = None
    started: LaunchStarted | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    verified: str | None = None
    refusal: LaunchRefusedError | None = None


@dataclass(frozen=True)
class MeasurementReport:
    """libvirt's launch security info: ``sev-measurement`` and friends."""

    measurement: bytes
    api_major: int
    api_minor: int
    build_id: int
    policy: int


class Broker:
    """The service: trust roots, workloads, secrets and launches over one engine."""

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
        with self.engine.begin() as conn:
            store.add_root(conn, row)
            self._audit(
                conn, OWNER, "trust.add", "ok", detail={"root": row.name, "fp": row.fingerprint}
            )
        return row

    def remove_root(self, name: str) -> None:
        with self.engine.begin() as conn:
            store.remove_root(conn, name)
            self._audit(conn, OWNER, "trust.remove", "ok", detail={"root": name})

    def roots(self) -> list[store.TrustRootRow]:
        with self.engine.connect() as conn:
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
        with self.engine.begin() as conn:
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
        with self.engine.connect() as conn:
            return store.get_workload(conn, name)

    def workloads(self) -> list[store.WorkloadRow]:
        with self.engine.connect() as conn:
            return store.list_workloads(conn)

    def remove_workload(self, name: str) -> None:
        with self.engine.begin() as conn:
            store.remove_workload(conn, name)
            self._audit(conn, OWNER, "workload.remove", "ok", workload=name)

    def set_secret(self, workload: str, guid_text: str, value: bytes) -> str:
        guid = str(resolve_guid(guid_text))
        with self.engine.begin() as conn:
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
        with self.engine.begin() as conn:
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
        with self.engine.connect() as conn:
            return store.list_audit(conn, **filters)

    # -- launches ------------------------------------------------------------------------------

    def start_launch(
        self,
        workload_name: str,
        pdh: bytes,
        cert_chain: bytes,
        cek: bytes | None = None,
        policy: int | None = None,
    ) -> LaunchStarted:
        """Steps 4-5: verify the platform, make a session, keep TEK/TIK sealed.

        The session is made before the transaction from this process's copies; the transaction
        checks they are still current and writes the launch and its audit row, or the
        refusal's. Without copies, or with stale ones, it is decided again inside a
        transaction that reads what it needs.
        """
        fingerprint = attest.platform_fingerprint(pdh, cert_chain, cek)
        request = _Request(workload_name, pdh, cert_chain, cek, policy, fingerprint)
        attempt = self._attempt(self.catalog.view, None, request)
        if attempt is None or not self._commit_start(request, attempt):
            with self.engine.begin() as conn:
                attempt = self._attempt(self.catalog.refresh(conn), conn, request)
                assert attempt is not None  # with a connection nothing is missing
                self._record_start(conn, request, attempt)
        if attempt.refusal is not None:
            raise attempt.refusal
        assert attempt.started is not None
        return attempt.started

    def _attempt(
        self, view: View, conn: sa.Connection | None, request: _Request
    ) -> _Attempt | None:
        """Decide a start under ``view``; None if it lacks something and ``conn`` is None."""
        workload = self.catalog.workload(view, conn, request.workload)
        if workload is None:
            return None
        try:
            chosen = _choose_policy(workload, request.policy)
            found = self._platform(view, conn, request)
        except LaunchRefusedError as exc:
            return _Attempt(view.generation, refusal=exc)
        if found is None:
            return None
        platform, hit = found
        launch_id = uuid.UUID(bytes=self.random(16), version=4).hex
        made = attest.make_session(platform, chosen, self.random, self.godh_key())
        root = platform.ca.root.name
        now = self.clock()
        row = store.LaunchRow(
            id=launch_id,
            workload=workload.name,
            policy=chosen,
            platform=request.fingerprint,
            sealed_keys=self.sealer.seal(made.keys.tek + made.keys.tik, launch_context(launch_id)),
            state=store.AWAITING,
            reason=None,
            created_at=now,
            expires_at=now + self.settings.launch_ttl,
            finished_at=None,
            created_by=self.settings.instance,
            finished_by=None,
        )
        started = LaunchStarted(
            launch_id, made.godh.to_bytes(), made.session.to_bytes(), chosen, row.expires_at
        )
        detail = {
            "policy": chosen,
            "platform": request.fingerprint,
            "root": root,
            "chain-cache": "hit" if hit else "miss",
        }
        verified = root if not hit and self.settings.use_chain_cache else None
        return _Attempt(view.generation, row, started, detail, verified)

    def _commit_start(self, request: _Request, attempt: _Attempt) -> bool:
        """Write a start decided from copies if their generation is still the database's."""
        with db.lean_transaction(self.engine) as tx:
            if store.generation(tx) != attempt.generation:
                return False
            self._record_start(tx, request, attempt)
        return True

    def _record_start(self, tx: db.Tx, request: _Request, attempt: _Attempt) -> None:
        action = "launch.start"
        if attempt.refusal is not None:
            exc = attempt.refusal
            self._audit(
                tx,
                LAUNCHER,
                action,
                "refused",
                reason=exc.reason,
                detail=_refusal(exc),
                workload=request.workload,
            )
            return
        row = attempt.row
        assert row is not None
        if attempt.verified is not None:
            store.cache_root(tx, request.fingerprint, attempt.verified, row.created_at)
        store.add_launch(tx, row)
        self._audit(
            tx,
            LAUNCHER,
            action,
            "ok",
            workload=row.workload,
            launch=row.id,
            detail=attempt.detail,
        )

    def _platform(
        self, view: View, conn: sa.Connection | None, request: _Request
    ) -> tuple[VerifiedPlatform, bool] | None:
        """``(verified platform, from a cache)``, a refusal, or None: ``view`` lacks it.

        This process remembers platforms it verified or rebuilt; the database's chain cache
        says which chains another instance verified (and whose root is still trusted).
        """
        use_cache = self.settings.use_chain_cache
        not_before = self.clock() - self.settings.chain_cache_ttl
        if use_cache:
            known = self.catalog.platform(view, request.fingerprint, not_before)
            if known is not None:
                return known.platform, True
            if conn is None:
                return None
            cached = store.cached_root(conn, request.fingerprint, not_before)
            if cached is not None:
                rebuilt = self._remembered(view, conn, request, *cached)
                if rebuilt is not None:
                    return rebuilt, True
        trust = self.catalog.trust(view, conn)
        if trust is None:
            return None
        try:
            platform = attest.verify_platform(request.pdh, request.cert_chain, request.cek, trust)
        except (VerificationError, FormatError) as exc:
            raise LaunchRefusedError("platform-not-verified", str(exc)) from None
        if use_cache:
            self.catalog.remember(view, request.fingerprint, Remembered(platform, self.clock()))
        return platform, False

    def _remembered(
        self, view: View, conn: sa.Connection, request: _Request, root_name: str, at: float
    ) -> VerifiedPlatform | None:
        """A chain the fleet verified, rebuilt without checking its signatures again."""
        trust = self.catalog.trust(view, conn)
        root = trust.root(root_name) if trust is not None else None
        if root is None:
            return None
        try:
            platform = attest.remembered_platform(
                request.pdh, request.cert_chain, request.cek, root
            )
        except (VerificationError, FormatError):
            return None
        if platform is not None:
            self.catalog.remember(view, request.fingerprint, Remembered(platform, at))
        return platform

    def launch(self, launch_id: str) -> store.LaunchRow:
        with self.engine.connect() as conn:
            return store.get_launch(conn, launch_id)

    def finish_launch(self, launch_id: str, report: MeasurementReport) -> Released:
        """Step 11: check the measurement, release the secrets or refuse; each launch once.

        One transaction reads the launch with its workload's sealed secrets, decides, moves
        the launch out of awaiting-measurement with a conditional UPDATE that one transaction
        in the whole fleet can win, and writes the audit row; secrets leave once it commits.
        """
        now = self.clock()
        with db.lean_transaction(self.engine) as tx:
            outcome = self._finish(tx, None, launch_id, report, now)
        if outcome is None:  # this process has no current copy of the workload
            with self.engine.begin() as conn:
                outcome = self._finish(conn, conn, launch_id, report, now)
                assert outcome is not None  # with a connection nothing is missing
        if isinstance(outcome, LaunchRefusedError):
            raise outcome
        return outcome

    def _finish(
        self,
        tx: db.Tx,
        conn: sa.Connection | None,
        launch_id: str,
        report: MeasurementReport,
        now: float,
    ) -> Released | LaunchRefusedError | None:
        """Finish in ``tx``; None if the workload must be read and ``conn`` is None."""
        found = store.finishing(tx, launch_id)
        view = self.catalog.at(found.generation)
        workload = self.catalog.workload(view, conn, found.launch.workload)
        if workload is None:
            return None
        return self._settle(tx, found, workload, report, now)

    def _settle(
        self,
        tx: db.Tx,
        found: store.Finishing,
        workload: store.WorkloadRow,
        report: MeasurementReport,
        now: float,
    ) -> Released | LaunchRefusedError:
        """Decide, claim and audit in the caller's transaction; the release or the refusal."""
        row = found.launch
        instance = self.settings.instance
        if row.state != store.AWAITING or row.expires_at <= now:
            return self._unclaimable(tx, row, now)
        outcome: Released | LaunchRefusedError
        detail = _report(report)
        try:
            outcome = self._decide(row, workload, found.sealed, report)
            state, reason = store.RELEASED, None
            detail["secrets"] = len(found.sealed)
        except LaunchRefusedError as exc:
            outcome = exc
            state, reason = store.REFUSED, exc.reason
            detail.update(_refusal(exc))
        if not store.settle_launch(tx, row.id, state, reason, now, instance):
            # another instance settled it between our read and our update
            return self._unclaimable(tx, store.finishing(tx, row.id).launch, now)
        self._audit(
            tx,
            LAUNCHER,
            "launch.measure",
            "refused" if reason else "released",
            reason=reason,
            workload=row.workload,
            launch=row.id,
            detail=detail,
        )
        return outcome

    def _unclaimable(self, tx: db.Tx, row: store.LaunchRow, now: float) -> LaunchRefusedError:
        """Why a launch cannot be claimed (expired, or already used), audited."""
        if row.state == store.AWAITING and row.expires_at <= now:
            store.settle_launch(tx, row.id, store.REFUSED, "expired", now, self.settings.instance)
            exc = LaunchRefusedError(
                "expired",
                f"launch {row.id} expired at {row.expires_at:.0f}; start a new launch "
                "(the guest must be destroyed and started again with a fresh session)",
            )
        else:
            exc = LaunchRefusedError(
                "replay",
                f"launch {row.id} is single-use and was already {row.state}"
                + (f" ({row.reason})" if row.reason else "")
                + "; start a new launch",
            )
        self._audit(
            tx,
            LAUNCHER,
            "launch.measure",
            "refused",
            reason=exc.reason,
            workload=row.workload,
            launch=row.id,
            detail=_refusal(exc),
        )
        return exc

    def _decide(
        self,
        row: store.LaunchRow,
        workload: store.WorkloadRow,
        sealed: Mapping[str, bytes],
        report: MeasurementReport,
    ) -> Released:
        _check_report(row, workload, report)
        try:
            info = attest.reported(
                report.measurement,
                report.api_major,
                report.api_minor,
                report.build_id,
                report.policy,
            )
        except (FormatError, UsageError) as exc:
            raise LaunchRefusedError("bad-measurement", str(exc)) from None
        keys = TransportKeys.from_tk(self.sealer.open(row.sealed_keys, launch_context(row.id)))
        digests = [bytes.fromhex(d) for d in workload.digests]
        try:
            attest.check_measurement(info, digests, keys.tik)
        except MeasurementMismatchError as exc:
            raise LaunchRefusedError(
                "measurement-mismatch", str(exc), attest.diagnose(info, digests, keys)
            ) from None
        if not sealed:
            return Released(row.id, None, None)
        values = {
            uuid.UUID(g): self.sealer.open(s, secret_context(row.workload, g))
            for g, s in sealed.items()
        }
        header, payload = attest.build_secret(keys, info, values, self.random)
        return Released(row.id, header, payload)

    def expire(self) -> int:
        with self.engine.begin() as conn:
            return store.expire_launches(conn, self.clock())


def _report(report: MeasurementReport) -> dict[str, Any]:
    return {
        "api": f"{report.api_major}.{report.api_minor}",
        "build": report.build_id,
        "policy": report.policy,
    }


def _refusal(exc: LaunchRefusedError) -> dict[str, Any]:
    """A refusal's words for the audit log: the message and, for a mismatch, the diagnosis."""
    detail: dict[str, Any] = {"message": str(exc)}
    if exc.diagnosis:
        detail["diagnosis"] = exc.diagnosis
    return detail


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


def _choose_policy(workload: store.WorkloadRow, requested: int | None) -> int:
    if requested is None:
        return workload.policies[0]
    if requested not in workload.policies:
        allowed = ", ".join(f"{p:#x}" for p in workload.policies)
        raise LaunchRefusedError(
            "policy-not-allowed",
            f"policy {requested:#x} is not allowed for workload {workload.name!r} "
            f"(allowed: {allowed})",
        )
    return requested


def _check_report(
    row: store.LaunchRow, workload: store.WorkloadRow, report: MeasurementReport
) -> None:
    if report.policy != row.policy:
        raise LaunchRefusedError(
            "policy-mismatch",
            f"the guest reports policy {report.policy:#x} but its session was made for "
            f"{row.policy:#x}; the host changed the policy: destroy the guest",
        )
    found = (report.api_major, report.api_minor, report.build_id)
    wanted = (workload.min_api_major, workload.min_api_minor, workload.min_build)
    if found < wanted:
        raise LaunchRefusedError(
            "firmware-too-old",
            f"the platform runs SEV firmware API {found[0]}.{found[1]} build {found[2]}, "
            f"workload {workload.name!r} requires at least {wanted[0]}.{wanted[1]} build "
            f"{wanted[2]}; update the host's firmware",
        )
