"""The report-against-expectations checks of the SNP verifier (sev-snp.md §7, items 6–14).

Each check takes the parsed report (and what the chain established) and returns an
``(Outcome, detail)`` pair; :mod:`sevlaunch.owner.snp.verifier` runs them all.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from sevlaunch.crypto.snp.certs import AmdExtensions
from sevlaunch.formats.snp.policy import SnpPolicyFlags
from sevlaunch.formats.snp.report import MIT_VERSION, AttestationReport
from sevlaunch.formats.snp.tcb import Generation, TcbLayout
from sevlaunch.owner.snp.expectations import SnpExpectations
from sevlaunch.owner.snp.verdicts import Outcome

Result = tuple[Outcome, str]
PASS, FAIL, SKIP = Outcome.PASS, Outcome.FAIL, Outcome.SKIP


def _join(problems: list[str], ok: str) -> Result:
    return (FAIL, "; ".join(problems)) if problems else (PASS, ok)


def check_parse(report: AttestationReport, exp: SnpExpectations) -> Result:
    problems = []
    if not report.known_version and not exp.allow_unknown_version:
        problems.append(
            f"version {report.version} is newer than this verifier knows (5); "
            "parsed by the common prefix only"
        )
    if report.version < exp.min_report_version:
        problems.append(f"version {report.version} < required {exp.min_report_version}")
    if report.signature_algo != 1:
        problems.append(f"SIGNATURE_ALGO {report.signature_algo} is not 1 (ECDSA P-384)")
    problems += [f"policy: {p}" for p in report.guest_policy.problems()]
    if report.key.reserved:
        problems.append(f"KEY_INFO reserved bits 31:5 set ({report.key.reserved:#x})")
    if report.signature_algo == 1 and report.signature[144:] != bytes(368):
        problems.append("the signature's reserved bytes 0x330–0x49F are not zero")
    return _join(problems, f"version {report.version}, 1184 bytes, reserved fields zero")


def check_tcb_certificate(
    report: AttestationReport, ext: AmdExtensions, layout: TcbLayout
) -> Result:
    cert_tcb = ext.tcb(layout)
    reported = report.tcb("reported_tcb", layout)
    if cert_tcb is None:
        need = "blSPL, teeSPL, snpSPL, ucodeSPL" + (", fmcSPL" if layout is TcbLayout.TURIN else "")
        return FAIL, f"the certificate lacks one of {need}"
    if not cert_tcb.same_components(reported):
        return FAIL, (
            f"the certificate is for TCB {cert_tcb.describe()}, the report claims "
            f"REPORTED_TCB {reported.describe()}"
        )
    return PASS, f"certificate SPLs equal REPORTED_TCB ({reported.describe()})"


def check_tcb_order(report: AttestationReport, exp: SnpExpectations, layout: TcbLayout) -> Result:
    reported, committed, current = (
        report.tcb(n, layout) for n in ("reported_tcb", "committed_tcb", "current_tcb")
    )
    problems = []
    if not reported.at_most(committed):
        problems.append(
            f"REPORTED_TCB {reported.describe()} exceeds COMMITTED_TCB {committed.describe()}"
        )
    if not committed.at_most(current):
        problems.append(
            f"COMMITTED_TCB {committed.describe()} exceeds CURRENT_TCB {current.describe()}"
        )
    if not committed.same_components(current) and not exp.allow_provisional_firmware:
        problems.append(
            f"CURRENT_TCB {current.describe()} is not committed "
            f"({committed.describe()}): provisional firmware is not allowed"
        )
    return _join(problems, "reported ≤ committed ≤ current")


def check_tcb_minimum(report: AttestationReport, exp: SnpExpectations, layout: TcbLayout) -> Result:
    problems = [
        f"REPORTED_TCB {s}"
        for s in exp.min_reported_tcb.shortfalls(report.tcb("reported_tcb", layout))
    ]
    problems += [
        f"LAUNCH_TCB {s}" for s in exp.min_launch_tcb.shortfalls(report.tcb("launch_tcb", layout))
    ]
    return _join(problems, "REPORTED_TCB and LAUNCH_TCB meet the minimums")


def check_firmware(report: AttestationReport, exp: SnpExpectations) -> Result:
    cur, com = report.current_version, report.committed_version
    text = "{}.{}.{}".format
    problems = []
    if com != cur and not exp.allow_provisional_firmware:
        problems.append(f"firmware {text(*cur)} is not committed ({text(*com)})")
    elif com > cur:
        problems.append(f"committed firmware {text(*com)} is newer than current {text(*cur)}")
    if cur < exp.min_firmware:
        problems.append(f"firmware {text(*cur)} < required {text(*exp.min_firmware)}")
    return _join(problems, f"firmware {text(*cur)}")


def check_chip_id(
    report: AttestationReport,
    exp: SnpExpectations,
    ext: AmdExtensions | None,
    product: Generation | None,
) -> Result:
    problems = []
    chip = report.chip_id
    if ext is not None and ext.csp_id is None:  # a VCEK: bound to one chip
        if not any(chip):
            problems.append("CHIP_ID is zero (MASK_CHIP_ID): a VCEK cannot be bound to it")
        elif ext.hwid is None:
            problems.append("the VCEK has no hwID extension")
        else:
            size = len(ext.hwid)
            want = product.hwid_size if product else size
            if size != want:
                problems.append(
                    f"the VCEK's hwID is {size} bytes, {want} for {product.value}"
                    if product
                    else ""
                )
            elif not hmac.compare_digest(ext.hwid, chip[:size]) or any(chip[size:]):
                problems.append(
                    f"CHIP_ID {chip[:8].hex()}… is not the VCEK's hwID "
                    f"{ext.hwid[:8].hex()}…"
                    + (" (Turin: bytes 8–63 must be zero)" if size == 8 else "")
                )
    if exp.chip_ids and chip not in exp.chip_ids:
        problems.append(f"CHIP_ID {chip[:8].hex()}… is not an expected chip")
    if exp.report_ids and report.report_id not in exp.report_ids:
        problems.append(f"REPORT_ID {report.report_id[:8].hex()}… is not expected")
    ok = (
        "CHIP_ID equals the VCEK's hwID"
        if ext is not None and ext.csp_id is None
        else "a VLEK is not bound to a chip"
    )
    return _join([p for p in problems if p], ok)


# (bit, expectation, name) as plain ints: enum member access costs more than the checks
_FORBIDDEN = tuple(
    (f.value, attr, (f.name or "").lower())
    for f, attr in (
        (SnpPolicyFlags.DEBUG, "allow_debug"),
        (SnpPolicyFlags.MIGRATE_MA, "allow_migrate_ma"),
        (SnpPolicyFlags.SMT, "allow_smt"),
        (SnpPolicyFlags.CXL_ALLOW, "allow_cxl"),
    )
)
_REQUIRED = tuple(
    (f.value, attr, (f.name or "").lower())
    for f, attr in (
        (SnpPolicyFlags.SINGLE_SOCKET, "require_single_socket"),
        (SnpPolicyFlags.MEM_AES_256_XTS, "require_aes_256_xts"),
        (SnpPolicyFlags.RAPL_DIS, "require_rapl_dis"),
        (SnpPolicyFlags.CIPHERTEXT_HIDING, "require_ciphertext_hiding"),
        (SnpPolicyFlags.PAGE_SWAP_DISABLE, "require_page_swap_disable"),
    )
)


def check_policy(report: AttestationReport, exp: SnpExpectations) -> Result:
    policy = report.guest_policy
    problems = []
    if (policy.abi_major, policy.abi_minor) < exp.min_abi:
        problems.append(
            f"policy ABI {policy.abi_major}.{policy.abi_minor} < required "
            f"{exp.min_abi[0]}.{exp.min_abi[1]}"
        )
    value = report.policy
    if exp.allowed_policies and value not in exp.allowed_policies:
        allowed = ", ".join(f"{p:#x}" for p in exp.allowed_policies)
        problems.append(f"policy {value:#x} is none of the allowed ({allowed})")
    for bit, allowed, name in _FORBIDDEN:
        if value & bit and not getattr(exp, allowed):
            problems.append(f"{name} is allowed by the guest policy")
    for bit, required, name in _REQUIRED:
        if getattr(exp, required) and not value & bit:
            problems.append(f"{name} is required but not in the policy")
    return _join(problems, policy.describe())


def check_platform_info(report: AttestationReport, exp: SnpExpectations) -> Result:
    if exp.allowed_platform_info is None:
        return PASS, f"{report.platform.describe()} (any allowed)"
    extra = report.platform_info & ~exp.allowed_platform_info
    if extra:
        return FAIL, f"PLATFORM_INFO bits {extra:#x} are not allowed"
    return PASS, report.platform.describe()


def check_vmpl(report: AttestationReport, exp: SnpExpectations) -> Result:
    if exp.vmpl is None:
        return SKIP, f"VMPL {report.vmpl} (any accepted)"
    if report.vmpl != exp.vmpl:
        return FAIL, f"VMPL {report.vmpl}, expected {exp.vmpl}"
    return PASS, f"VMPL {report.vmpl}"


def check_measurement(report: AttestationReport, exp: SnpExpectations, id_key_ok: bool) -> Result:
    m = report.measurement
    if exp.measurements:
        if any(hmac.compare_digest(m, d) for d in exp.measurements):
            return PASS, f"MEASUREMENT {m.hex()} is expected"
        return FAIL, f"MEASUREMENT {m.hex()} is none of the {len(exp.measurements)} expected"
    if id_key_ok:
        return PASS, "vouched for by a trusted ID key (the ID block's digest)"
    if exp.any_measurement:
        return SKIP, f"MEASUREMENT {m.hex()} not checked (any accepted)"
    return FAIL, "no expected measurement given: an unchecked measurement proves nothing"


def check_report_data(report: AttestationReport, exp: SnpExpectations) -> Result:
    want = exp.padded_report_data
    if want is None:
        if exp.any_report_data:
            return SKIP, "REPORT_DATA not checked (any accepted): no freshness"
        return FAIL, "no expected report data given: the report may be a replay"
    if not hmac.compare_digest(report.report_data, want):
        return FAIL, f"REPORT_DATA {report.report_data[:16].hex()}… is not the expected binding"
    return PASS, "REPORT_DATA binds the expected nonce/key"


def check_host_data(report: AttestationReport, exp: SnpExpectations) -> Result:
    want = exp.padded_host_data
    if want is None:
        return SKIP, "no HOST_DATA expected"
    if not hmac.compare_digest(report.host_data, want):
        return FAIL, f"HOST_DATA {report.host_data.hex()} is not the expected value"
    return PASS, "HOST_DATA as expected"


def check_id_key(report: AttestationReport, exp: SnpExpectations) -> Result:
    configured = exp.require_id_block or exp.trusted_id_keys or exp.trusted_author_keys
    problems: list[str] = []
    if configured:
        id_ok = report.id_key_digest in exp.trusted_id_keys
        author_ok = report.key.author_key_en and report.author_key_digest in exp.trusted_author_keys
        if not any(report.id_key_digest):
            problems.append("the guest was launched without an ID block")
        elif not (id_ok or author_ok):
            problems.append(
                f"neither ID_KEY_DIGEST {report.id_key_digest[:8].hex()}… nor an "
                "author key digest is trusted"
            )
    checks: tuple[tuple[bool, Callable[[], str]], ...] = (
        (
            exp.family_id is not None and report.family_id != exp.family_id,
            lambda: f"FAMILY_ID {report.family_id.hex()} is not expected",
        ),
        (
            exp.image_id is not None and report.image_id != exp.image_id,
            lambda: f"IMAGE_ID {report.image_id.hex()} is not expected",
        ),
        (
            report.guest_svn < exp.min_guest_svn,
            lambda: f"GUEST_SVN {report.guest_svn} < {exp.min_guest_svn}",
        ),
    )
    problems += [text() for bad, text in checks if bad]
    if (
        not configured
        and not problems
        and exp.family_id is None
        and exp.image_id is None
        and not exp.min_guest_svn
    ):
        return SKIP, "no ID key expected"
    return _join(problems, "trusted ID block")


def id_key_trusted(report: AttestationReport, exp: SnpExpectations) -> bool:
    """Whether a trusted ID key vouches for the measurement (its ID block held it)."""
    return check_id_key(report, exp)[0] is PASS and bool(
        exp.trusted_id_keys or exp.trusted_author_keys
    )


def check_mitigations(report: AttestationReport, exp: SnpExpectations) -> Result:
    need = exp.required_mitigations
    if not need:
        return SKIP, "no mitigation required"
    if report.version < MIT_VERSION:
        return FAIL, f"version {report.version} reports carry no mitigation vectors"
    problems = [
        f"{name} lacks {need & ~value:#x}"
        for name, value in (
            ("LAUNCH_MIT_VECTOR", report.launch_mit_vector),
            ("CURRENT_MIT_VECTOR", report.current_mit_vector),
        )
        if need & ~value
    ]
    return _join(problems, f"mitigations {need:#x} present")
