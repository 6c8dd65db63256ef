"""AMD's SNP chain: every real VCEK chains to its pinned ARK; tampered VCEKs, a swapped
intermediate, a foreign ARK, PKCS#1 v1.5 signatures and expired certificates fail, each
naming the link."""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import padding

from sevlaunch.crypto.snp.certs import SnpCert, load_cert, load_certs
from sevlaunch.crypto.snp.chain import SignerKind, split_ca, verify_chain
from sevlaunch.errors import ChainError, UntrustedRootError
from sevlaunch.formats.snp import Generation
from tests.snp_pki import AT, CSP, Tcb, ec_key, issue, pki, rsa_key, vcek_extensions
from tests.snp_vectors import SIGNED, SnpVector


def chain_of(vectors: Path, vcek: str, ca: str) -> tuple[SnpCert, SnpCert, SnpCert]:
    leaf = next(
        c for c in load_certs((vectors / "snp" / vcek).read_bytes()) if c.common_name == "SEV-VCEK"
    )
    ark, mids = split_ca(load_certs((vectors / "snp" / ca).read_bytes()))
    return leaf, mids[leaf.issuer_name], ark


@pytest.mark.parametrize("vector", SIGNED, ids=lambda v: v.name)
def test_real_chains(vectors: Path, vector: SnpVector) -> None:
    leaf, ask, ark = chain_of(vectors, vector.vcek, vector.ca)
    verified = verify_chain(leaf, ask, ark, at=vector.at)
    assert verified.product.value == vector.product
    assert verified.kind is SignerKind.VCEK
    assert verified.leaf_key.curve.name == "secp384r1"


def test_turin_chain(vectors: Path) -> None:
    leaf, ask, ark = chain_of(
        vectors, "virtee-sev/tests/vcek_turin.der", "virtee-sev/tests/cert_chain_turin"
    )
    verified = verify_chain(leaf, ask, ark, at=AT)
    assert verified.product is Generation.TURIN
    assert verified.extensions.hwid == bytes.fromhex("1e550a8ee5cf9f4d")


@pytest.mark.parametrize("name", ["test-vcek-invalid-legacy.der", "test-vcek-invalid-new.der"])
def test_tampered_vceks_fail(vectors: Path, name: str) -> None:
    leaf = load_cert((vectors / "snp/trustee/test_data/snp" / name).read_bytes())
    ark, mids = split_ca(
        load_certs((vectors / "snp/go-sev-guest/trust/ask_ark_milan.pem").read_bytes())
    )
    with pytest.raises(ChainError) as info:
        verify_chain(leaf, mids["SEV-Milan"], ark, at=leaf.cert.not_valid_before_utc)
    assert info.value.link == "ASK -> VCEK"


def test_vcek_of_another_generation_fails(vectors: Path) -> None:
    leaf, _, _ = chain_of(
        vectors, "virtee-sev/tests/vcek_milan.der", "virtee-sev/tests/cert_chain_milan"
    )
    ark, mids = split_ca(
        load_certs((vectors / "snp/go-sev-guest/trust/ask_ark_genoa.pem").read_bytes())
    )
    with pytest.raises(ChainError, match="issued by 'SEV-Milan'"):
        verify_chain(leaf, mids["SEV-Genoa"], ark, at=AT)


def test_vlek_chains() -> None:
    for product in (Generation.MILAN, Generation.TURIN):
        p = pki(product)
        verified = verify_chain(p.vlek, p.asvk, p.ark, at=AT, trusted_arks=p.trusted)
        assert verified.kind is SignerKind.VLEK
        assert verified.extensions.csp_id == CSP
        with pytest.raises(ChainError, match="expected 'SEV-VLEK-"):
            verify_chain(p.vlek, p.ask, p.ark, at=AT, trusted_arks=p.trusted)


def test_foreign_ark_is_untrusted() -> None:
    p = pki()
    with pytest.raises(UntrustedRootError, match="not one of AMD's pinned"):
        verify_chain(p.vcek, p.ask, p.ark, at=AT)


def test_expired_and_not_yet_valid() -> None:
    p = pki()
    late = AT + datetime.timedelta(days=20 * 365)
    with pytest.raises(ChainError, match="valid from"):
        verify_chain(p.vcek, p.ask, p.ark, at=late, trusted_arks=p.trusted)
    early = AT - datetime.timedelta(days=5 * 365)
    with pytest.raises(ChainError, match="pin the verification time"):
        verify_chain(p.vcek, p.ask, p.ark, at=early, trusted_arks=p.trusted)


def test_pkcs1_signature_is_refused() -> None:
    p = pki()
    leaf = issue(
        "SEV-VCEK",
        "SEV-Milan",
        ec_key("vcekMilan").public_key(),
        rsa_key("askMilan"),
        extensions=vcek_extensions(Generation.MILAN, Tcb(), bytes(64)),
        padding_=padding.PKCS1v15(),
    )
    with pytest.raises(ChainError, match="RSASSA-PSS"):
        verify_chain(leaf, p.ask, p.ark, at=AT, trusted_arks=p.trusted)


def test_wrong_salt_is_refused() -> None:
    p = pki()
    salt32 = padding.PSS(
        mgf=padding.MGF1(
            __import__("cryptography.hazmat.primitives.hashes", fromlist=["SHA384"]).SHA384()
        ),
        salt_length=32,
    )
    leaf = issue(
        "SEV-VCEK",
        "SEV-Milan",
        ec_key("vcekMilan").public_key(),
        rsa_key("askMilan"),
        extensions=vcek_extensions(Generation.MILAN, Tcb(), bytes(64)),
        padding_=salt32,
    )
    with pytest.raises(ChainError, match="does not verify"):
        verify_chain(leaf, p.ask, p.ark, at=AT, trusted_arks=p.trusted)


def test_wrong_names() -> None:
    p = pki()
    odd = issue("SEV-Other", "SEV-Milan", ec_key("x").public_key(), rsa_key("askMilan"))
    with pytest.raises(ChainError, match="SEV-VCEK or SEV-VLEK"):
        verify_chain(odd, p.ask, p.ark, at=AT, trusted_arks=p.trusted)
    renamed = {p.ask.fingerprint: Generation.MILAN}
    with pytest.raises(ChainError, match="CN is 'SEV-Milan', expected 'ARK-Milan'"):
        verify_chain(p.vcek, p.ask, p.ask, at=AT, trusted_arks=renamed)
    with pytest.raises(ChainError, match="one ARK"):
        split_ca((p.ask,))
    assert dataclasses.replace(p.vcek).fingerprint == p.vcek.fingerprint


def test_an_altered_outer_signature_algorithm_is_refused() -> None:
    """The AlgorithmIdentifier after the TBS is not signed; a VCEK whose copy differs from the
    signed one (here the PSS hash OID's length byte) is refused, not pinned under a new
    fingerprint."""
    p = pki(Generation.MILAN)
    der = bytearray(p.vcek.der)
    at = der.find(p.vcek.tbs) + len(p.vcek.tbs)
    signed = p.vcek.fields.signature_algorithm
    assert der[at : at + len(signed)] == signed
    der[at + 6] ^= 0x02  # inside the outer AlgorithmIdentifier, as a fuzzer found
    altered = load_cert(bytes(der))
    with pytest.raises(ChainError, match="RFC 5280"):
        verify_chain(altered, p.ask, p.ark, at=AT, trusted_arks=p.trusted)


def test_a_signature_with_unused_bits_is_refused() -> None:
    """The BIT STRING's unused-bits count is not signed either: 1 instead of 0 still verifies
    under pyca when the signature's last byte is even, as another certificate. PSS signatures
    are randomised: the VCEK is issued until one ends in an even byte (half of them do)."""
    p = pki(Generation.MILAN)
    for _ in range(64):
        leaf = issue(
            "SEV-VCEK",
            "SEV-Milan",
            ec_key("vcekMilan").public_key(),
            rsa_key("askMilan"),
            extensions=vcek_extensions(Generation.MILAN, Tcb(), p.vcek.extensions.hwid),
        )
        if not leaf.cert.signature[-1] & 1:
            break
    signature = leaf.cert.signature
    assert not signature[-1] & 1
    verify_chain(leaf, p.ask, p.ark, at=AT, trusted_arks=p.trusted)
    der = bytearray(leaf.der)
    at = der.rfind(b"\x03\x82" + (len(signature) + 1).to_bytes(2, "big") + b"\x00")
    assert at > 0
    der[at + 4] = 1
    with pytest.raises(ChainError, match="unused bits"):
        verify_chain(load_cert(bytes(der)), p.ask, p.ark, at=AT, trusted_arks=p.trusted)
