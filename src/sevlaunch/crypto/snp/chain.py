"""AMD's SNP certificate chain: ARK (self-signed) → ASK → VCEK, or ARK → ASVK → VLEK
(sev-snp.md §6.1). Every link is RSASSA-PSS with SHA-384, MGF1-SHA-384 and a 48-byte salt;
the ARK must be one of AMD's, pinned by the SHA-256 of its DER (or a root the caller names).

Time is a parameter: certificates are checked for validity at ``at``, never at "now".
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import SignatureAlgorithmOID

from sevlaunch.crypto.snp.certs import AmdExtensions, SnpCert, _tlv
from sevlaunch.errors import ChainError, UntrustedRootError
from sevlaunch.formats.snp.tcb import Generation

PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)

#: SHA-256 of AMD's ARK certificates (DER), identical in virtee/sev, go-sev-guest, trustee
#: and KDS's cert_chain; the ARK signs both the VCEK chain (ASK) and the VLEK chain (ASVK).
AMD_ARKS: Mapping[str, Generation] = {
    "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd": Generation.MILAN,
    "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1": Generation.GENOA,
    "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a": Generation.TURIN,
}
#: AMD's intermediates as published (informational: they are verified by signature).
AMD_INTERMEDIATES: Mapping[str, str] = {
    "67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b": "SEV-Milan",
    "5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521": "SEV-Genoa",
    "5b77ef5fe7a7a004fd9032668fba9d0fda22f88c4442069a479636a6ae3b3185": "SEV-Turin",
    "c5e081f59b7efab1fe2f8b505e159704e72f29cab7ef7cf628a05a42439082f5": "SEV-VLEK-Milan",
    "197e610743a917d6b9bb982a5a9226ccc0a15b611be0619e626aca9151457372": "SEV-VLEK-Genoa",
    "104e10a8bd060a3c20a434261a57d0588fd65a88915b4f65b08bdecaf8df1a3c": "SEV-VLEK-Turin",
}


class SignerKind(enum.Enum):
    VCEK = "VCEK"
    VLEK = "VLEK"

    def intermediate_cn(self, product: Generation) -> str:
        return f"SEV-{product.value}" if self is SignerKind.VCEK else f"SEV-VLEK-{product.value}"

    @property
    def leaf_cn(self) -> str:
        return f"SEV-{self.value}"

    @property
    def intermediate(self) -> str:
        return "ASK" if self is SignerKind.VCEK else "ASVK"


@dataclass(frozen=True)
class VerifiedChain:
    product: Generation
    kind: SignerKind
    ark: SnpCert
    ask: SnpCert  # the ASK, or the ASVK for a VLEK chain
    leaf: SnpCert
    extensions: AmdExtensions
    leaf_key: ec.EllipticCurvePublicKey  # the leaf's key, proven ECDSA P-384 by verify_chain


#: The AlgorithmIdentifiers AMD's certificates carry: RSASSA-PSS with SHA-384, MGF1-SHA-384,
#: salt 48, with the trailer field 1 written out (ARK, ASK, ASVK, most VCEKs) or left to its
#: default (Turin VCEKs). Any other encoding is checked through pyca's parsed fields instead.
_PSS_PARAMS = (
    "a00f300d06096086480165030402020500a11c301a06092a864886f70d010108300d0609608648016503040202"
    "0500a203020130"
)
AMD_PSS_ALGORITHMS = frozenset(
    (
        bytes.fromhex("304606092a864886f70d01010a3039" + _PSS_PARAMS + "a303020101"),
        bytes.fromhex("304106092a864886f70d01010a3034" + _PSS_PARAMS),
    )
)


def _is_pss_sha384(subject: SnpCert) -> bool:
    if subject.fields.signature_algorithm in AMD_PSS_ALGORITHMS:
        return True  # byte-equal to AMD's: no need to build pyca's objects
    cert = subject.cert
    return cert.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS and isinstance(
        cert.signature_hash_algorithm, hashes.SHA384
    )


def _outer_algorithm_is_signed(subject: SnpCert) -> bool:
    """Nothing outside the signature may vary: the unsigned AlgorithmIdentifier after the TBS
    equals the signed one inside it, and the signature BIT STRING has no unused bits (pyca
    ignores a non-zero count whose bits happen to be zero). Else other bytes would verify
    as the same certificate under another fingerprint."""
    der, tbs, algorithm = subject.der, subject.tbs, subject.fields.signature_algorithm
    at = der.find(tbs)
    if at < 0 or not der.startswith(algorithm, at + len(tbs)):
        return False
    tag, start, end = _tlv(der, at + len(tbs) + len(algorithm))
    return tag == 0x03 and start < end and der[start] == 0


def verify_pss_link(issuer: SnpCert, subject: SnpCert, link: str) -> None:
    """``subject`` is signed by ``issuer`` with AMD's PSS parameters; raises ChainError."""
    if not _is_pss_sha384(subject):
        raise ChainError(link, "not signed with RSASSA-PSS SHA-384 as AMD signs")
    if not _outer_algorithm_is_signed(subject):
        raise ChainError(
            link,
            "the certificate's signatureAlgorithm differs from the one its TBS signs "
            "(RFC 5280 §4.1.1.2), or its signature has unused bits: altered outside the "
            "signature",
        )
    if subject.issuer != issuer.subject:
        raise ChainError(link, f"issued by {subject.issuer_name!r}, not {issuer.common_name!r}")
    key = issuer.public_key
    if not isinstance(key, rsa.RSAPublicKey):
        raise ChainError(link, "the issuer's key is not RSA")
    try:
        key.verify(subject.cert.signature, subject.tbs, PSS, hashes.SHA384())
    except InvalidSignature as exc:
        raise ChainError(link, "the RSA-PSS SHA-384 signature does not verify") from exc


def check_validity(cert: SnpCert, at: datetime.datetime, name: str) -> None:
    start, end = cert.fields.not_before, cert.fields.not_after
    if not start <= at <= end:
        raise ChainError(
            name,
            f"valid from {start:%Y-%m-%d} to {end:%Y-%m-%d}, not at {at:%Y-%m-%d %H:%M}Z "
            "(pin the verification time for old reports)",
        )


def verify_ark(
    ark: SnpCert, at: datetime.datetime, trusted_arks: Mapping[str, Generation] = AMD_ARKS
) -> Generation:
    """The product of a trusted ARK; raises UntrustedRootError or ChainError."""
    product = trusted_arks.get(ark.fingerprint)
    if product is None:
        raise UntrustedRootError(
            f"the ARK {ark.common_name!r} (SHA-256 {ark.fingerprint[:16]}…) is not one of "
            "AMD's pinned Milan, Genoa or Turin roots"
        )
    if ark.common_name != f"ARK-{product.value}":
        raise ChainError("ARK", f"CN is {ark.common_name!r}, expected 'ARK-{product.value}'")
    if ark.serial_zero:
        raise ChainError("ARK", "serial number 0 is tolerated only on a VCEK or VLEK")
    verify_pss_link(ark, ark, "ARK -> ARK")
    check_validity(ark, at, "ARK")
    return product


def verify_chain(
    leaf: SnpCert,
    ask: SnpCert,
    ark: SnpCert,
    *,
    at: datetime.datetime,
    trusted_arks: Mapping[str, Generation] = AMD_ARKS,
) -> VerifiedChain:
    """Verify every link; the leaf's CN (SEV-VCEK / SEV-VLEK) decides which chain it is."""
    product = verify_ark(ark, at, trusted_arks)
    kind = {"SEV-VCEK": SignerKind.VCEK, "SEV-VLEK": SignerKind.VLEK}.get(leaf.common_name)
    if kind is None:
        raise ChainError("leaf", f"CN is {leaf.common_name!r}, expected SEV-VCEK or SEV-VLEK")
    mid = kind.intermediate
    verify_intermediate(ark, ask, kind, product, at)
    verify_pss_link(ask, leaf, f"{mid} -> {kind.value}")
    check_validity(leaf, at, kind.value)
    key = leaf.public_key
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise ChainError(kind.value, "the key is not ECDSA P-384")
    return VerifiedChain(product, kind, ark, ask, leaf, leaf.extensions, key)


def verify_intermediate(
    ark: SnpCert, ask: SnpCert, kind: SignerKind, product: Generation, at: datetime.datetime
) -> None:
    """The ASK (VCEK chain) or ASVK (VLEK chain) is the ARK's, by name and signature."""
    mid, want = kind.intermediate, kind.intermediate_cn(product)
    if ask.common_name != want:
        raise ChainError(mid, f"CN is {ask.common_name!r}, expected {want!r} for this ARK")
    if ask.serial_zero:
        raise ChainError(mid, "serial number 0 is tolerated only on a VCEK or VLEK")
    verify_pss_link(ark, ask, f"ARK -> {mid}")
    check_validity(ask, at, mid)


@dataclass(frozen=True)
class VerifiedCa:
    """A KDS ``cert_chain`` that ends in a pinned ARK: the product, its ARK and ASK/ASVK."""

    product: Generation
    kind: SignerKind
    ark: SnpCert
    ask: SnpCert


def verify_ca_bundle(
    certs: tuple[SnpCert, ...],
    kind: SignerKind,
    *,
    at: datetime.datetime,
    trusted_arks: Mapping[str, Generation] = AMD_ARKS,
) -> VerifiedCa:
    """Verify a CA bundle (ASK or ASVK, and the ARK) without a leaf."""
    ark, mids = split_ca(certs)
    product = verify_ark(ark, at, trusted_arks)
    ask = mids.get(kind.intermediate_cn(product))
    if ask is None:
        raise ChainError(kind.intermediate, f"the bundle has no {kind.intermediate_cn(product)}")
    verify_intermediate(ark, ask, kind, product, at)
    return VerifiedCa(product, kind, ark, ask)


def split_ca(certs: tuple[SnpCert, ...]) -> tuple[SnpCert, dict[str, SnpCert]]:
    """From a CA bundle (KDS ``cert_chain``, trustee's ASK+ARK+ASVK): the ARK and the
    intermediates by CN. Raises ChainError if there is no single ARK."""
    arks = [c for c in certs if c.common_name.startswith("ARK-")]
    if len(arks) != 1:
        raise ChainError("CA", f"expected one ARK in the CA bundle, found {len(arks)}")
    return arks[0], {c.common_name: c for c in certs if c is not arks[0]}
