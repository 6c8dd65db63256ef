"""The broker's one door to the guest owner's cryptography.

Everything the broker needs from :mod:`sevlaunch.owner` and :mod:`sevlaunch.crypto` goes
through these few functions, so the service and API layers never touch key material directly
and a change in the owner toolkit touches only this module. Pure: randomness comes in as a
parameter.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from sevlaunch.crypto import chain as chains
from sevlaunch.crypto.chain import VerifiedPlatform, verify_ca
from sevlaunch.crypto.launch import TransportKeys
from sevlaunch.crypto.truststore import TrustStore, fingerprint
from sevlaunch.errors import (
    FormatError,
    SevlaunchError,
    UntrustedRootError,
    VerificationError,
)
from sevlaunch.formats import sevcert
from sevlaunch.formats.amdcert import AmdCert
from sevlaunch.formats.chain import CaChain, CertExport, PlatformChain
from sevlaunch.formats.sevcert import SevCert, Usage
from sevlaunch.owner import decision, secret, session
from sevlaunch.owner.decision import Registration
from sevlaunch.owner.session import LaunchSession
from sevlaunch.protocol import LaunchConfiguration, LaunchSecurityInfo

Random = Callable[[int], bytes]


@dataclass(frozen=True)
class Root:
    """A trust root as the broker stores it: the ARK and, from an AMD CA file, the ASK."""

    name: str
    ark: bytes
    ask: bytes | None = None


@dataclass(frozen=True)
class ParsedRoot:
    name: str
    fingerprint: str
    key_id: str
    amd: bool
    ark: bytes
    ask: bytes | None


def parse_root(data: bytes, name: str | None) -> ParsedRoot:
    """Accept an ARK alone or an AMD CA file (ASK ‖ ARK, whose ASK must be the ARK's)."""
    try:
        ca: CaChain | None = CaChain.from_bytes(data)
    except FormatError:
        ca = None
    ark = ca.ark if ca else AmdCert.from_bytes(data, allow_unsigned=True)
    if ark.key_usage is not Usage.ARK:
        raise FormatError(
            "trust root",
            "key_usage",
            f"expected an ARK (usage 0x0) or an ASK ‖ ARK file, got {ark.key_usage.name}",
            value=ark.key_usage,
        )
    amd = _amd_root_name(ark)
    store = TrustStore() if amd else TrustStore().with_root(ark, name=name or "user")
    if ca is not None:
        verify_ca(ca, store)
    fp = fingerprint(ark)
    return ParsedRoot(
        name=name or amd or f"root-{fp[:12]}",
        fingerprint=fp,
        key_id=ark.key_id.hex(),
        amd=amd is not None,
        ark=ark.to_bytes(),
        ask=ca.ask.to_bytes() if ca else None,
    )


def _amd_root_name(ark: AmdCert) -> str | None:
    try:
        return TrustStore().identify(ark).name
    except UntrustedRootError:
        return None


def trust_store(roots: Sequence[Root]) -> TrustStore:
    store = TrustStore()
    for root in roots:
        ark = AmdCert.from_bytes(root.ark, allow_unsigned=True)
        if _amd_root_name(ark) is None:
            store = store.with_root(ark, name=root.name)
    return store


@dataclass(frozen=True)
class Trust:
    """The stored roots parsed once (per catalog generation, see
    :mod:`sevlaunch.broker.catalog`): their trust store and each AMD CA file (ASK ‖ ARK) for
    chains that do not carry their own. Signatures are still checked on every verification."""

    roots: tuple[Root, ...]
    store: TrustStore
    cas: tuple[tuple[str, CaChain], ...]

    def root(self, name: str) -> Root | None:
        return next((r for r in self.roots if r.name == name), None)


def prepare_trust(roots: Sequence[Root]) -> Trust:
    cas = tuple((r.name, CaChain.from_bytes(r.ask + r.ark)) for r in roots if r.ask is not None)
    return Trust(tuple(roots), trust_store(roots), cas)


def platform_fingerprint(pdh: bytes, cert_chain: bytes, cek: bytes | None) -> str:
    """SHA-256 over the PDH, the chain and the optional CEK, each length-prefixed."""
    h = hashlib.sha256()
    for part in (pdh, cert_chain, cek or b""):
        h.update(len(part).to_bytes(4, "little") + part)
    return h.hexdigest()


def _chain_file(pdh: bytes, cert_chain: bytes) -> bytes:
    """libvirt's ``cert-chain`` is PEK ‖ OCA ‖ CEK; a full sevctl export is accepted too."""
    if len(cert_chain) == CertExport.SIZE:
        return pdh + cert_chain
    if cert_chain[: sevcert.SIZE] == pdh:
        return cert_chain
    raise FormatError(
        "cert-chain",
        "length",
        f"expected PEK ‖ OCA ‖ CEK ({CertExport.SIZE} bytes, as node SEV info gives it) or a "
        f"full chain starting with this PDH, got {len(cert_chain)} bytes",
        value=len(cert_chain),
    )


def verify_platform(
    pdh: bytes, cert_chain: bytes, cek: bytes | None, roots: Sequence[Root] | Trust
) -> VerifiedPlatform:
    """Prove the PDH to a stored root, or raise a VerificationError.

    A chain without ASK ‖ ARK (what node SEV info gives) is tried against each stored AMD CA.
    """
    trust = roots if isinstance(roots, Trust) else prepare_trust(roots)
    data = _chain_file(pdh, cert_chain)
    try:
        chain = PlatformChain.from_bytes(data)
        signed_cek = SevCert.from_bytes(cek) if cek is not None else None
    except FormatError as exc:
        raise VerificationError(f"the platform's certificates do not parse: {exc}") from exc
    if chain.ca is not None:
        return chains.verify_platform(chain, trust.store, cek=signed_cek)
    if not trust.cas:
        raise VerificationError(
            "the chain carries no ASK ‖ ARK and no AMD CA file is registered: add the "
            "platform generation's ask_ark_<gen>.cert with 'sevlaunch broker trust add'"
        )
    failures = []
    for name, ca in trust.cas:
        try:
            return chains.verify_platform(chain, trust.store, ca=ca, cek=signed_cek)
        except SevlaunchError as exc:
            failures.append(f"{name}: {exc}")
    if len(failures) == 1:
        raise VerificationError(failures[0])
    raise VerificationError("no registered CA verifies this chain: " + "; ".join(failures))


def make_session(
    platform: VerifiedPlatform,
    policy: int,
    random: Random,
    godh: ec.EllipticCurvePrivateKey | None = None,
) -> LaunchSession:
    """A fresh GODH (``godh``, or one derived from ``random``), TEK/TIK wrapped for the
    platform's PDH, the policy bound by POLICY_MAC."""
    return session.make_session(platform, policy, rng=random, private=godh)


def decide(
    info: LaunchSecurityInfo,
    registration: Registration,
    keys: TransportKeys,
    configuration: LaunchConfiguration | None = None,
) -> bytes:
    """Step 11: the owner's one decision (:func:`sevlaunch.owner.decision.decide`)."""
    return decision.decide(info, registration, keys, configuration)


def build_secret(
    keys: TransportKeys,
    info: LaunchSecurityInfo,
    secrets: Mapping[uuid.UUID, bytes],
    random: Random,
) -> tuple[str, str]:
    """``(sev-secret-header, sev-secret)`` base64: the OVMF table under TEK, MAC'd with TIK."""
    table = secret.secret_table(sorted(secrets.items()))
    packet = secret.build_packet(table, keys, info.measurement, rng=random)
    return packet.header_b64, packet.payload_b64


def check_secret_sizes(secrets: Mapping[uuid.UUID, bytes]) -> None:
    """Refuse a set of secrets whose table would exceed what KVM accepts."""
    if secrets:
        secret.check_size(secret.secret_table(sorted(secrets.items())))
