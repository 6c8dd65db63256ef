"""The chip's SNP identity: the emulated PKI in AMD's shapes, one VCEK per TCB derived from
the chip secret, VLEK certificates, and the persistent state that keeps them."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from sevlaunch.crypto.snp.certs import load_cert, load_certs
from sevlaunch.crypto.snp.chain import SignerKind, verify_chain
from sevlaunch.errors import FormatError
from sevlaunch.firmware import Firmware
from sevlaunch.formats.amdcert import AmdCert
from sevlaunch.formats.snp.tcb import Generation, TcbLayout, TcbVersion
from tests.firmware.snp.conftest import MakeSnpFw
from tests.firmware.snp.test_messages import NOW


def _tcb(fw: Firmware) -> TcbVersion:
    return TcbVersion.from_int(fw.snp.info()["reported_tcb"], TcbLayout.MILAN)


def test_pki_has_amds_names_serials_and_one_ark_for_sev_and_snp(snp_fw: Firmware) -> None:
    ask, ark = load_certs(snp_fw.snp.host("ca", kind="vcek"))
    asvk, ark2 = load_certs(snp_fw.snp.host("ca", kind="vlek"))
    assert ark == ark2
    assert (ark.common_name, ask.common_name, asvk.common_name) == (
        "ARK-Milan",
        "SEV-Milan",
        "SEV-VLEK-Milan",
    )
    assert (ark.serial, ask.serial, asvk.serial) == (0x10000, 0x10001, 0x10101)
    sev_ark = AmdCert.from_bytes(snp_fw.ark())
    key = ark.public_key
    assert isinstance(key, rsa.RSAPublicKey)
    assert key.public_numbers().n == sev_ark.modulus


def test_vcek_per_tcb_chains_to_the_ark_and_is_stable(make_snp_fw: MakeSnpFw) -> None:
    fw = make_snp_fw()
    info = fw.snp.info()
    ask, ark = load_certs(fw.snp.host("ca"))
    tcb = _tcb(fw)
    older = TcbVersion(TcbLayout.MILAN, tcb.bootloader, 0, tcb.snp - 1, tcb.microcode)
    now = load_cert(fw.snp.host("vcek", hwid=info["hwid"], tcb=tcb.to_int()))
    old = load_cert(fw.snp.host("vcek", hwid=info["hwid"], tcb=older.to_int()))
    trusted = {ark.fingerprint: Generation.MILAN}
    chain = verify_chain(now, ask, ark, at=NOW, trusted_arks=trusted)
    assert chain.extensions.tcb(TcbLayout.MILAN) == tcb
    assert chain.extensions.hwid == bytes.fromhex(info["hwid"])
    assert chain.extensions.product_name == "Milan-B0"
    assert now.public_key != old.public_key
    assert now.serial != old.serial
    again = make_snp_fw(seed=9)  # another boot of the same chip
    same = load_cert(again.snp.host("vcek", hwid=info["hwid"], tcb=tcb.to_int()))
    assert same.public_key == now.public_key


def test_vlek_certificates_name_their_cloud(snp_fw: Firmware) -> None:
    asvk, ark = load_certs(snp_fw.snp.host("ca", kind="vlek"))
    vlek = load_cert(snp_fw.snp.host("vlek_cert", csp_id="CN=c.example", tcb=_tcb(snp_fw).to_int()))
    chain = verify_chain(vlek, asvk, ark, at=NOW, trusted_arks={ark.fingerprint: Generation.MILAN})
    assert (chain.kind, chain.extensions.csp_id, chain.extensions.hwid) == (
        SignerKind.VLEK,
        "CN=c.example",
        None,
    )


def test_state_with_snp_is_version_2_and_round_trips(snp_fw: Firmware) -> None:
    state = snp_fw.persistent_state()
    doc = json.loads(state)
    assert doc["version"] == 2
    assert doc["snp"]["product"] == "Milan"
    again = Firmware(snp_fw.profile, state=state)
    assert again.persistent_state() == state
    again.snp.init()
    assert again.snp.host("ca") == snp_fw.snp.host("ca")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("asvk_key", "00"),
        ("ark", "zz"),
        ("product", "Bergamo"),
        ("committed", {"major": 1}),
    ],
)
def test_bad_snp_state_names_the_field(snp_fw: Firmware, field: str, value: object) -> None:
    doc = json.loads(snp_fw.persistent_state())
    doc["snp"][field] = value
    with pytest.raises(FormatError) as info:
        Firmware(snp_fw.profile, state=json.dumps(doc).encode())
    assert info.value.field == f"snp.{field}"


def test_a_mismatched_asvk_key_is_refused(snp_fw: Firmware) -> None:
    doc = json.loads(snp_fw.persistent_state())
    doc["snp"]["asvk_key"] = doc["ark_key"]
    with pytest.raises(FormatError, match="does not match"):
        Firmware(snp_fw.profile, state=json.dumps(doc).encode())
