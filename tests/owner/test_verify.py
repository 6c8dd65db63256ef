"""The owner's byte-level entry points: files as sevctl, AMD and libvirt give them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa as pyca_rsa

from sevlaunch.errors import (
    ChainError,
    FormatError,
    MissingCekSignatureError,
    UntrustedRootError,
    VerificationError,
)
from sevlaunch.formats import PlatformChain, Signature
from sevlaunch.formats.sevcert import SIZE
from sevlaunch.owner.verify import (
    trust_store,
    verify_ca_file,
    verify_chain_file,
    verify_pdh_and_chain,
)
from tests.strategies import ca_bytes, platform_bytes, synthetic_platform


@pytest.mark.parametrize("generation", ["naples", "rome"])
def test_chain_file_with_ca_file(vectors: Path, generation: str) -> None:
    verified = verify_chain_file(
        platform_bytes(vectors, generation), trust_store(), ca=ca_bytes(vectors, generation)
    )
    assert verified.ca.root.name == generation
    assert len(verified.links) == 7


def test_full_chain_file(vectors: Path) -> None:
    data = platform_bytes(vectors, "rome") + ca_bytes(vectors, "rome")
    assert verify_chain_file(data, trust_store()).ca.root.name == "rome"


def test_ca_file_alone(vectors: Path) -> None:
    verified = verify_ca_file(ca_bytes(vectors, "naples", ark="ark.cert.bad"), trust_store())
    assert verified.root.name == "naples"
    assert verified.ark.signature is None


def test_libvirt_pdh_and_cert_chain(vectors: Path) -> None:
    """virNodeGetSEVInfo gives the PDH and PEK ‖ OCA ‖ CEK; sevctl's full export also works."""
    data = platform_bytes(vectors, "rome")
    pdh, export, ca = data[:SIZE], data[SIZE:], ca_bytes(vectors, "rome")
    with pytest.raises(VerificationError, match="--ca FILE"):
        verify_pdh_and_chain(pdh, export, trust_store())
    assert verify_pdh_and_chain(pdh, export, trust_store(), ca=ca).ca.root.name == "rome"
    assert verify_pdh_and_chain(pdh, data + ca, trust_store()).ca.root.name == "rome"


def test_pdh_must_belong_to_a_full_chain(vectors: Path) -> None:
    other_pdh = platform_bytes(vectors, "naples")[:SIZE]
    full = platform_bytes(vectors, "rome") + ca_bytes(vectors, "rome")
    with pytest.raises(ChainError, match="not the PDH of the certificate chain") as err:
        verify_pdh_and_chain(other_pdh, full, trust_store())
    assert err.value.link == "PDH"


def test_pdh_is_what_the_pek_signed(vectors: Path) -> None:
    data = platform_bytes(vectors, "rome")
    naples_pdh = platform_bytes(vectors, "naples")[:SIZE]
    with pytest.raises(ChainError) as err:
        verify_pdh_and_chain(naples_pdh, data[SIZE:], trust_store(), ca=ca_bytes(vectors, "rome"))
    assert err.value.link == "PEK -> PDH"


def test_cek_bytes_substitute_the_unsigned_cek(vectors: Path) -> None:
    chain = PlatformChain.from_bytes(platform_bytes(vectors, "rome"))
    unsigned = replace(chain, cek=chain.cek.with_signature(1, Signature.empty())).to_bytes()
    ca = ca_bytes(vectors, "rome")
    with pytest.raises(MissingCekSignatureError):
        verify_chain_file(unsigned, trust_store(), ca=ca)
    verified = verify_chain_file(unsigned, trust_store(), ca=ca, cek=chain.cek.to_bytes())
    assert verified.chain.cek == chain.cek


def test_wrong_generation_names_the_link(vectors: Path) -> None:
    with pytest.raises(ChainError) as err:
        verify_chain_file(
            platform_bytes(vectors, "rome"), trust_store(), ca=ca_bytes(vectors, "milan")
        )
    assert err.value.link == "ASK -> CEK"


def test_malformed_inputs_are_format_errors(vectors: Path) -> None:
    with pytest.raises(FormatError):
        verify_chain_file(platform_bytes(vectors, "rome")[:-1], trust_store())
    with pytest.raises(FormatError):
        verify_ca_file(ca_bytes(vectors, "rome")[1:], trust_store())
    with pytest.raises(FormatError):
        trust_store([b"not an ark"])


def test_trust_roots_are_named_in_order() -> None:
    chain = synthetic_platform(
        pyca_rsa.generate_private_key(65537, 2048), pyca_rsa.generate_private_key(65537, 2048)
    )
    assert chain.ca is not None
    data = chain.to_bytes()
    with pytest.raises(UntrustedRootError):
        verify_chain_file(data, trust_store())
    store = trust_store([chain.ca.ark.to_bytes()])
    assert verify_chain_file(data, store).ca.root.name == "trust-root-1"


def test_a_trust_root_may_be_a_ca_file_whose_ask_its_ark_signed() -> None:
    """``--trust-root ask_ark_emulated.cert``: the ARK of a CA file is the root; a CA file whose
    ASK another key signed is refused, not half trusted."""
    ark_key = pyca_rsa.generate_private_key(65537, 2048)
    chain = synthetic_platform(ark_key, pyca_rsa.generate_private_key(65537, 2048))
    assert chain.ca is not None
    store = trust_store([chain.ca.to_bytes()])
    assert verify_chain_file(chain.to_bytes(), store).ca.root.name == "trust-root-1"
    other = synthetic_platform(
        pyca_rsa.generate_private_key(65537, 2048), pyca_rsa.generate_private_key(65537, 2048)
    )
    assert other.ca is not None
    forged = other.ca.ask.to_bytes() + chain.ca.ark.to_bytes()  # an ASK this ARK never signed
    with pytest.raises(VerificationError):
        trust_store([forged])
