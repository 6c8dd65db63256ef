"""Step 4: the guest owner verifies a platform's PDH and chain up to a trusted AMD root.

Thin, byte-oriented entry points over :mod:`sevlaunch.crypto.chain` that parse the files as
sevctl and AMD lay them out.
"""

from __future__ import annotations

from sevlaunch.crypto.chain import VerifiedCa, VerifiedPlatform, verify_ca, verify_platform
from sevlaunch.crypto.truststore import TrustStore
from sevlaunch.errors import ChainError, FormatError
from sevlaunch.formats.amdcert import AmdCert
from sevlaunch.formats.chain import CaChain, PlatformChain
from sevlaunch.formats.sevcert import SevCert


def trust_store(trust_roots: list[bytes] | tuple[bytes, ...] = ()) -> TrustStore:
    """AMD's pinned roots plus each root given as bytes: an ARK alone, or a CA file ASK ‖ ARK
    (as ``platform export-root`` writes an emulated platform's), whose ARK is the root."""
    store = TrustStore()
    for index, data in enumerate(trust_roots):
        store = store.with_root(_root_of(data), name=f"trust-root-{index + 1}")
    return store


def _root_of(data: bytes) -> AmdCert:
    """The ARK of a CA file (whose ASK it must have signed), else ``data`` as an ARK alone."""
    try:
        ca = CaChain.from_bytes(data)
    except FormatError:
        return AmdCert.from_bytes(data, allow_unsigned=True)
    verify_ca(ca, TrustStore().with_root(ca.ark))
    return ca.ark


def verify_ca_file(data: bytes, trust: TrustStore) -> VerifiedCa:
    """Verify an AMD CA file (ASK ‖ ARK)."""
    return verify_ca(CaChain.from_bytes(data), trust)


def verify_chain_file(
    chain: bytes, trust: TrustStore, *, ca: bytes | None = None, cek: bytes | None = None
) -> VerifiedPlatform:
    """Verify a platform chain file (PDH ‖ PEK ‖ OCA ‖ CEK [‖ ASK ‖ ARK])."""
    return verify_platform(
        PlatformChain.from_bytes(chain),
        trust,
        ca=CaChain.from_bytes(ca) if ca is not None else None,
        cek=SevCert.from_bytes(cek) if cek is not None else None,
    )


def verify_pdh_and_chain(
    pdh: bytes,
    cert_chain: bytes,
    trust: TrustStore,
    *,
    ca: bytes | None = None,
    cek: bytes | None = None,
) -> VerifiedPlatform:
    """Verify what libvirt's node SEV info gives: ``pdh`` and ``cert-chain`` (PEK ‖ OCA ‖ CEK
    or, from a full export, the whole chain, whose PDH must then be ``pdh``)."""
    from sevlaunch.formats.chain import CertExport

    pdh_cert = SevCert.from_bytes(pdh)
    if len(cert_chain) == CertExport.SIZE:
        chain = PlatformChain.from_export(pdh_cert, CertExport.from_bytes(cert_chain))
    else:
        chain = PlatformChain.from_bytes(cert_chain)
        if chain.pdh != pdh_cert:
            raise ChainError(
                "PDH", "the PDH given separately is not the PDH of the certificate chain"
            )
    return verify_platform(
        chain,
        trust,
        ca=CaChain.from_bytes(ca) if ca is not None else None,
        cek=SevCert.from_bytes(cek) if cek is not None else None,
    )
