"""The broker's decisions: who may do what, when a launch gets a session and when a secret.

One :class:`Broker` per process over a shared database. Every decision is written to the
audit table in the same transaction as the state change it describes; log lines and audit
rows name launches, workloads and reasons, never keys or secret values.
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

from sevlaunch.broker import attest, store
from sevlaunch.broker.seal import Sealer, launch_context, secret_context
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
PLATFORM_MEMO_SIZE = 1024

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
    ) -> None:
        self.engine = engine
        self.settings = settings or Settings()
        self.sealer = Sealer(kek, random)
        self.clock = clock
        self.random = random
        self._platforms: dict[str, VerifiedPlatform] = {}

    # -- audit ---------------------------------------------------------------------------------

    def _audit(self, conn: sa.Connection, actor: str, action: str, outcome: str, **kw: Any) -> None:
        store.add_audit(
            conn,
            at=self.clock(),
            instance=self.settings.instance,
            actor=actor,
            action=action,
            outcome=outcome,
            **kw,
        )
        log.info(
            "%s %s: %s%s",
            actor,
            action,
            outcome,
            "".join(f" {k}={v}" for k, v in kw.items() if k != "detail" and v is not None),
        )

    def _refuse(self, actor: str, action: str, exc: LaunchRefusedError, **kw: Any) -> None:
        """Record a refusal in its own transaction (the caller's one is rolled back)."""
        with self.engine.begin() as conn:
            self._audit(conn, actor, action, "refused", reason=exc.reason, **kw)

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
        """Steps 4-5: verify the platform, make a session, keep TEK/TIK sealed."""
        action = "launch.start"
        try:
            with self.engine.connect() as conn:
                workload = store.get_workload(conn, workload_name, with_secrets=False)
                chosen = _choose_policy(workload, policy)
                fingerprint, platform, cached = self._verify_platform(conn, pdh, cert_chain, cek)
        except LaunchRefusedError as exc:
            self._refuse(LAUNCHER, action, exc, workload=workload_name)
            raise
        launch_id = uuid.UUID(bytes=self.random(16), version=4).hex
        made = attest.make_session(platform, chosen, self.random)
        root = platform.ca.root.name
        now = self.clock()
        row = store.LaunchRow(
            id=launch_id,
            workload=workload.name,
            policy=chosen,
            platform=fingerprint,
            sealed_keys=self.sealer.seal(made.keys.tek + made.keys.tik, launch_context(launch_id)),
            state=store.AWAITING,
            reason=None,
            created_at=now,
            expires_at=now + self.settings.launch_ttl,
            finished_at=None,
            created_by=self.settings.instance,
            finished_by=None,
        )
        with self.engine.begin() as conn:
            if not cached and self.settings.use_chain_cache:
                store.cache_root(conn, fingerprint, root, now)
            store.add_launch(conn, row)
            self._audit(
                conn,
                LAUNCHER,
                action,
                "ok",
                workload=workload.name,
                launch=launch_id,
                detail={
                    "policy": chosen,
                    "platform": fingerprint,
                    "root": root,
                    "chain-cache": "hit" if cached else "miss",
                },
            )
        return LaunchStarted(
            launch_id, made.godh.to_bytes(), made.session.to_bytes(), chosen, row.expires_at
        )

    def _verify_platform(
        self, conn: sa.Connection, pdh: bytes, cert_chain: bytes, cek: bytes | None
    ) -> tuple[str, VerifiedPlatform, bool]:
        """``(platform fingerprint, verified platform, from cache)``, or a refusal.

        The database says whether the fleet verified this chain (and still trusts its root);
        this process keeps the parsed result so a hit costs one query.
        """
        fingerprint = attest.platform_fingerprint(pdh, cert_chain, cek)
        cached = None
        if self.settings.use_chain_cache:
            oldest = self.clock() - self.settings.chain_cache_ttl
            cached = store.cached_root(conn, fingerprint, oldest)
            known = self._platforms.get(fingerprint)
            if cached is not None and known is not None and known.ca.root.name == cached:
                return fingerprint, known, True
        roots = [attest.Root(r.name, r.ark, r.ask) for r in store.list_roots(conn)]
        try:
            platform = next(
                (
                    p
                    for r in roots
                    if r.name == cached
                    and (p := attest.remembered_platform(pdh, cert_chain, cek, r)) is not None
                ),
                None,
            )
            hit = platform is not None
            if platform is None:
                platform = attest.verify_platform(pdh, cert_chain, cek, roots)
        except (VerificationError, FormatError) as exc:
            raise LaunchRefusedError("platform-not-verified", str(exc)) from None
        if self.settings.use_chain_cache:
            if len(self._platforms) >= PLATFORM_MEMO_SIZE:
                self._platforms.pop(next(iter(self._platforms)))
            self._platforms[fingerprint] = platform
        return fingerprint, platform, hit

    def launch(self, launch_id: str) -> store.LaunchRow:
        with self.engine.connect() as conn:
            return store.get_launch(conn, launch_id)

    def finish_launch(self, launch_id: str, report: MeasurementReport) -> Released:
        """Step 11: claim the launch once, check it, release the secrets or refuse."""
        now = self.clock()
        with self.engine.begin() as conn:
            claimed = store.claim_launch(conn, launch_id, now, self.settings.instance)
            if claimed:
                row = store.get_launch(conn, launch_id)
                workload = store.get_workload(conn, row.workload, with_secrets=False)
                sealed = store.sealed_secrets(conn, row.workload)
        if not claimed:
            self._not_claimable(launch_id, now)
        try:
            released = self._decide(row, workload, sealed, report)
        except LaunchRefusedError as exc:
            with self.engine.begin() as conn:
                store.finish_launch(conn, launch_id, store.REFUSED, exc.reason, self.clock())
                self._audit(
                    conn,
                    LAUNCHER,
                    "launch.measure",
                    "refused",
                    reason=exc.reason,
                    workload=row.workload,
                    launch=launch_id,
                    detail=_report(report),
                )
            raise
        with self.engine.begin() as conn:
            store.finish_launch(conn, launch_id, store.RELEASED, None, self.clock())
            self._audit(
                conn,
                LAUNCHER,
                "launch.measure",
                "released",
                workload=row.workload,
                launch=launch_id,
                detail={**_report(report), "secrets": len(sealed)},
            )
        return released

    def _not_claimable(self, launch_id: str, now: float) -> None:
        """Say why a launch cannot be claimed (unknown, expired, already used), and audit it."""
        with self.engine.begin() as conn:
            row = store.get_launch(conn, launch_id)
            if row.state == store.AWAITING and row.expires_at <= now:
                store.finish_launch(conn, launch_id, store.REFUSED, "expired", now)
                exc = LaunchRefusedError(
                    "expired",
                    f"launch {launch_id} expired at {row.expires_at:.0f}; start a new launch "
                    "(the guest must be destroyed and started again with a fresh session)",
                )
            else:
                exc = LaunchRefusedError(
                    "replay",
                    f"launch {launch_id} is single-use and was already {row.state}"
                    + (f" ({row.reason})" if row.reason else "")
                    + "; start a new launch",
                )
            self._audit(
                conn,
                LAUNCHER,
                "launch.measure",
                "refused",
                reason=exc.reason,
                workload=row.workload,
                launch=launch_id,
            )
        raise exc

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
