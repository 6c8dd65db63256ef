"""SNP post-attestation (sev-snp.md §1.2): a guest asks for a nonce, presents the report it
asked its firmware for, and gets its workload's secrets sealed to the key its report binds.

The guest holds no token; the report is its credential. So both calls are rate-limited per
client address (:class:`PeerLimits`), a workload has at most ``max_open_nonces`` nonces
outstanding, and the certificates come from the key server, never from the guest alone (a
certificate table it sends is a fallback the verifier checks to a pinned ARK like any other).

An attestation reads the nonce, its workload and the pinned roots, runs the whole verifier
outside any transaction, then spends the nonce and writes the decision, with every check's
verdict, in one transaction: a nonce spent is a decision audited, and of two attestations
presenting one nonce (on any instance) one at most gets the secrets.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import logging
import math
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from sevlaunch.broker import db
from sevlaunch.broker import snp_store as snp
from sevlaunch.broker.seal import Sealer
from sevlaunch.broker.snp_admin import SnpSettings, snp_secret_context
from sevlaunch.broker.snp_certs import Certificates, SnpCertificates
from sevlaunch.crypto.snp import release
from sevlaunch.crypto.snp.chain import AMD_ARKS
from sevlaunch.errors import CryptoError, LaunchRefusedError, LimitExceededError, SevlaunchError
from sevlaunch.formats.secret import guid_alias
from sevlaunch.formats.snp.report import AttestationReport
from sevlaunch.formats.snp.tcb import Generation
from sevlaunch.owner import secret as owner_secret
from sevlaunch.owner.snp.decision import SnpReason, decide, refuse
from sevlaunch.owner.snp.expectations import SnpExpectations
from sevlaunch.owner.snp.verdicts import Verdicts
from sevlaunch.owner.snp.verifier import SnpEvidence as VerifierEvidence
from sevlaunch.owner.snp.verifier import check_report
from sevlaunch.protocol.snp import SnpChallenge, SnpEvidence, SnpRelease

if TYPE_CHECKING:
    from sevlaunch.broker.launches import Settings

log = logging.getLogger("sevlaunch.broker")
GUEST = "guest"
NONCE_SIZE = 32
_MAX_PEERS = 10_000


class PeerLimits:
    """A token bucket per client address (``rate`` a minute, ``burst`` at once), in this
    process; full buckets are forgotten when too many addresses were seen."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate, self.burst, self.clock = rate / 60.0, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def admit(self, peer: str) -> None:
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(peer, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens < 1.0:
                self._buckets[peer] = (tokens, now)
                wait = math.ceil((1.0 - tokens) / self.rate) if self.rate else 60
                raise LimitExceededError(
                    "rate-limited",
                    f"{peer} is over the SNP attestation rate; try again in {wait} s",
                    float(max(1, wait)),
                )
            self._buckets[peer] = (tokens - 1.0, now)
            if len(self._buckets) > _MAX_PEERS:
                self._buckets = {
                    p: (t, a)
                    for p, (t, a) in self._buckets.items()
                    if t + (now - a) * self.rate < self.burst
                }


def nonce_hash(nonce: bytes) -> str:
    return hashlib.sha256(nonce).hexdigest()


class SnpAttestations:
    """Challenges and attestations (the Broker sets these)."""

    engine: sa.Engine
    sealer: Sealer
    clock: Callable[[], float]
    random: Callable[[int], bytes]
    snp_settings: SnpSettings
    snp_certs: SnpCertificates
    snp_peers: PeerLimits
    _audit: Callable[..., None]
    settings: Settings

    def snp_challenge(self, workload: str, peer: str = "local") -> SnpChallenge:
        """A fresh single-use nonce for one attestation of ``workload``."""
        self.snp_peers.admit(peer)
        settings = self.snp_settings
        nonce = self.random(NONCE_SIZE)
        attestation = uuid.UUID(bytes=self.random(16), version=4).hex
        now = self.clock()
        row = snp.NonceRow(
            attestation,
            nonce_hash(nonce),
            workload,
            now,
            now + settings.nonce_ttl,
            None,
            self.settings.instance,
        )
        with db.writing(self.engine) as conn:
            snp.get_workload(conn, workload)
            if snp.open_nonces(conn, workload, now) >= settings.max_open_nonces:
                raise LimitExceededError(
                    "too-many-nonces",
                    f"SNP workload {workload!r} has {settings.max_open_nonces} nonces "
                    "outstanding; try again when some are spent or expired",
                    max(1.0, min(settings.nonce_ttl, 60.0)),
                )
            snp.add_nonce(conn, row)
            detail = {"attestation": attestation, "expires": row.expires_at, "peer": peer}
            self._audit(conn, GUEST, "snp.challenge", "ok", workload=workload, detail=detail)
        return SnpChallenge(workload, nonce, row.expires_at)

    def snp_attest(self, evidence: SnpEvidence, peer: str = "local") -> SnpRelease:
        """Verify ``evidence`` and release the workload's secrets sealed to its key; every
        outcome but an unknown workload or an unavailable key server is audited."""
        self.snp_peers.admit(peer)
        now = self.clock()
        with db.lean_read(self.engine) as tx:
            stored = _expectations(snp.expectations_text(tx, evidence.workload))
            found = snp.nonce_by_hash(tx, nonce_hash(evidence.nonce))
            pinned = snp.pinned(tx)
        trusted = {**AMD_ARKS, **{fp: Generation(p) for fp, p in pinned.items()}}
        base: dict[str, Any] = {"peer": peer}
        if found is not None:
            base["attestation"] = found.id
        try:
            nonce = _usable(found, evidence.workload, now)
        except LaunchRefusedError as exc:
            self._snp_refused(evidence.workload, exc, base, spend=None)
            raise
        try:
            verdicts, report = self._snp_verify(evidence, stored, trusted, now)
        except LaunchRefusedError as exc:
            self._snp_refused(evidence.workload, exc, base, spend=nonce.id)
            raise
        detail = {**base, **_verdict_detail(verdicts, report)}
        return self._snp_settle(evidence, nonce, verdicts, detail)

    def expire_nonces(self) -> int:
        """Erase the nonces past their expiry (the sweeper's); a read first, so an idle sweep
        never takes SQLite's write lock."""
        now = self.clock()
        with db.reading(self.engine) as conn:
            if not snp.any_expired_nonce(conn, now):
                return 0
        with db.writing(self.engine) as conn:
            return snp.erase_expired_nonces(conn, now)

    # -- the steps -----------------------------------------------------------------------------

    def _snp_verify(
        self,
        evidence: SnpEvidence,
        stored: SnpExpectations,
        trusted: Mapping[str, Generation],
        now: float,
    ) -> tuple[Verdicts, AttestationReport | None]:
        try:
            release.load_public(evidence.tee_pubkey)
        except CryptoError as exc:
            raise refuse(SnpReason.BAD_KEY, f"the guest's key: {exc}") from exc
        expectations = dataclasses.replace(
            stored, report_data=release.report_data(evidence.nonce, evidence.tee_pubkey)
        )
        certs = Certificates(None, b"", None)
        try:
            report = AttestationReport.from_bytes(evidence.report)
        except SevlaunchError:
            report = None  # the verifier says why, as its parse check
        if report is not None:
            certs = self.snp_certs.for_report(report, trusted, evidence.cert_table is not None)
        at = datetime.datetime.fromtimestamp(now, datetime.UTC)
        given = VerifierEvidence(
            evidence.report, certs.leaf, certs.ca or None, certs.crl, evidence.cert_table
        )
        return check_report(given, expectations, at=at, trusted_arks=trusted), report

    def _snp_settle(
        self,
        evidence: SnpEvidence,
        nonce: snp.NonceRow,
        verdicts: Verdicts,
        detail: dict[str, Any],
    ) -> SnpRelease:
        refusal: LaunchRefusedError | None = None
        try:
            decide(verdicts, f"SNP workload {evidence.workload!r}")
        except LaunchRefusedError as exc:
            refusal = exc
        with db.lean_transaction(self.engine) as tx:
            if not snp.spend(tx, nonce.id, self.clock()):
                refusal = refuse(
                    SnpReason.REPLAY,
                    "the nonce was spent by another attestation, or expired, meanwhile",
                )
            sealed = snp.sealed_of(tx, evidence.workload) if refusal is None else {}
            if refusal is None and not sealed:
                refusal = refuse(
                    SnpReason.NO_SECRETS,
                    f"the report verifies, but SNP workload {evidence.workload!r} has no "
                    "secret to release: set one with 'sevlaunch broker snp secret'",
                )
            if refusal is not None:
                detail["message"] = str(refusal)
                self._audit_attest(tx, evidence.workload, refusal.reason, detail)
            else:
                detail["secrets"] = sorted(guid_alias(uuid.UUID(g)) for g in sealed)
                self._audit_attest(tx, evidence.workload, None, detail)
        if refusal is not None:  # raised once committed: the nonce stays spent, the refusal audited
            raise refusal
        plain = {
            uuid.UUID(g): self.sealer.open(s, snp_secret_context(evidence.workload, g))
            for g, s in sealed.items()
        }
        table = owner_secret.secret_table(sorted(plain.items())).to_bytes()
        envelope = release.seal_to(evidence.tee_pubkey, table, self.random)
        return SnpRelease(envelope.ephemeral, envelope.ciphertext, nonce.id)

    def _snp_refused(
        self,
        workload: str,
        exc: LaunchRefusedError,
        detail: dict[str, Any],
        *,
        spend: str | None,
    ) -> None:
        """Audit a refusal made before the verifier's verdicts (spending ``spend``)."""
        with db.lean_transaction(self.engine) as tx:
            if spend is not None:
                snp.spend(tx, spend, self.clock())
            self._audit_attest(tx, workload, exc.reason, {**detail, "message": str(exc)})

    def _audit_attest(
        self, tx: db.Tx, workload: str, reason: str | None, detail: dict[str, Any]
    ) -> None:
        outcome = "refused" if reason else "released"
        self._audit(
            tx, GUEST, "snp.attest", outcome, reason=reason, workload=workload, detail=detail
        )


@functools.lru_cache(maxsize=256)
def _expectations(text: str) -> SnpExpectations:
    """A stored workload's expectations, parsed once per distinct text (they are frozen)."""
    return SnpExpectations.from_json(text)


def _usable(found: snp.NonceRow | None, workload: str, now: float) -> snp.NonceRow:
    """The nonce's row if it may be spent now, else the refusal naming why not."""
    if found is None:
        raise refuse(
            SnpReason.UNKNOWN_NONCE,
            "this broker issued no such nonce (or it expired and was erased): ask for a "
            "challenge first",
        )
    if found.workload != workload:
        raise refuse(
            SnpReason.WRONG_WORKLOAD,
            f"the nonce was issued for another workload, not {workload!r}",
        )
    if found.used_at is not None:
        raise refuse(SnpReason.REPLAY, "the nonce was already spent by an attestation")
    if found.expires_at <= now:
        raise refuse(SnpReason.EXPIRED, "the nonce expired before the report arrived")
    return found


def _verdict_detail(verdicts: Verdicts, report: AttestationReport | None) -> dict[str, Any]:
    """The audit entry's ``checks`` list ({name, verdict, detail}, for the dashboard) and
    what identifies the guest: its measurement, chip and TCB."""
    detail: dict[str, Any] = {
        "checks": [
            {"name": v.check, "verdict": v.outcome.value, "detail": v.detail}
            for v in verdicts.verdicts
        ],
        "failed": [v.check for v in verdicts.failed],
        "verified-at": verdicts.at,
    }
    if verdicts.product:
        detail["product"] = verdicts.product
    if verdicts.signer:
        detail["signer"] = verdicts.signer
    if report is None:
        return detail
    detail["measurement"] = report.measurement.hex()
    detail["chip"] = report.chip_id[:8].hex()
    detail["policy"] = report.policy
    detail["reported-tcb"] = f"{report.reported_tcb:#018x}"
    return detail
