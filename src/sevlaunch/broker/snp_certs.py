"""Where the broker gets an SNP report's certificates: the VCEK for its chip and REPORTED_TCB,
the generation's ``cert_chain`` and CRL, from the configured key server (AMD's KDS, a mirror,
or the emulated one of ``sevlaunch platform kds``) through :class:`~sevlaunch.kds.snp.
SnpKdsClient`, which verifies before it caches on disk. This process also keeps the bytes in
memory; the verifier checks them again on every attestation, so a copy proves nothing alone.

A VLEK is never on KDS: it comes in the guest's certificate table. A CRL is fetched again
once it is ``crl_ttl`` seconds old, so a revocation reaches the broker within that time.
A key server that does not answer is :class:`~sevlaunch.errors.ServiceUnavailableError`
(try again later); one that answers that the VCEK does not exist, or with a certificate that
does not verify, is a refusal.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sevlaunch.crypto.snp.chain import SignerKind
from sevlaunch.errors import (
    DownloadError,
    LaunchRefusedError,
    ServiceUnavailableError,
    SevlaunchError,
)
from sevlaunch.formats.snp.report import AttestationReport
from sevlaunch.formats.snp.tcb import Generation
from sevlaunch.kds.snp import SnpKdsClient
from sevlaunch.owner.snp.decision import SnpReason, refuse

log = logging.getLogger("sevlaunch.broker")


@dataclass(frozen=True)
class Certificates:
    """What the verifier gets besides the report: ``leaf`` None means the certificate table."""

    leaf: bytes | None = field(repr=False)
    ca: bytes = field(repr=False)
    crl: bytes | None = field(repr=False)


def _unavailable(exc: DownloadError) -> bool:
    """No answer, throttled or a server error; not 'no such certificate' nor 'did not
    verify' (the client raises the latter from the verification error)."""
    if isinstance(exc.__cause__, SevlaunchError):
        return False
    return exc.status is None or exc.status == 429 or exc.status >= 500


class SnpCertificates:
    """Thread-safe; one per broker process."""

    def __init__(
        self,
        kds_url: str | None,
        cache_dir: Path | None,
        *,
        crl_ttl: float,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
    ) -> None:
        self.kds_url, self.cache_dir, self.crl_ttl = kds_url, cache_dir, crl_ttl
        self.clock, self.monotonic = clock, monotonic
        self._lock = threading.Lock()
        self._vceks: dict[tuple[str, bytes, int], bytes] = {}
        self._cas: dict[tuple[str, SignerKind], bytes] = {}
        self._crls: dict[tuple[str, SignerKind], tuple[float, bytes]] = {}

    def _client(self, trusted: Mapping[str, Generation]) -> SnpKdsClient:
        def now() -> datetime.datetime:
            return datetime.datetime.fromtimestamp(self.clock(), datetime.UTC)

        return SnpKdsClient(
            self.kds_url, cache_dir=self.cache_dir, clock=now, trusted_arks=trusted, retries=1
        )

    def for_report(
        self,
        report: AttestationReport,
        trusted: Mapping[str, Generation],
        has_table: bool,
    ) -> Certificates:
        """The certificates for ``report``; raises a refusal or ServiceUnavailableError.

        A version 2 report does not say its generation (no CPUID fields): each generation
        with 64-byte chip ids among the trusted roots is tried in turn, as KDS has the chip's
        VCEK under its own product only."""
        if report.generation is not None:
            return self._for_product(report, report.generation, trusted, has_table)
        refusal: LaunchRefusedError | None = None
        for product in _v2_products(trusted):
            try:
                return self._for_product(report, product, trusted, has_table)
            except LaunchRefusedError as exc:
                refusal = exc
        raise refusal or refuse(
            SnpReason.UNTRUSTED_SIGNER, "no trusted root is of a generation with version 2 reports"
        )

    def _for_product(
        self,
        report: AttestationReport,
        product: Generation,
        trusted: Mapping[str, Generation],
        has_table: bool,
    ) -> Certificates:
        kind = SignerKind.VLEK if report.key.signing_key == 1 else SignerKind.VCEK
        client = self._client(trusted)
        try:
            ca = self._ca(client, product, kind)
            leaf = None
            if kind is SignerKind.VCEK:
                try:
                    leaf = self._vcek(client, product, report)
                except SevlaunchError:
                    if not has_table:  # else the table's VCEK, which the verifier checks
                        raise
            crl = self._crl(client, product, kind)
        except DownloadError as exc:
            if _unavailable(exc):
                log.warning("SNP key server unavailable: %s", exc)
                raise ServiceUnavailableError(
                    "kds-unavailable", f"the key server did not answer: {exc}"
                ) from exc
            raise refuse(SnpReason.UNTRUSTED_SIGNER, str(exc)) from exc
        except SevlaunchError as exc:
            raise refuse(SnpReason.UNTRUSTED_SIGNER, str(exc)) from exc
        return Certificates(leaf, ca, crl)

    def _ca(self, client: SnpKdsClient, product: Generation, kind: SignerKind) -> bytes:
        key = (product.value, kind)
        with self._lock:
            found = self._cas.get(key)
        if found is None:
            found = client.ca(product, kind).data
            with self._lock:
                self._cas[key] = found
        return found

    def _vcek(self, client: SnpKdsClient, product: Generation, report: AttestationReport) -> bytes:
        key = (product.value, report.chip_id, report.reported_tcb)
        with self._lock:
            found = self._vceks.get(key)
        if found is None:
            found = client.vcek_for_report(report, product).data
            with self._lock:
                self._vceks[key] = found
        return found

    def _crl(self, client: SnpKdsClient, product: Generation, kind: SignerKind) -> bytes:
        key = (product.value, kind)
        now = self.monotonic()
        with self._lock:
            cached = self._crls.get(key)
        if cached is not None and now - cached[0] < self.crl_ttl:
            return cached[1]
        data = client.fetch_crl(product, kind).data
        with self._lock:
            self._crls[key] = (now, data)
        return data

    def forget(self) -> None:
        """Drop the in-memory copies (the roots changed)."""
        with self._lock:
            self._vceks.clear()
            self._cas.clear()
            self._crls.clear()


def _v2_products(trusted: Mapping[str, Generation]) -> list[Generation]:
    """The generations that may have made a version 2 report (Turin's are version 3 or
    later), in the order their roots are trusted."""
    return [p for p in dict.fromkeys(trusted.values()) if p.hwid_size == 64]
