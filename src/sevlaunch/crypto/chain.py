"""Certificate chain verification: platform (PDH up to the CEK and OCA) and AMD (CEK up to ARK).

The rules (firmware-API doc §3): ARK self-signed and trusted; ASK signed by the ARK; CEK
signed by the ASK; OCA self-signed; PEK signed by the OCA and by the CEK, in either slot;
PDH signed by the PEK. A child is signed by a parent when one of its slots names the parent's
usage and algorithm and verifies over the child's signed bytes, with the digest the parent's
algorithm names. Every check raises :class:`~sevlaunch.errors.ChainError` naming the link.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sevlaunch.crypto import ecc, rsa
from sevlaunch.crypto.truststore import TrustRoot, TrustStore
from sevlaunch.errors import ChainError, CryptoError, MissingCekSignatureError, VerificationError
from sevlaunch.formats.amdcert import AmdCert
from sevlaunch.formats.chain import CaChain, PlatformChain
from sevlaunch.formats.sevcert import Algorithm, EccPublicKey, SevCert, Usage


@dataclass(frozen=True)
class Link:
    """One verified link: ``signer`` signed ``subject`` with ``method``."""

    signer: str
    subject: str
    method: str

    def __str__(self) -> str:
        return f"{self.signer} -> {self.subject} ({self.method})"


#: The verifier's capability: only this module holds it, so only its verifiers make the proofs.
_PROOF = object()


class _Proof:
    """A frozen value only this module's verifiers can make (no public constructor, no
    ``dataclasses.replace``): holding one means the verification ran, in this process."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()

    def __init__(self, proof: object, **values: object) -> None:
        if proof is not _PROOF:
            raise VerificationError(
                f"a {type(self).__name__} is made only by sevlaunch.crypto.chain's verifiers: "
                "verify the chain instead of building the proof"
            )
        for name in self._fields:
            object.__setattr__(self, name, values[name])

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen")

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, n) for n in self._fields)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in self._fields)})"
        )


class VerifiedCa(_Proof):
    """An AMD CA (ASK and ARK) proven to end in a trusted root (made by :func:`verify_ca`)."""

    __slots__ = ("ark", "ask", "links", "root")
    _fields = ("ask", "ark", "root", "links")
    ask: AmdCert
    ark: AmdCert
    root: TrustRoot
    links: tuple[Link, ...]


class VerifiedPlatform(_Proof):
    """A platform chain proven from the PDH to a trusted ARK; ``chain.cek`` is the signed CEK
    (made by :func:`verify_platform` only)."""

    __slots__ = ("ca", "chain", "links")
    _fields = ("chain", "ca", "links")
    chain: PlatformChain
    ca: VerifiedCa
    links: tuple[Link, ...]

    @property
    def pdh(self) -> SevCert:
        return self.chain.pdh


def ask_algorithm(ask: AmdCert) -> Algorithm:
    """The algorithm code a CEK's slot uses for an ASK of this key size."""
    return Algorithm.RSA_SHA256 if ask.modulus_size == 2048 else Algorithm.RSA_SHA384


def _pss_method(cert: AmdCert) -> str:
    return f"RSA-{cert.modulus_size} PSS {cert.hash_name.upper()}"


def _check_amd_header(link: str, signer: AmdCert, subject: AmdCert, key_usage: Usage) -> None:
    """The unsigned checks of an AMD link: the subject's usage and its certifying id."""
    if subject.key_usage is not key_usage:
        raise ChainError(
            link, f"expected key usage {key_usage.name}, found {subject.key_usage.name}"
        )
    if subject.certifying_id != signer.key_id:
        why = (
            "a root must certify itself"
            if subject is signer
            else "the certificates belong to different generations"
        )
        raise ChainError(
            link,
            f"certifying id {subject.certifying_id.hex()} is not the signer's key id "
            f"{signer.key_id.hex()}: {why}",
        )


def _verify_amd(link: str, signer: AmdCert, subject: AmdCert, key_usage: Usage) -> Link:
    _check_amd_header(link, signer, subject, key_usage)
    if subject.signature is None:
        raise ChainError(link, "the certificate has no signature")
    try:
        key = rsa.public_key(signer.modulus, signer.pub_exp)
        rsa.verify_pss(key, subject.signature, subject.signed_bytes(), signer.hash_name)
    except CryptoError as exc:
        raise ChainError(link, str(exc)) from exc
    signer_name, subject_name = link.split(" -> ")
    return Link(signer_name, subject_name, _pss_method(signer))


def verify_ca(ca: CaChain, trust: TrustStore) -> VerifiedCa:
    """Verify ASK ‖ ARK: the ARK is a trusted root, self-signed, and signed the ASK.

    AMD publishes the Naples ARK without its signature; since roots are pinned by their public
    key, such an ARK is accepted when it is a pinned AMD root, and the link says so.
    """
    root = trust.identify(ca.ark)
    links = []
    if ca.ark.signature is None:
        if not root.amd:
            raise ChainError("ARK -> ARK", "the ARK has no self-signature")
        _check_amd_header("ARK -> ARK", ca.ark, ca.ark, Usage.ARK)
        links.append(
            Link("pin", "ARK", f"AMD {root.name} root pinned by key; AMD publishes it unsigned")
        )
    else:
        links.append(_verify_amd("ARK -> ARK", ca.ark, ca.ark, Usage.ARK))
    links.append(_verify_amd("ARK -> ASK", ca.ark, ca.ask, Usage.ASK))
    return VerifiedCa(_PROOF, ask=ca.ask, ark=ca.ark, root=root, links=tuple(links))


def _slot_for(subject: SevCert, usage: Usage, algorithm: Algorithm) -> int | None:
    for index, sig in enumerate(subject.signatures, start=1):
        if sig.usage is usage and sig.algorithm is algorithm:
            return index
    return None


def _verify_sev(signer: SevCert, subject: SevCert, signer_name: str, subject_name: str) -> Link:
    link = f"{signer_name} -> {subject_name}"
    slot = _slot_for(subject, signer.usage, signer.algorithm)
    if slot is None:
        raise ChainError(
            link,
            f"no signature slot names the signer (usage {signer.usage.name} {int(signer.usage):#x}, "
            f"algorithm {signer.algorithm.name} {int(signer.algorithm):#x}); slots hold "
            + ", ".join(f"{s.usage.name}/{s.algorithm.name}" for s in subject.signatures),
        )
    if not isinstance(signer.public_key, EccPublicKey):
        raise ChainError(link, f"{signer_name} key is {signer.algorithm.name}, expected ECDSA")
    try:
        ecc.verify(
            signer.public_key,
            subject.signatures[slot - 1],
            subject.signed_bytes(),
            signer.algorithm.hash_name,
        )
    except CryptoError as exc:
        raise ChainError(link, f"slot {slot}: {exc}") from exc
    method = (
        f"ECDSA {signer.public_key.curve.name} {signer.algorithm.hash_name.upper()}, slot {slot}"
    )
    return Link(signer_name, subject_name, method)


def verify_cek(cek: SevCert, ask: AmdCert) -> Link:
    """The ASK's RSA-PSS signature on the CEK."""
    link = "ASK -> CEK"
    if cek.usage is not Usage.CEK:
        raise ChainError(link, f"expected a CEK (usage 0x1004), found {cek.usage.name}")
    algorithm = ask_algorithm(ask)
    slot = _slot_for(cek, Usage.ASK, algorithm)
    if slot is None:
        if all(s.usage is not Usage.ASK for s in cek.signatures):
            raise MissingCekSignatureError(link)
        found = ", ".join(f"{s.usage.name}/{s.algorithm.name}" for s in cek.signatures)
        raise ChainError(
            link,
            f"the CEK's ASK signature uses another algorithm than this ASK ({algorithm.name}); "
            f"slots hold {found}: is the CA file of the platform's generation?",
        )
    try:
        key = rsa.public_key(ask.modulus, ask.pub_exp)
        rsa.verify_pss(key, cek.signatures[slot - 1].rsa_s, cek.signed_bytes(), ask.hash_name)
    except CryptoError as exc:
        raise ChainError(
            link, f"slot {slot}: {exc}: the CEK was not signed by this ASK (wrong generation?)"
        ) from exc
    return Link("ASK", "CEK", f"{_pss_method(ask)}, slot {slot}")


def verify_platform_certs(chain: PlatformChain) -> tuple[Link, ...]:
    """The platform-owned links: OCA self-signed, PEK by OCA and CEK, PDH by PEK."""
    return (
        _verify_sev(chain.oca, chain.oca, "OCA", "OCA"),
        _verify_sev(chain.oca, chain.pek, "OCA", "PEK"),
        _verify_sev(chain.cek, chain.pek, "CEK", "PEK"),
        _verify_sev(chain.pek, chain.pdh, "PEK", "PDH"),
    )


def verify_platform(
    chain: PlatformChain,
    trust: TrustStore,
    *,
    ca: CaChain | None = None,
    cek: SevCert | None = None,
) -> VerifiedPlatform:
    """Prove a platform's PDH back to a trusted ARK.

    ``ca`` is AMD's ASK ‖ ARK when the chain file does not carry it; ``cek`` replaces the
    chain's CEK with the AMD-signed copy from AMD's key server (its public key must match).
    """
    ca = ca or chain.ca
    if ca is None:
        raise VerificationError(
            "the chain has no ASK and ARK: pass AMD's CA file with --ca FILE (ask_ark_<gen>.cert) "
            "or export the chain with --full"
        )
    if cek is not None:
        if cek.public_key != chain.cek.public_key:
            raise ChainError(
                "CEK", "the CEK given separately has another public key than the chain's CEK"
            )
        chain = replace(chain, cek=cek)
    verified_ca = verify_ca(ca, trust)
    cek_link = verify_cek(chain.cek, verified_ca.ask)
    links = (*verified_ca.links, cek_link, *verify_platform_certs(chain))
    return VerifiedPlatform(_PROOF, chain=replace(chain, ca=ca), ca=verified_ca, links=links)
