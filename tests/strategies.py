"""Hypothesis strategies for every SEV format, byte mutators for fuzzing, and vector loaders.

The strategies build only *valid* values (what a parser can return), so that
``from_bytes(x.to_bytes()) == x`` is a property of the code rather than of the generator.
The loaders read ``../shared/vectors`` in place through the ``vectors`` fixture's path.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric import rsa as pyca_rsa
from hypothesis import strategies as st

from sevlaunch.crypto.rsa import sign_pss
from sevlaunch.errors import FormatError
from sevlaunch.formats import (
    Algorithm,
    AmdCert,
    CaChain,
    CertExport,
    EccCurve,
    EccPublicKey,
    FooterEntry,
    KernelHashes,
    Measurement,
    OvmfFooterTable,
    PlatformChain,
    Policy,
    PolicyFlags,
    RsaPublicKey,
    SecretEntry,
    SecretHeader,
    SecretTable,
    Session,
    SevCert,
    Signature,
    Usage,
)
from sevlaunch.formats.policy import RESERVED_MASK
from sevlaunch.formats.sevcert import PublicKey

T = TypeVar("T")

ECC_ALGORITHMS = [a for a in Algorithm if a.is_ecc]
RSA_ALGORITHMS = [a for a in Algorithm if a.is_rsa]
SIGNER_USAGES = [u for u in Usage if u is not Usage.INVALID]
SEV_NAMES = ("pdh", "pek", "oca", "cek")


def uint(bits: int) -> st.SearchStrategy[int]:
    return st.integers(min_value=0, max_value=(1 << bits) - 1)


# --- SEV certificate -------------------------------------------------------------------------

ecc_keys = st.builds(EccPublicKey, st.sampled_from(EccCurve), uint(576), uint(576))


@st.composite
def rsa_keys(draw: st.DrawFn) -> RsaPublicKey:
    bits = draw(st.sampled_from((2048, 4096)))
    return RsaPublicKey(bits, draw(uint(4096)), draw(uint(4096)))


@st.composite
def signatures(draw: st.DrawFn) -> Signature:
    kind = draw(st.sampled_from(("empty", "ecdsa", "rsa")))
    if kind == "empty":
        return Signature.empty()
    usage = draw(st.sampled_from(SIGNER_USAGES))
    if kind == "ecdsa":
        algorithm = draw(st.sampled_from(ECC_ALGORITHMS))
        return Signature.ecdsa(usage, algorithm, draw(uint(576)), draw(uint(576)))
    return Signature.rsa(usage, draw(st.sampled_from(RSA_ALGORITHMS)), draw(uint(4096)))


@st.composite
def sev_certs(draw: st.DrawFn, usage: Usage | None = None) -> SevCert:
    """Any valid SEV certificate: ECC or RSA key, every slot kind, any API version."""
    algorithm = draw(st.sampled_from(ECC_ALGORITHMS + RSA_ALGORITHMS))
    key: PublicKey = draw(ecc_keys) if algorithm.is_ecc else draw(rsa_keys())
    return SevCert(
        usage=usage if usage is not None else draw(st.sampled_from(SIGNER_USAGES)),
        algorithm=algorithm,
        public_key=key,
        sig1=draw(signatures()),
        sig2=draw(signatures()),
        api_major=draw(uint(8)),
        api_minor=draw(uint(8)),
    )


# --- AMD certificate and chains --------------------------------------------------------------


@st.composite
def amd_certs(
    draw: st.DrawFn, usage: Usage | None = None, *, unsigned: bool | None = None
) -> AmdCert:
    """ARK/ASK certificates of 2048 or 4096 bits (exponent and modulus sizes independent)."""
    exp_bits = draw(st.sampled_from((2048, 4096)))
    mod_bits = draw(st.sampled_from((2048, 4096)))
    is_unsigned = draw(st.booleans()) if unsigned is None else unsigned
    return AmdCert(
        key_id=draw(st.binary(min_size=16, max_size=16)),
        certifying_id=draw(st.binary(min_size=16, max_size=16)),
        key_usage=usage if usage is not None else draw(st.sampled_from((Usage.ARK, Usage.ASK))),
        pub_exp_size=exp_bits,
        modulus_size=mod_bits,
        pub_exp=draw(uint(exp_bits)),
        modulus=draw(uint(mod_bits)),
        signature=None if is_unsigned else draw(uint(mod_bits)),
    )


ca_chains = st.builds(CaChain, amd_certs(Usage.ASK, unsigned=False), amd_certs(Usage.ARK))

cert_exports = st.builds(
    CertExport, sev_certs(Usage.PEK), sev_certs(Usage.OCA), sev_certs(Usage.CEK)
)

platform_chains = st.builds(
    PlatformChain,
    sev_certs(Usage.PDH),
    sev_certs(Usage.PEK),
    sev_certs(Usage.OCA),
    sev_certs(Usage.CEK),
    st.none() | ca_chains,
)

# --- launch structures -----------------------------------------------------------------------


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    reserved = draw(uint(32)) & RESERVED_MASK if draw(st.booleans()) else 0
    return Policy(PolicyFlags(draw(uint(6))), draw(uint(8)), draw(uint(8)), reserved)


def fixed(size: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=size, max_size=size)


sessions = st.builds(Session, fixed(16), fixed(32), fixed(16), fixed(32), fixed(32))
measurements = st.builds(Measurement, fixed(32), fixed(16))
secret_headers = st.builds(SecretHeader, uint(32), fixed(16), fixed(32))
guids = st.builds(lambda b: uuid.UUID(bytes_le=b), fixed(16))
secret_tables = st.builds(
    lambda entries: SecretTable(tuple(entries)),
    st.lists(st.builds(SecretEntry, guids, st.binary(max_size=80)), max_size=6),
)
kernel_hashes = st.builds(KernelHashes, fixed(32), fixed(32), fixed(32))
footer_tables = st.builds(
    lambda entries: OvmfFooterTable(tuple(entries)),
    st.lists(st.builds(FooterEntry, guids, st.binary(max_size=40)), max_size=6),
)

# --- mutations for fuzzing -------------------------------------------------------------------


def parse_or_error(parse: Callable[[], T]) -> T | FormatError:
    """The parsed value, or the FormatError it raised (any other exception propagates)."""
    try:
        return parse()
    except FormatError as exc:
        return exc


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    """``base`` after a few bit flips, byte insertions or deletions, or a truncation."""
    data = bytearray(base)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        op = draw(st.sampled_from(("flip", "set", "insert", "delete", "truncate", "extend")))
        pos = draw(st.integers(min_value=0, max_value=max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif op == "set" and data:
            data[pos] = draw(uint(8))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(min_value=1, max_value=8))]
        elif op == "truncate":
            del data[pos:]
        elif op == "extend":
            data += draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


# --- vector files and test keys --------------------------------------------------------------


def platform_bytes(vectors: Path, generation: str) -> bytes:
    """A real platform chain file: PDH ‖ PEK ‖ OCA ‖ CEK of ``naples`` or ``rome``."""
    folder = vectors / "platforms" / generation
    return b"".join((folder / f"{name}.cert").read_bytes() for name in SEV_NAMES)


def ca_bytes(vectors: Path, generation: str, *, ark: str = "ark.cert") -> bytes:
    """AMD's CA file for ``generation``: ASK ‖ ARK (``ark`` picks e.g. ``ark.cert.bad``)."""
    amd = vectors / "amd"
    return (amd / f"{generation}_ask.cert").read_bytes() + (
        amd / f"{generation}_{ark}"
    ).read_bytes()


def self_signed_ark(
    key: pyca_rsa.RSAPrivateKey, key_id: bytes, *, hash_name: str | None = None
) -> AmdCert:
    """An ARK for ``key`` with ``key_id``, self-signed with RSA-PSS as AMD signs."""
    numbers = key.public_key().public_numbers()
    bits = key.key_size
    unsigned = AmdCert(
        key_id=key_id,
        certifying_id=key_id,
        key_usage=Usage.ARK,
        pub_exp_size=bits,
        modulus_size=bits,
        pub_exp=numbers.e,
        modulus=numbers.n,
        signature=None,
    )
    return sign_amd(unsigned, key, hash_name=hash_name)


def sign_amd(
    cert: AmdCert, key: pyca_rsa.RSAPrivateKey, *, hash_name: str | None = None
) -> AmdCert:
    """``cert`` with its signature replaced by ``key``'s PSS signature over its signed bytes."""
    from dataclasses import replace

    name = hash_name or ("sha256" if key.key_size == 2048 else "sha384")
    return replace(cert, signature=sign_pss(key, cert.signed_bytes(), name))


def synthetic_platform(
    ark_key: pyca_rsa.RSAPrivateKey,
    ask_key: pyca_rsa.RSAPrivateKey,
    *,
    seed: int = 1,
    ark_id: bytes = b"test-ark-key-id!",
) -> PlatformChain:
    """A complete, validly signed chain under a test root: PDH ‖ PEK ‖ OCA ‖ CEK ‖ ASK ‖ ARK.

    The ECC keys derive from ``seed``; the CEK slot algorithm follows the ASK's size as AMD's do.
    """
    from sevlaunch.crypto import ecc
    from sevlaunch.crypto.chain import ask_algorithm

    ark = self_signed_ark(ark_key, ark_id)
    numbers = ask_key.public_key().public_numbers()
    ask_unsigned = AmdCert(
        key_id=b"test-ask-key-id!",
        certifying_id=ark_id,
        key_usage=Usage.ASK,
        pub_exp_size=ask_key.key_size,
        modulus_size=ask_key.key_size,
        pub_exp=numbers.e,
        modulus=numbers.n,
        signature=None,
    )
    ask = sign_amd(ask_unsigned, ark_key)
    keys = {name: ecc.generate_p384(seed * 10 + i) for i, name in enumerate(SEV_NAMES)}

    def unsigned(usage: Usage, algorithm: Algorithm, name: str) -> SevCert:
        key = ecc.from_public_key(keys[name].public_key())
        return SevCert(usage, algorithm, key, Signature.empty(), Signature.empty(), 0, 24)

    def ecdsa_by(signer: str, signer_usage: Usage, cert: SevCert) -> Signature:
        return ecc.sign(keys[signer], cert.signed_bytes(), signer_usage, Algorithm.ECDSA_SHA256)

    cek = unsigned(Usage.CEK, Algorithm.ECDSA_SHA256, "cek")
    algorithm = ask_algorithm(ask)
    cek_sig = sign_pss(ask_key, cek.signed_bytes(), algorithm.hash_name)
    cek = cek.with_signature(1, Signature.rsa(Usage.ASK, algorithm, cek_sig))
    oca = unsigned(Usage.OCA, Algorithm.ECDSA_SHA256, "oca")
    oca = oca.with_signature(1, ecdsa_by("oca", Usage.OCA, oca))
    pek = unsigned(Usage.PEK, Algorithm.ECDSA_SHA256, "pek")
    pek = pek.with_signature(1, ecdsa_by("oca", Usage.OCA, pek)).with_signature(
        2, ecdsa_by("cek", Usage.CEK, pek)
    )
    pdh = unsigned(Usage.PDH, Algorithm.ECDH_SHA256, "pdh")
    pdh = pdh.with_signature(1, ecdsa_by("pek", Usage.PEK, pdh))
    return PlatformChain(pdh, pek, oca, cek, CaChain(ask, ark))
