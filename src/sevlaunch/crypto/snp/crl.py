"""AMD's product CRL (``/vcek/v1/<Product>/crl``, ``/vlek/v1/…``), signed by the ARK with
RSA-PSS SHA-384 (sev-snp.md §6.4). The check is the CRL's signature and freshness at ``at``,
then whether any serial of the chain's intermediates is listed."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from sevlaunch.crypto.snp.certs import SnpCert
from sevlaunch.crypto.snp.chain import PSS
from sevlaunch.errors import ChainError, FormatError


@dataclass(frozen=True)
class VerifiedCrl:
    issuer: str
    last_update: datetime.datetime
    next_update: datetime.datetime | None
    revoked: frozenset[int]

    def is_revoked(self, cert: SnpCert) -> bool:
        return cert.serial in self.revoked


def load_crl(data: bytes) -> x509.CertificateRevocationList:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise FormatError("AMD CRL", "der", f"not an X.509 CRL: {exc}") from exc


def verify_crl(data: bytes, ark: SnpCert, *, at: datetime.datetime) -> VerifiedCrl:
    """Raise ChainError unless the CRL is the ARK's, signed by it, and current at ``at``."""
    crl = load_crl(data)
    link = f"{ark.common_name} -> CRL"
    if crl.issuer.public_bytes() != ark.subject:
        raise ChainError(link, f"the CRL is issued by {crl.issuer.rfc4514_string()!r}")
    key = ark.public_key
    if not isinstance(key, rsa.RSAPublicKey):
        raise ChainError(link, "the ARK's key is not RSA")
    if not isinstance(crl.signature_hash_algorithm, hashes.SHA384):
        raise ChainError(link, "the CRL is not signed with SHA-384")
    try:
        key.verify(crl.signature, crl.tbs_certlist_bytes, PSS, hashes.SHA384())
    except InvalidSignature as exc:
        raise ChainError(link, "the RSA-PSS SHA-384 signature does not verify") from exc
    last, nxt = crl.last_update_utc, crl.next_update_utc
    if at < last:
        raise ChainError(link, f"issued {last:%Y-%m-%d}, after the verification time")
    if nxt is not None and at > nxt:
        raise ChainError(link, f"stale: its nextUpdate {nxt:%Y-%m-%d} has passed; fetch it again")
    return VerifiedCrl(ark.common_name, last, nxt, frozenset(r.serial_number for r in crl))
