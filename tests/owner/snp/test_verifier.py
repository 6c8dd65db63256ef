"""The SNP verifier on real reports and on a synthetic AMD-shaped PKI: every vector verifies
with its time pinned; bit flips, tampered VCEKs and each broken rule fail, and the error names
every failed check, not only the first."""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sevlaunch.errors import SnpVerificationError
from sevlaunch.formats.snp import AttestationReport, CertTable, CertTableEntry, Generation
from sevlaunch.formats.snp.certtable import ARK_GUID, ASK_GUID, VCEK_GUID, VLEK_GUID
from sevlaunch.owner.snp.expectations import SnpExpectations, TcbMinimum
from sevlaunch.owner.snp.verdicts import CHECKS, Outcome, Verdicts
from sevlaunch.owner.snp.verifier import SnpEvidence, check_report, verify_report
from tests.snp_pki import AT, CSP, Tcb, crl, make_report, pki, sign_report
from tests.snp_vectors import SIGNED, SnpVector


def vector_case(vectors: Path, v: SnpVector) -> tuple[SnpEvidence, SnpExpectations]:
    raw = v.report_bytes(vectors)
    report = AttestationReport.from_bytes(raw)
    evidence = SnpEvidence(raw, v.vcek_bytes(vectors), v.ca_bytes(vectors))
    exp = SnpExpectations(
        measurements=(report.measurement,),
        report_data=report.report_data,
        require_crl=False,
        allow_provisional_firmware=v.provisional,
        allow_debug=bool(report.policy & 1 << 19),
    )
    return evidence, exp


@pytest.mark.parametrize("vector", SIGNED, ids=lambda v: v.name)
def test_every_vector_verifies(vectors: Path, vector: SnpVector) -> None:
    evidence, exp = vector_case(vectors, vector)
    verdicts = verify_report(evidence, exp, at=vector.at)
    assert verdicts.product == vector.product
    assert verdicts.signer == "VCEK"
    passed = {v.check for v in verdicts.verdicts if v.outcome is Outcome.PASS}
    assert {"chain", "signature", "tcb_certificate", "chip_id", "measurement"} <= passed
    assert [v.check for v in verdicts.verdicts] == list(CHECKS)


@given(st.data())
@settings(max_examples=60, deadline=None)
def test_bit_flips_in_signed_range_fail(vectors: Path, data: st.DataObject) -> None:
    vector = data.draw(st.sampled_from(SIGNED))
    evidence, exp = vector_case(vectors, vector)
    raw = bytearray(evidence.report)
    pos = data.draw(st.integers(0, 0x2A0 - 1))
    raw[pos] ^= 1 << data.draw(st.integers(0, 7))
    verdicts = check_report(dataclasses.replace(evidence, report=bytes(raw)), exp, at=vector.at)
    assert not verdicts.ok
    failed = {v.check for v in verdicts.failed}
    assert "signature" in failed or "parse" in failed
    with pytest.raises(SnpVerificationError):
        verdicts.raise_for_failures()


@pytest.mark.parametrize("name", ["test-vcek-invalid-legacy.der", "test-vcek-invalid-new.der"])
def test_tampered_vceks_fail(vectors: Path, name: str) -> None:
    vector = SIGNED[2]
    evidence, exp = vector_case(vectors, vector)
    bad = (vectors / "snp/trustee/test_data/snp" / name).read_bytes()
    with pytest.raises(SnpVerificationError) as info:
        verify_report(dataclasses.replace(evidence, leaf=bad), exp, at=vector.at)
    assert "chain" in info.value.failed
    assert "chip_id" in info.value.failed  # hwID 00..3F is not this chip


def test_expired_certificate_needs_pinned_time(vectors: Path) -> None:
    evidence, exp = vector_case(vectors, SIGNED[1])
    late = datetime.datetime(2031, 1, 1, tzinfo=datetime.UTC)
    with pytest.raises(SnpVerificationError) as info:
        verify_report(evidence, exp, at=late)
    assert info.value.failed == ("chain",)


def test_defaults_are_strict(vectors: Path) -> None:
    vector = SIGNED[2]
    evidence, _ = vector_case(vectors, vector)
    verdicts = check_report(evidence, SnpExpectations(), at=vector.at)
    assert {v.check for v in verdicts.failed} == {"crl", "tcb_order", "measurement", "report_data"}
    with pytest.raises(SnpVerificationError) as info:
        verdicts.raise_for_failures()
    assert info.value.failed == ("crl", "tcb_order", "measurement", "report_data")
    assert "provisional firmware" in str(info.value)


# --- the synthetic PKI -----------------------------------------------------------------------


def synthetic(
    report: AttestationReport,
    product: Generation = Generation.MILAN,
    *,
    vlek: bool = False,
    revoked: tuple[int, ...] = (),
    **exp: Any,
) -> Verdicts:
    p = pki(product)
    evidence = SnpEvidence(
        report.to_bytes(),
        (p.vlek if vlek else p.vcek).to_pem(),
        p.ca_pem(vlek),
        crl(f"ark{product.value}", f"ARK-{product.value}", revoked),
    )
    want: dict[str, Any] = {
        "measurements": (report.measurement,),
        "report_data": report.report_data,
    } | exp
    return check_report(
        evidence,
        SnpExpectations(**want),
        at=AT,
        trusted_arks=p.trusted,
    )


def failed(verdicts: Verdicts) -> set[str]:
    return {v.check for v in verdicts.failed}


@pytest.mark.parametrize("product", list(Generation))
@pytest.mark.parametrize("vlek", [False, True])
def test_synthetic_reports_verify(product: Generation, vlek: bool) -> None:
    verdicts = synthetic(make_report(product, vlek=vlek), product, vlek=vlek, vlek_csp_ids=(CSP,))
    assert verdicts.ok, verdicts.failed
    assert verdicts.get("crl").outcome is Outcome.PASS
    assert verdicts.signer == ("VLEK" if vlek else "VCEK")


def test_every_failure_is_named() -> None:
    report = make_report(policy=0x30000 | 1 << 19, vmpl=1, host_data=b"h" * 32)
    verdicts = synthetic(
        report, measurements=(bytes(48),), report_data=b"other", host_data=b"x" * 32
    )
    assert failed(verdicts) == {"policy", "vmpl", "measurement", "report_data", "host_data"}
    with pytest.raises(SnpVerificationError) as info:
        verdicts.raise_for_failures()
    for name in ("policy", "vmpl", "measurement", "report_data", "host_data"):
        assert name in str(info.value)


def test_vlek_needs_a_named_cloud() -> None:
    report = make_report(vlek=True)
    assert failed(synthetic(report, vlek=True)) == {"signer"}
    assert failed(synthetic(report, vlek=True, vlek_csp_ids=("CN=other",))) == {"signer"}
    assert failed(synthetic(make_report(), allow_vcek=False)) == {"signer"}


def test_signer_must_match_key_info() -> None:
    p = pki()
    report = make_report(vlek=True)  # says VLEK, signed by the VLEK
    evidence = SnpEvidence(report.to_bytes(), p.vcek.to_pem(), p.ca_pem(), None)
    verdicts = check_report(
        evidence,
        SnpExpectations(require_crl=False, any_measurement=True, any_report_data=True),
        at=AT,
        trusted_arks=p.trusted,
    )
    assert {"signer", "signature"} <= failed(verdicts)


@pytest.mark.parametrize("key_info", [0x2, 0x1C, 0x8, 0x20])
def test_unsigned_or_reserved_key_info(key_info: int) -> None:
    assert failed(synthetic(make_report(key_info=key_info))) >= (
        {"parse"} if key_info == 0x20 else {"signer"}
    )


def test_turin_chip_id_rule() -> None:
    product = Generation.TURIN
    good = make_report(product)
    assert synthetic(good, product).ok
    chip = bytearray(good.chip_id)
    chip[40] = 1
    bad = make_report(product, chip_id=bytes(chip))
    assert failed(synthetic(bad, product)) == {"chip_id"}
    masked = make_report(product, chip_id=bytes(64))
    assert failed(synthetic(masked, product)) == {"chip_id"}


def test_tcb_rules() -> None:
    tcb = Tcb()
    report = make_report()
    higher = dataclasses.replace(report, current_tcb=report.current_tcb + (1 << 56))
    assert failed(synthetic(sign_report(higher))) == {"tcb_order"}
    assert synthetic(sign_report(higher), allow_provisional_firmware=True).ok
    # the VCEK was issued for another TCB than the report claims
    other = dataclasses.replace(report, reported_tcb=report.reported_tcb - 1)
    assert failed(synthetic(sign_report(other))) == {"tcb_certificate"}
    # reported above committed is refused even with provisional firmware allowed
    committed_low = dataclasses.replace(
        report, committed_tcb=report.committed_tcb - 1, current_tcb=report.current_tcb - 1
    )
    assert "tcb_order" in failed(
        synthetic(sign_report(committed_low), allow_provisional_firmware=True)
    )
    assert failed(synthetic(report, min_reported_tcb=TcbMinimum(snp=tcb.snp + 1))) == {
        "tcb_minimum"
    }
    assert failed(synthetic(report, min_launch_tcb=TcbMinimum(microcode=0xFF))) == {"tcb_minimum"}
    assert failed(synthetic(report, min_firmware=(1, 56, 0))) == {"firmware"}
    newer = dataclasses.replace(report, current_minor=56)
    assert failed(synthetic(sign_report(newer))) == {"firmware"}


def test_turin_fmc_binds_the_certificate() -> None:
    product = Generation.TURIN
    report = make_report(product)
    bumped = dataclasses.replace(
        report,
        reported_tcb=report.reported_tcb + 1,
        committed_tcb=report.committed_tcb + 1,
        current_tcb=report.current_tcb + 1,
    )
    verdicts = synthetic(sign_report(bumped, product), product)
    assert failed(verdicts) == {"tcb_certificate"}
    assert "fmc=1" in verdicts.get("tcb_certificate").detail


def test_crl_revocation_and_requirement() -> None:
    p = pki()
    assert failed(synthetic(make_report(), revoked=(p.ask.serial,))) == {"crl"}
    report = make_report()
    evidence = SnpEvidence(report.to_bytes(), p.vcek.to_pem(), p.ca_pem())
    exp = SnpExpectations(measurements=(report.measurement,), report_data=report.report_data)
    verdicts = check_report(evidence, exp, at=AT, trusted_arks=p.trusted)
    assert failed(verdicts) == {"crl"}
    relaxed = dataclasses.replace(exp, require_crl=False)
    assert (
        check_report(evidence, relaxed, at=AT, trusted_arks=p.trusted).get("crl").outcome
        is Outcome.SKIP
    )


def test_generation_must_match_the_ark() -> None:
    report = make_report(Generation.GENOA)  # Genoa CPUID, but signed by the Milan VCEK key?
    p = pki(Generation.MILAN)
    milan = make_report(Generation.MILAN)
    genoa_cpuid = sign_report(dataclasses.replace(milan, cpuid_mod_id=report.cpuid_mod_id))
    evidence = SnpEvidence(genoa_cpuid.to_bytes(), p.vcek.to_pem(), p.ca_pem(), None)
    exp = SnpExpectations(require_crl=False, any_measurement=True, any_report_data=True)
    verdicts = check_report(evidence, exp, at=AT, trusted_arks=p.trusted)
    assert failed(verdicts) == {"generation"}
    unknown = sign_report(dataclasses.replace(milan, cpuid_fam_id=0x17))
    assert "generation" in failed(synthetic(unknown))


def test_policy_and_platform_rules() -> None:
    report = make_report(policy=0x3001F | 1 << 18 | 1 << 21)
    assert "policy" in failed(synthetic(report, min_abi=(1, 0)))
    assert failed(synthetic(report, allow_migrate_ma=True, allow_cxl=True)) == set()
    for flag in (
        "require_single_socket",
        "require_aes_256_xts",
        "require_rapl_dis",
        "require_ciphertext_hiding",
        "require_page_swap_disable",
    ):
        flags: dict[str, Any] = {flag: True}
        assert failed(synthetic(make_report(), **flags)) == {"policy"}
    assert failed(synthetic(make_report(), allow_smt=False)) == {"policy"}
    bad_mbo = make_report(policy=0x10000)
    assert "parse" in failed(synthetic(bad_mbo))
    assert failed(synthetic(make_report(), allowed_platform_info=0x5)) == {"platform_info"}
    assert failed(synthetic(make_report(), allowed_policies=(0x30000, 0x70000))) == set()
    exact = synthetic(make_report(), allowed_policies=(0x70000,))
    assert exact.get("policy").detail.startswith("policy 0x30000 is none of the allowed (0x70000)")


def test_unknown_version_and_minimum_version() -> None:
    v6 = make_report(version=6, extension=bytes(152))
    assert failed(synthetic(v6)) == {"parse"}
    assert synthetic(v6, allow_unknown_version=True).ok
    assert failed(synthetic(make_report(), min_report_version=5)) == {"parse"}


def test_mitigations() -> None:
    v5 = make_report(version=5, launch_mit_vector=0b11, current_mit_vector=0b111)
    assert synthetic(v5, required_mitigations=0b11).ok
    assert failed(synthetic(v5, required_mitigations=0b100)) == {"mitigations"}
    assert failed(synthetic(make_report(), required_mitigations=1)) == {"mitigations"}


def test_id_key_vouches_for_the_measurement() -> None:
    digest = bytes([7]) * 48
    report = make_report(id_key_digest=digest, guest_svn=4, family_id=b"f" * 16)
    exp: dict[str, Any] = {"measurements": (), "trusted_id_keys": (digest,), "min_guest_svn": 4}
    verdicts = synthetic(report, **exp)
    assert verdicts.ok
    assert "trusted ID key" in verdicts.get("measurement").detail
    assert failed(synthetic(report, **exp | {"min_guest_svn": 5})) >= {"id_key", "measurement"}
    assert "id_key" in failed(synthetic(make_report(), require_id_block=True))
    assert failed(synthetic(report, family_id=b"g" * 16)) == {"id_key"}
    author = make_report(id_key_digest=digest, author_key_digest=b"a" * 48, key_info=1)
    assert synthetic(author, trusted_author_keys=(b"a" * 48,)).ok


def test_expected_identities() -> None:
    report = make_report()
    assert failed(synthetic(report, chip_ids=(bytes(64),))) == {"chip_id"}
    assert failed(synthetic(report, report_ids=(b"r" * 32,))) == {"chip_id"}
    assert synthetic(report, chip_ids=(report.chip_id,)).ok


def test_missing_certificates_and_table_evidence() -> None:
    p = pki()
    report = make_report()
    exp = SnpExpectations(
        measurements=(report.measurement,), report_data=report.report_data, require_crl=False
    )
    verdicts = check_report(SnpEvidence(report.to_bytes()), exp, at=AT, trusted_arks=p.trusted)
    assert {"signer", "chain"} <= failed(verdicts)
    assert verdicts.get("signature").outcome is Outcome.SKIP
    table = CertTable(
        (
            CertTableEntry(VCEK_GUID, p.vcek.der),
            CertTableEntry(ASK_GUID, p.ask.der),
            CertTableEntry(ARK_GUID, p.ark.der),
        )
    ).to_bytes(pad_to_page=True)
    ok = check_report(
        SnpEvidence(report.to_bytes(), cert_table=table), exp, at=AT, trusted_arks=p.trusted
    )
    assert ok.ok, ok.failed
    # a host-supplied ARK that is not pinned is refused
    assert "chain" in failed(
        check_report(SnpEvidence(report.to_bytes(), cert_table=table), exp, at=AT)
    )
    vlek_table = CertTable((CertTableEntry(VLEK_GUID, p.vlek.der),)).to_bytes()
    vlek = make_report(vlek=True)
    verdicts = check_report(
        SnpEvidence(vlek.to_bytes(), ca=p.ca_pem(True), cert_table=vlek_table),
        dataclasses.replace(exp, measurements=(vlek.measurement,), vlek_csp_ids=(CSP,)),
        at=AT,
        trusted_arks=p.trusted,
    )
    assert verdicts.ok, verdicts.failed


def test_unparseable_report() -> None:
    verdicts = check_report(SnpEvidence(b"short"), SnpExpectations(), at=AT)
    assert failed(verdicts) == {"parse"}
    assert all(v.outcome is Outcome.SKIP for v in verdicts.verdicts[1:])
    with pytest.raises(ValueError, match="timezone-aware"):
        check_report(SnpEvidence(b""), SnpExpectations(), at=datetime.datetime(2025, 1, 1))


def test_verdicts_serialise() -> None:
    verdicts = synthetic(make_report(), vmpl=1)
    again = Verdicts.from_dict(__import__("json").loads(verdicts.to_json()))
    assert again == verdicts
    assert again.as_dict()["ok"] is False
