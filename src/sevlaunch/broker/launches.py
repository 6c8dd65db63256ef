"""The broker's launches: steps 4-5 (verify the platform, make a session) and step 11 (the
owner's decision, the secrets released once), each one transaction with its audit row.

An attestation is two transactions, one per step: workloads, parsed trust roots and verified
platforms come from the process's :class:`~sevlaunch.broker.catalog.Catalog`, checked against
the database's catalog generation inside the transaction. When this process has them, the
transaction is a :func:`~sevlaunch.broker.db.lean_transaction` of prepared statements; when it
must read them, an ordinary SQLAlchemy one. The decision itself is
:func:`sevlaunch.owner.decision.decide`, the same as the local owner's.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec

from sevlaunch.broker import attest, db, store
from sevlaunch.broker.catalog import Catalog, Remembered, View
from sevlaunch.broker.launcher_store import Gate
from sevlaunch.broker.launchers import LauncherLimits
from sevlaunch.broker.seal import Sealer, launch_context, secret_context
from sevlaunch.broker.snp_admin import SnpSettings
from sevlaunch.crypto.chain import VerifiedPlatform
from sevlaunch.crypto.launch import TransportKeys
from sevlaunch.errors import (
    BrokerError,
    FormatError,
    LaunchRefusedError,
    LimitExceededError,
    VerificationError,
)
from sevlaunch.owner.decision import Registration
from sevlaunch.protocol import LaunchConfiguration, LaunchSecurityInfo

LAUNCHER = "launcher"

_Report = tuple[LaunchSecurityInfo, LaunchConfiguration | None]


@dataclass(frozen=True)
class Settings:
    """Tunables; ``instance`` names this process in launches and the audit log;
    ``launcher_limits`` are the limits of launchers that were given none of their own."""

    launch_ttl: float = 600.0
    chain_cache_ttl: float = 86_400.0
    use_chain_cache: bool = True
    instance: str = "broker"
    launcher_limits: LauncherLimits = field(default_factory=LauncherLimits)
    sweep_interval: float = 5.0
    sweep_batch: int = 100
    snp: SnpSettings = field(default_factory=SnpSettings)


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
    launcher: str
    domain: str | None = None  #: the guest's domain on its host, as the VM tool named it
    host: str | None = None  #: that host's page

    def names(self) -> dict[str, str]:
        """What the VM tool said of the guest, for the audit log."""
        found = {"domain": self.domain, "host": self.host}
        return {k: v for k, v in found.items() if v is not None}

    @property
    def key(self) -> tuple[bytes, bytes, bytes | None]:
        """The exact bytes a verified platform is remembered under."""
        return (self.pdh, self.cert_chain, self.cek)


@dataclass(frozen=True)
class _Attempt:
    """A launch start decided under one catalog generation: a launch row to insert, or the
    refusal to audit."""

    generation: str
    row: store.LaunchRow | None = None
    started: LaunchStarted | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    refusal: LaunchRefusedError | LimitExceededError | None = None


class Launches:
    """The launch half of :class:`~sevlaunch.broker.service.Broker` (which sets these)."""

    engine: sa.Engine
    settings: Settings
    sealer: Sealer
    clock: Callable[[], float]
    random: Callable[[int], bytes]
    godh_key: Callable[[], ec.EllipticCurvePrivateKey]
    catalog: Catalog

    # from Broker and :class:`~sevlaunch.broker.launchers.Launchers`
    _audit: Callable[..., None]
    _gate: Callable[[db.Tx, str, float], Gate]
    _admit: Callable[[db.Tx, str, Gate, float], LimitExceededError | None]
    _check_rate_memo: Callable[[str], None]
    _remember_rate: Callable[[str, LimitExceededError], None]

    def start_launch(
        self,
        workload_name: str,
        pdh: bytes,
        cert_chain: bytes,
        cek: bytes | None = None,
        policy: int | None = None,
        *,
        launcher: str = store.DEFAULT_LAUNCHER,
        domain: str | None = None,
        host: str | None = None,
    ) -> LaunchStarted:
        """Steps 4-5 for ``launcher``: verify the platform, make a session, keep TEK/TIK
        sealed.

        The session is made before the transaction from this process's copies; the transaction
        checks they are still current, admits the launch under the launcher's limits and
        writes the launch and its audit row, or the refusal's. Without copies, or with stale
        ones, it is decided again inside a transaction that reads what it needs. A launcher
        over its rate is refused before any of this until its last refusal's Retry-After
        (not audited again: the refusal that set it was).
        """
        self._check_rate_memo(launcher)
        fingerprint = attest.platform_fingerprint(pdh, cert_chain, cek)
        request = _Request(
            workload_name, pdh, cert_chain, cek, policy, fingerprint, launcher, domain, host
        )
        attempt = self._attempt(self.catalog.view, None, request)
        if attempt is None or (attempt := self._commit_start(request, attempt)) is None:
            with db.writing(self.engine) as conn:
                fresh = self._attempt(self.catalog.refresh(conn), conn, request)
                if fresh is None:
                    raise _missing("the launch start")
                gate = self._gate(conn, launcher, self.clock())
                attempt = self._record_start(conn, request, fresh, gate)
        if attempt.refusal is not None:
            if isinstance(attempt.refusal, LimitExceededError):
                self._remember_rate(launcher, attempt.refusal)
            raise attempt.refusal
        if attempt.started is None:
            raise _missing("the launch start")
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
            launcher=request.launcher,
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
        detail.update(request.names())
        return _Attempt(view.generation, row, started, detail)

    def _commit_start(self, request: _Request, attempt: _Attempt) -> _Attempt | None:
        """Write a start decided from copies if their generation is still the database's;
        the attempt as written (refused if over a limit), or None."""
        with db.lean_transaction(self.engine) as tx:
            gate = self._gate(tx, request.launcher, self.clock())
            if gate.generation != attempt.generation:
                return None
            return self._record_start(tx, request, attempt, gate)

    def _record_start(
        self, tx: db.Tx, request: _Request, attempt: _Attempt, gate: Gate
    ) -> _Attempt:
        """Admit the launch under its launcher's limits and write it, or audit the refusal."""
        action = "launch.start"
        if attempt.refusal is None:
            limited = self._admit(tx, request.launcher, gate, self.clock())
            if limited is not None:
                attempt = replace(attempt, refusal=limited)
        if attempt.refusal is not None:
            exc = attempt.refusal
            self._audit(
                tx,
                LAUNCHER,
                action,
                "refused",
                reason=exc.reason,
                detail=_refusal(exc) | request.names(),
                workload=request.workload,
                launcher=request.launcher,
            )
            return attempt
        row = attempt.row
        if row is None:
            raise _missing("the launch row")
        store.add_launch(tx, row)
        self._audit(
            tx,
            LAUNCHER,
            action,
            "ok",
            workload=row.workload,
            launch=row.id,
            detail=attempt.detail,
            launcher=row.launcher,
        )
        return attempt

    def _platform(
        self, view: View, conn: sa.Connection | None, request: _Request
    ) -> tuple[VerifiedPlatform, bool] | None:
        """``(verified platform, from this process's memory)``, a refusal, or None: ``view``
        lacks the trust roots.

        Only the chain verifier makes a :class:`VerifiedPlatform`; this process remembers
        the ones it verified itself, under this view's roots, keyed by the exact bytes.
        """
        use_cache = self.settings.use_chain_cache
        not_before = self.clock() - self.settings.chain_cache_ttl
        key = request.key
        if use_cache:
            known = self.catalog.platform(view, key, not_before)
            if known is not None:
                return known.platform, True
        trust = self.catalog.trust(view, conn)
        if trust is None:
            return None
        try:
            platform = attest.verify_platform(request.pdh, request.cert_chain, request.cek, trust)
        except (VerificationError, FormatError) as exc:
            raise LaunchRefusedError("platform-not-verified", str(exc)) from exc
        if use_cache:
            self.catalog.remember(view, key, Remembered(platform, self.clock()))
        return platform, False

    def launch(self, launch_id: str, *, launcher: str | None = None) -> store.LaunchRow:
        """A launch; with ``launcher``, only one of its own (else NotFoundError)."""
        with db.reading(self.engine) as conn:
            return store.get_launch(conn, launch_id, launcher)

    def launches(self, **filters: Any) -> list[store.LaunchRow]:
        """Launches newest first (see :func:`sevlaunch.broker.store.list_launches`)."""
        with db.reading(self.engine) as conn:
            return store.list_launches(conn, **filters)

    def finish_launch(
        self,
        launch_id: str,
        report: LaunchSecurityInfo,
        configuration: LaunchConfiguration | None = None,
        *,
        launcher: str = store.DEFAULT_LAUNCHER,
    ) -> Released:
        """Step 11: check the measurement, release the secrets or refuse; each launch once,
        and only by the launcher that started it (another's launch id is not found).

        One transaction reads the launch with its workload's sealed secrets, decides, moves
        the launch out of awaiting-measurement with a conditional UPDATE that one transaction
        in the whole fleet can win (erasing its sealed keys), and writes the audit row;
        secrets leave once it commits.
        """
        now = self.clock()
        ident = (launch_id, launcher)
        with db.lean_transaction(self.engine) as tx:
            outcome = self._finish(tx, None, ident, (report, configuration), now)
        if outcome is None:  # this process has no current copy of the workload
            with db.writing(self.engine) as conn:
                outcome = self._finish(conn, conn, ident, (report, configuration), now)
                if outcome is None:
                    raise _missing("the launch finish")
        if isinstance(outcome, LaunchRefusedError):
            raise outcome
        return outcome

    def _finish(
        self,
        tx: db.Tx,
        conn: sa.Connection | None,
        ident: tuple[str, str],
        report: _Report,
        now: float,
    ) -> Released | LaunchRefusedError | None:
        """Finish in ``tx``; None if the workload must be read and ``conn`` is None."""
        found = store.finishing(tx, *ident)
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
        report: _Report,
        now: float,
    ) -> Released | LaunchRefusedError:
        """Decide, claim and audit in the caller's transaction; the release or the refusal."""
        row = found.launch
        instance = self.settings.instance
        if row.state != store.AWAITING or row.expires_at <= now:
            return self._unclaimable(tx, row, now)
        outcome: Released | LaunchRefusedError
        detail = _report(report[0])
        try:
            outcome = self._decide(row, workload, found.sealed, *report)
            state, reason = store.RELEASED, None
            detail["secrets"] = len(found.sealed)
        except LaunchRefusedError as exc:
            outcome = exc
            state, reason = store.REFUSED, exc.reason
            detail.update(_refusal(exc))
        if not store.settle_launch(tx, row.id, state, reason, now, instance):
            # another instance settled (or expired) it between our read and our update
            return self._unclaimable(tx, store.finishing(tx, row.id, row.launcher).launch, now)
        self._audit(
            tx,
            LAUNCHER,
            "launch.measure",
            "refused" if reason else "released",
            reason=reason,
            workload=row.workload,
            launch=row.id,
            detail=detail,
            launcher=row.launcher,
        )
        return outcome

    def _unclaimable(self, tx: db.Tx, row: store.LaunchRow, now: float) -> LaunchRefusedError:
        """Why a launch cannot be claimed (expired, or already used), audited."""
        late = row.state == store.AWAITING and row.expires_at <= now
        if late:
            store.settle_launch(tx, row.id, store.EXPIRED, "expired", now, self.settings.instance)
        if late or row.state == store.EXPIRED:
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
            launcher=row.launcher,
        )
        return exc

    def _decide(
        self,
        row: store.LaunchRow,
        workload: store.WorkloadRow,
        sealed: Mapping[str, bytes],
        report: LaunchSecurityInfo,
        configuration: LaunchConfiguration | None,
    ) -> Released:
        """The owner's one decision (:mod:`sevlaunch.owner.decision`), then the secrets."""
        if row.sealed_keys is None:  # only a settled launch has none, and it never gets here
            raise LaunchRefusedError("replay", f"launch {row.id} holds no keys any more")
        keys = TransportKeys.from_tk(self.sealer.open(row.sealed_keys, launch_context(row.id)))
        registration = Registration(
            policy=row.policy,
            digests=tuple(bytes.fromhex(d) for d in workload.digests),
            min_api=(workload.min_api_major, workload.min_api_minor),
            min_build=workload.min_build,
            workload=f"workload {workload.name!r}",
        )
        attest.decide(report, registration, keys, configuration)
        if not sealed:
            return Released(row.id, None, None)
        values = {
            uuid.UUID(g): self.sealer.open(s, secret_context(row.workload, g))
            for g, s in sealed.items()
        }
        header, payload = attest.build_secret(keys, report, values, self.random)
        return Released(row.id, header, payload)


def _missing(what: str) -> BrokerError:
    """A decision that read the database still lacked something: a bug, said plainly."""
    return BrokerError("internal", f"{what} was decided without the rows it needs")


def _report(report: LaunchSecurityInfo) -> dict[str, Any]:
    """What step 11 was given, for the audit log: the measurement and the firmware's words."""
    return {
        "measurement": report.measurement_b64,
        "api": f"{report.api_major}.{report.api_minor}",
        "build": report.build_id,
        "policy": report.policy,
    }


def _refusal(exc: LaunchRefusedError | LimitExceededError) -> dict[str, Any]:
    """A refusal's words for the audit log: the message and, for a mismatch, the diagnosis."""
    detail: dict[str, Any] = {"message": str(exc)}
    if isinstance(exc, LaunchRefusedError) and exc.diagnosis:
        detail["diagnosis"] = exc.diagnosis
    if isinstance(exc, LimitExceededError):
        detail["retry-after"] = exc.retry_after
    return detail


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
