"""SNP_GUEST_REQUEST: reports and derived keys through AES-256-GCM messages with sequence
numbers; reports verified by the owner verifier and, independently, from the reference alone
(sev-snp.md §4, §6) with nothing of sevlaunch but the firmware under test."""

from __future__ import annotations

import datetime
import struct

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from sevlaunch.crypto.snp.certs import load_cert
from sevlaunch.errors import FirmwareError
from sevlaunch.firmware import Firmware
from sevlaunch.formats.snp.guest_msg import (
    KeyRequest,
    KeyResponse,
    MessageType,
    ReportRequest,
    ReportResponse,
)
from sevlaunch.formats.snp.report import AttestationReport
from sevlaunch.formats.snp.tcb import Generation, TcbLayout, TcbVersion
from sevlaunch.formats.status import Status
from sevlaunch.owner.snp.expectations import SnpExpectations
from sevlaunch.owner.snp.verifier import SnpEvidence, check_report
from tests.firmware.snp.conftest import MakeSnpFw
from tests.firmware.snp.helpers import SnpGuestLaunch

PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
AMD = "1.3.6.1.4.1.3704.1."
NOW = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)


def _certs(fw: Firmware, tcb: int, kind: str = "vcek") -> tuple[bytes, bytes]:
    info = fw.snp.info()
    if kind == "vcek":
        leaf = fw.snp.host("vcek", hwid=info["hwid"], tcb=tcb)
    else:
        leaf = fw.snp.host("vlek_cert", csp_id="CN=cloud.example", tcb=tcb)
    return leaf, fw.snp.host("ca", kind=kind)


def _ext_int(cert: x509.Certificate, suffix: str) -> int:
    raw = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(AMD + suffix)).value
    der = raw.value  # type: ignore[attr-defined]
    assert der[0] == 0x02
    assert der[1] == len(der) - 2
    return int.from_bytes(der[2:], "big")


def independent_verify(report: bytes, leaf_der: bytes, ca_pem: bytes, nonce: bytes) -> None:
    """§4 and §6 only: offsets by hand, RSA-PSS links, ECDSA over [0, 0x2A0)."""
    assert len(report) == 0x4A0
    (version,) = struct.unpack_from("<I", report, 0)
    assert version >= 3
    assert struct.unpack_from("<I", report, 0x34)[0] == 1
    ask, ark = x509.load_pem_x509_certificates(ca_pem)
    leaf = x509.load_der_x509_certificate(leaf_der)
    for subject, issuer in ((ark, ark), (ask, ark), (leaf, ask)):
        issuer_key = issuer.public_key()
        assert isinstance(issuer_key, rsa.RSAPublicKey)
        issuer_key.verify(subject.signature, subject.tbs_certificate_bytes, PSS, hashes.SHA384())
        assert subject.issuer == issuer.subject
    assert ark.subject.rfc4514_string().startswith("CN=ARK-Milan")
    r = int.from_bytes(report[0x2A0:0x2E8], "little")
    s = int.from_bytes(report[0x2E8:0x330], "little")
    assert report[0x330:] == bytes(0x4A0 - 0x330)
    key = leaf.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(encode_dss_signature(r, s), report[:0x2A0], ec.ECDSA(hashes.SHA384()))
    reported = report[0x180:0x188]  # Milan layout: bl, tee, -, -, -, -, snp, ucode
    assert (_ext_int(leaf, "3.1"), _ext_int(leaf, "3.2")) == (reported[0], reported[1])
    assert (_ext_int(leaf, "3.3"), _ext_int(leaf, "3.8")) == (reported[6], reported[7])
    hwid = leaf.extensions.get_extension_for_oid(x509.ObjectIdentifier(AMD + "4")).value
    assert hwid.value == report[0x1A0:0x1E0]  # type: ignore[attr-defined]
    assert report[0x50:0x90] == nonce
    assert report[0x160:0x180] == b"\xff" * 32  # no migration agent
    assert struct.unpack_from("<I", report, 0x48)[0] >> 2 & 7 == 0  # signed by the VCEK


def test_reports_verify_independently_and_with_the_owner_verifier(
    launched: SnpGuestLaunch,
) -> None:
    nonce = bytes(range(64))
    raw = launched.report_bytes(nonce)
    report = AttestationReport.from_bytes(raw)
    leaf, ca = _certs(launched.fw, report.reported_tcb)
    independent_verify(raw, leaf, ca, nonce)
    ark = load_cert(ca[ca.index(b"-----BEGIN", 1) :])
    expectations = SnpExpectations(
        measurements=(launched.expected_ld,), report_data=nonce, require_crl=False
    )
    verdicts = check_report(
        SnpEvidence(raw, leaf=leaf, ca=ca),
        expectations,
        at=NOW,
        trusted_arks={ark.fingerprint: Generation.MILAN},
    )
    assert verdicts.ok, verdicts.failed
    assert verdicts.get("measurement").outcome.value == "pass"


def test_sequence_numbers_advance_by_two_and_a_replay_gets_nothing(
    launched: SnpGuestLaunch,
) -> None:
    header, _ = launched.request(MessageType.REPORT_REQ, ReportRequest(bytes(64)).to_bytes())
    assert (header.msg_seqno, header.msg_type) == (2, MessageType.REPORT_RSP)
    with pytest.raises(FirmwareError) as info:
        launched.request(MessageType.REPORT_REQ, ReportRequest(bytes(64)).to_bytes(), seqno=1)
    assert Status(info.value.status) is Status.INVALID_PARAM
    assert "expected 3" in str(info.value)
    header, _ = launched.request(
        MessageType.REPORT_REQ, ReportRequest(bytes(64)).to_bytes(), seqno=3
    )
    assert header.msg_seqno == 4  # the refused replay consumed nothing


def test_a_message_under_another_vmpck_is_refused(launched: SnpGuestLaunch) -> None:
    secrets = launched.secrets()
    from sevlaunch.crypto.snp import guest_msg
    from sevlaunch.formats.snp.guest_msg import MessageHeader
    from tests.firmware.snp.helpers import REQ_PAGE, RES_PAGE

    forged = guest_msg.seal(
        secrets.vmpck(1),  # claims VMPCK0 below, sealed with VMPCK1
        MessageHeader(msg_seqno=1, msg_type=MessageType.REPORT_REQ, msg_size=0, msg_vmpck=0),
        ReportRequest(bytes(64)).to_bytes(),
    )
    launched.memory.write(REQ_PAGE, forged)
    with pytest.raises(FirmwareError, match="AES-GCM tag"):
        launched.fw.snp.guest_request(launched.gctx, launched.memory, REQ_PAGE, RES_PAGE)


def test_a_vmpl_below_the_callers_is_refused_in_the_response(launched: SnpGuestLaunch) -> None:
    _, payload = launched.request(
        MessageType.REPORT_REQ, ReportRequest(bytes(64), vmpl=0).to_bytes(), vmpck=1
    )
    assert ReportResponse.from_bytes(payload).status == Status.INVALID_PARAM
    _, payload = launched.request(
        MessageType.REPORT_REQ, ReportRequest(bytes(64), vmpl=2).to_bytes(), vmpck=1
    )
    assert AttestationReport.from_bytes(ReportResponse.from_bytes(payload).report).vmpl == 2


def test_an_older_reported_tcb_signs_with_that_tcbs_vcek(snp_fw: Firmware) -> None:
    current = TcbVersion.from_int(snp_fw.snp.info()["current_tcb"], TcbLayout.MILAN)
    old = TcbVersion(TcbLayout.MILAN, current.bootloader, 0, current.snp - 1, current.microcode)
    snp_fw.snp.config(old.to_int())
    guest = SnpGuestLaunch(snp_fw)
    guest.start()
    guest.standard_pages()
    guest.finish()
    raw = guest.report_bytes()
    report = AttestationReport.from_bytes(raw)
    assert (report.reported_tcb, report.current_tcb) == (old.to_int(), current.to_int())
    independent_verify(raw, *_certs(snp_fw, old.to_int()), bytes(64))
    with pytest.raises(InvalidSignature):
        independent_verify(raw, *_certs(snp_fw, current.to_int()), bytes(64))


def test_masks_zero_the_chip_id_and_the_signature(snp_fw: Firmware) -> None:
    snp_fw.snp.config(snp_fw.snp.info()["current_tcb"], mask_chip_id=True, mask_chip_key=True)
    guest = SnpGuestLaunch(snp_fw)
    guest.start()
    guest.standard_pages()
    guest.finish()
    report = guest.report()
    assert report.chip_id == bytes(64)
    assert report.signature == bytes(512)
    assert (report.key.mask_chip_key, report.key.signing_key) == (True, 7)


def test_vlek_signs_once_loaded_and_vcek_disabled_needs_it(make_snp_fw: MakeSnpFw) -> None:
    fw = make_snp_fw()
    tcb = fw.snp.info()["reported_tcb"]
    guest = SnpGuestLaunch(fw)
    guest.start()
    guest.standard_pages()
    guest.finish(vcek_disabled=True)
    _, payload = guest.request(MessageType.REPORT_REQ, ReportRequest(bytes(64)).to_bytes())
    assert ReportResponse.from_bytes(payload).status == Status.INVALID_KEY
    fw.snp.vlek_load(fw.snp.host("vlek_hashstick", csp_id="CN=cloud.example", tcb=tcb))
    raw = guest.report_bytes()
    report = AttestationReport.from_bytes(raw)
    assert report.key.signing_key == 1
    leaf, ca = _certs(fw, tcb, "vlek")
    ark = load_cert(ca[ca.index(b"-----BEGIN", 1) :])
    verdicts = check_report(
        SnpEvidence(raw, leaf=leaf, ca=ca),
        SnpExpectations(
            any_measurement=True,
            any_report_data=True,
            require_crl=False,
            vlek_csp_ids=("CN=cloud.example",),
        ),
        at=NOW,
        trusted_arks={ark.fingerprint: Generation.MILAN},
    )
    assert verdicts.ok, verdicts.failed
    assert verdicts.signer == "VLEK"


def _key(guest: SnpGuestLaunch, **fields: int) -> KeyResponse:
    _, payload = guest.request(MessageType.KEY_REQ, KeyRequest(**fields).to_bytes())
    return KeyResponse.from_bytes(payload)


def test_derived_keys_depend_on_the_selected_fields_only(launched: SnpGuestLaunch) -> None:
    plain, again = _key(launched), _key(launched)
    assert plain.status == 0
    assert plain.derived_key == again.derived_key
    with_measurement = _key(launched, guest_field_select=1 << 3)
    with_policy = _key(launched, guest_field_select=1 << 0)
    keys = {plain.derived_key, with_measurement.derived_key, with_policy.derived_key}
    assert len(keys) == 3
    assert _key(launched, vmpl=1).derived_key != plain.derived_key


@pytest.mark.parametrize(
    "fields",
    [
        {"root_key_select": 1},  # VMRK: no migration agent
        {"guest_field_select": 1 << 4, "guest_svn": 1},  # above the ID block's SVN (0)
        {"guest_field_select": 1 << 5, "tcb_version": (1 << 64) - 1},  # above committed
        {"guest_field_select": 1 << 9},
    ],
)
def test_key_requests_the_firmware_refuses(
    launched: SnpGuestLaunch, fields: dict[str, int]
) -> None:
    assert _key(launched, **fields).status == Status.INVALID_PARAM


def test_turin_reports_name_the_chip_by_8_bytes(make_snp_fw: MakeSnpFw) -> None:
    fw = make_snp_fw("turin")
    guest = SnpGuestLaunch(fw)
    guest.start()
    guest.standard_pages()
    guest.finish()
    report = guest.report()
    assert report.version == 5
    assert report.generation is Generation.TURIN
    assert any(report.chip_id[:8])
    assert report.chip_id[8:] == bytes(56)
    info = fw.snp.info()
    assert len(bytes.fromhex(info["hwid"])) == 8
    assert fw.snp.host("vcek", hwid=report.chip_id.hex(), tcb=report.reported_tcb) == b""
    leaf = load_cert(fw.snp.host("vcek", hwid=info["hwid"], tcb=report.reported_tcb))
    assert leaf.extensions.hwid == report.chip_id[:8]
    assert leaf.extensions.tcb(TcbLayout.TURIN) == report.tcb("reported_tcb")
