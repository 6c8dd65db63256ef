"""Chain verification on real chains: every platform vector verifies to its generation's AMD
CA and to no other; links are named; the CEK substitution and missing-signature paths."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa as pyca_rsa

from sevlaunch.crypto import TrustStore, verify_ca, verify_cek, verify_platform
from sevlaunch.errors import (
    ChainError,
    MissingCekSignatureError,
    UntrustedRootError,
    VerificationError,
)
from sevlaunch.formats import CaChain, PlatformChain, Signature
from tests.strategies import ca_bytes, platform_bytes, sign_amd, synthetic_platform

LINKS = [
    ("ARK", "ARK"),
    ("ARK", "ASK"),
    ("ASK", "CEK"),
    ("OCA", "OCA"),
    ("OCA", "PEK"),
    ("CEK", "PEK"),
    ("PEK", "PDH"),
]
PSS = {"naples": "RSA-2048 PSS SHA256", "rome": "RSA-4096 PSS SHA384"}


def _chain(vectors: Path, generation: str) -> PlatformChain:
    return PlatformChain.from_bytes(platform_bytes(vectors, generation))


def _ca(vectors: Path, generation: str, ark: str = "ark.cert") -> CaChain:
    return CaChain.from_bytes(ca_bytes(vectors, generation, ark=ark))


@pytest.mark.parametrize("generation", ["naples", "rome"])
def test_platform_verifies_to_its_amd_ca(vectors: Path, generation: str) -> None:
    chain = _chain(vectors, generation)
    verified = verify_platform(chain, TrustStore(), ca=_ca(vectors, generation))
    assert [(k.signer, k.subject) for k in verified.links] == LINKS
    assert verified.ca.root.name == generation
    assert verified.ca.root.amd
    methods = {(k.signer, k.subject): k.method for k in verified.links}
    assert methods["ARK", "ASK"] == PSS[generation]
    assert methods["ASK", "CEK"] == f"{PSS[generation]}, slot 1"
    assert methods["OCA", "PEK"] == "ECDSA P384 SHA256, slot 1"
    assert methods["CEK", "PEK"] == "ECDSA P384 SHA256, slot 2"
    assert verified.pdh == chain.pdh
    assert verified.chain.ca == _ca(vectors, generation)


def test_naples_verifies_with_the_published_unsigned_ark(vectors: Path) -> None:
    ca = _ca(vectors, "naples", ark="ark.cert.bad")
    verified = verify_platform(_chain(vectors, "naples"), TrustStore(), ca=ca)
    first = verified.links[0]
    assert (first.signer, first.subject) == ("pin", "ARK")
    assert "publishes it unsigned" in first.method
    assert [(k.signer, k.subject) for k in verified.links[1:]] == LINKS[1:]


@pytest.mark.parametrize("generation", ["naples", "rome", "milan"])
def test_amd_ca_files_verify(vectors: Path, generation: str) -> None:
    verified = verify_ca(_ca(vectors, generation), TrustStore())
    assert verified.root.name == generation
    assert [(k.signer, k.subject) for k in verified.links] == LINKS[:2]


@pytest.mark.parametrize("generation", ["naples", "rome"])
def test_full_export_verifies_without_a_separate_ca(vectors: Path, generation: str) -> None:
    data = platform_bytes(vectors, generation) + ca_bytes(vectors, generation)
    verified = verify_platform(PlatformChain.from_bytes(data), TrustStore())
    assert verified.ca.root.name == generation


def test_chain_without_a_ca_says_how_to_get_one(vectors: Path) -> None:
    with pytest.raises(VerificationError, match="--ca FILE") as err:
        verify_platform(_chain(vectors, "rome"), TrustStore())
    assert not isinstance(err.value, ChainError)


@pytest.mark.parametrize(
    ("platform", "ca", "needle"),
    [
        ("rome", "milan", "not signed by this ASK"),
        ("naples", "rome", "of the platform's generation"),
        ("rome", "naples", "of the platform's generation"),
    ],
)
def test_wrong_generation_ask_fails_the_cek_link(
    vectors: Path, platform: str, ca: str, needle: str
) -> None:
    with pytest.raises(ChainError) as err:
        verify_platform(_chain(vectors, platform), TrustStore(), ca=_ca(vectors, ca))
    assert type(err.value) is ChainError
    assert err.value.link == "ASK -> CEK"
    assert needle in str(err.value)


def test_verify_cek_alone(vectors: Path) -> None:
    cek = _chain(vectors, "rome").cek
    link = verify_cek(cek, _ca(vectors, "rome").ask)
    assert (link.signer, link.subject) == ("ASK", "CEK")
    with pytest.raises(ChainError, match="expected a CEK") as err:
        verify_cek(_chain(vectors, "rome").pek, _ca(vectors, "rome").ask)
    assert err.value.link == "ASK -> CEK"


def test_mixed_generation_ca_fails_the_ask_link(vectors: Path) -> None:
    ca = CaChain(_ca(vectors, "milan").ask, _ca(vectors, "rome").ark)
    with pytest.raises(ChainError, match="different generations") as err:
        verify_ca(ca, TrustStore())
    assert err.value.link == "ARK -> ASK"


def test_ask_in_the_ark_position_is_not_a_trusted_root(vectors: Path) -> None:
    rome = _ca(vectors, "rome")
    with pytest.raises(UntrustedRootError):
        verify_ca(CaChain(rome.ask, rome.ask), TrustStore())


# --- CEK substitution -----------------------------------------------------------------------


def _unsigned_cek_chain(vectors: Path) -> PlatformChain:
    chain = _chain(vectors, "rome")
    return replace(chain, cek=chain.cek.with_signature(1, Signature.empty()))


def test_unsigned_cek_names_the_key_server(vectors: Path) -> None:
    with pytest.raises(MissingCekSignatureError) as err:
        verify_platform(_unsigned_cek_chain(vectors), TrustStore(), ca=_ca(vectors, "rome"))
    assert err.value.link == "ASK -> CEK"
    assert "kdsintf.amd.com" in str(err.value)
    assert "--cek" in str(err.value)


def test_signed_cek_substitutes_the_unsigned_one(vectors: Path) -> None:
    signed = _chain(vectors, "rome").cek
    verified = verify_platform(
        _unsigned_cek_chain(vectors), TrustStore(), ca=_ca(vectors, "rome"), cek=signed
    )
    assert verified.chain.cek == signed
    assert [(k.signer, k.subject) for k in verified.links] == LINKS


def test_substituted_cek_must_have_the_same_key(vectors: Path) -> None:
    naples_cek = _chain(vectors, "naples").cek
    with pytest.raises(ChainError, match="another public key") as err:
        verify_platform(
            _chain(vectors, "rome"), TrustStore(), ca=_ca(vectors, "rome"), cek=naples_cek
        )
    assert err.value.link == "CEK"


# --- synthetic roots ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys() -> tuple[pyca_rsa.RSAPrivateKey, pyca_rsa.RSAPrivateKey]:
    return (
        pyca_rsa.generate_private_key(65537, 2048),
        pyca_rsa.generate_private_key(65537, 2048),
    )


@pytest.fixture(scope="module")
def synthetic(keys: tuple[pyca_rsa.RSAPrivateKey, pyca_rsa.RSAPrivateKey]) -> PlatformChain:
    return synthetic_platform(*keys)


def test_user_root_is_trusted_only_when_named(synthetic: PlatformChain) -> None:
    assert synthetic.ca is not None
    with pytest.raises(UntrustedRootError, match="--trust-root"):
        verify_platform(synthetic, TrustStore())
    trust = TrustStore().with_root(synthetic.ca.ark, name="lab")
    verified = verify_platform(synthetic, trust)
    assert (verified.ca.root.name, verified.ca.root.amd) == ("lab", False)
    assert [(k.signer, k.subject) for k in verified.links] == LINKS


def test_pek_signatures_may_be_in_either_slot(synthetic: PlatformChain) -> None:
    assert synthetic.ca is not None
    pek = synthetic.pek
    swapped = replace(synthetic, pek=replace(pek, sig1=pek.sig2, sig2=pek.sig1))
    trust = TrustStore().with_root(synthetic.ca.ark)
    methods = {(k.signer, k.subject): k.method for k in verify_platform(swapped, trust).links}
    assert methods["OCA", "PEK"].endswith("slot 2")
    assert methods["CEK", "PEK"].endswith("slot 1")


def test_unsigned_user_ark_is_refused(synthetic: PlatformChain) -> None:
    assert synthetic.ca is not None
    ark = replace(synthetic.ca.ark, signature=None)
    trust = TrustStore().with_root(ark)
    with pytest.raises(ChainError, match="no self-signature") as err:
        verify_platform(replace(synthetic, ca=CaChain(synthetic.ca.ask, ark)), trust)
    assert err.value.link == "ARK -> ARK"


def test_ark_signed_by_another_key_fails_its_self_link(
    synthetic: PlatformChain, keys: tuple[pyca_rsa.RSAPrivateKey, pyca_rsa.RSAPrivateKey]
) -> None:
    assert synthetic.ca is not None
    ark = sign_amd(synthetic.ca.ark, keys[1])
    trust = TrustStore().with_root(ark)
    with pytest.raises(ChainError, match="does not verify") as err:
        verify_platform(replace(synthetic, ca=CaChain(synthetic.ca.ask, ark)), trust)
    assert err.value.link == "ARK -> ARK"


def test_missing_slot_names_what_the_slots_hold(synthetic: PlatformChain) -> None:
    assert synthetic.ca is not None
    pdh = synthetic.pdh.with_signature(1, Signature.empty())
    with pytest.raises(ChainError, match="INVALID/INVALID") as err:
        verify_platform(replace(synthetic, pdh=pdh), TrustStore().with_root(synthetic.ca.ark))
    assert err.value.link == "PEK -> PDH"
