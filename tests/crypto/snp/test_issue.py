"""Certificates and CRLs issued in AMD's shapes verify with the chain and CRL checks that
verify AMD's own (RSA-2048 keys here: the shapes, not the key size, are under test)."""

from __future__ import annotations

import datetime

from cryptography.hazmat.primitives.asymmetric import ec

from sevlaunch.crypto.snp import issue
from sevlaunch.crypto.snp.certs import load_cert
from sevlaunch.crypto.snp.chain import SignerKind, verify_chain
from sevlaunch.crypto.snp.crl import verify_crl
from sevlaunch.formats.snp.tcb import Generation, TcbLayout, TcbVersion
from tests.snp_pki import rsa_key

UTC = datetime.UTC
VALID = issue.Validity(
    datetime.datetime(2024, 1, 1, tzinfo=UTC), datetime.datetime(2040, 1, 1, tzinfo=UTC)
)
AT = datetime.datetime(2030, 1, 1, tzinfo=UTC)


def test_turin_vcek_chain_and_extensions() -> None:
    ark_key, ask_key = rsa_key("issue-ark"), rsa_key("issue-ask")
    ark = load_cert(issue.issue_ark(ark_key, Generation.TURIN, VALID))
    ask = load_cert(
        issue.issue_intermediate(
            ask_key.public_key(), ark_key, Generation.TURIN, SignerKind.VCEK, VALID
        )
    )
    tcb = TcbVersion(TcbLayout.TURIN, 1, 0, 2, 0x47, fmc=0)
    leaf_key = ec.derive_private_key(7, ec.SECP384R1()).public_key()
    exts = issue.amd_extensions(Generation.TURIN, tcb, hwid=b"\x1e\x55\x0a\x8e\xe5\xcf\x9f\x4d")
    vcek = load_cert(
        issue.issue_leaf(
            leaf_key, ask_key, Generation.TURIN, SignerKind.VCEK, exts, serial=5, validity=VALID
        )
    )
    chain = verify_chain(vcek, ask, ark, at=AT, trusted_arks={ark.fingerprint: Generation.TURIN})
    assert chain.extensions.tcb(TcbLayout.TURIN) == tcb
    assert chain.extensions.struct_version == 1
    assert chain.extensions.fmc_spl == 0
    assert {
        o[-1]
        for o, _ in vcek.raw_extensions
        if o.startswith(b"\x2b\x06\x01\x04\x01\x9c\x78\x01\x03")
    } == {
        1,
        2,
        3,
        5,
        6,
        7,
        8,
        9,  # Turin VCEKs carry no spl_4
    }
    assert ark.common_name == "ARK-Turin"
    assert ask.serial == 0x30001


def test_crl_is_the_arks_and_lists_what_it_revokes() -> None:
    ark_key = rsa_key("issue-ark")
    ark = load_cert(issue.issue_ark(ark_key, Generation.MILAN, VALID))
    crl = issue.issue_crl(
        ark_key,
        Generation.MILAN,
        [(0x1234, datetime.datetime(2025, 1, 1, tzinfo=UTC))],
        last_update=datetime.datetime(2025, 1, 1, tzinfo=UTC),
        next_update=datetime.datetime(2035, 1, 1, tzinfo=UTC),
    )
    verified = verify_crl(crl, ark, at=AT)
    assert verified.revoked == frozenset({0x1234})
