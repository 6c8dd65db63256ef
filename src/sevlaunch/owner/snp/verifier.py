"""The SNP report verifier: one call runs every check of sev-snp.md §7 and returns a verdict
per check; :func:`verify_report` raises naming every failed check, not only the first.

Certificates come from the caller (a VCEK/VLEK and a CA bundle, as KDS serves them) or from
the extended report's certificate table, which the host supplies unauthenticated: either way
the chain must end in a pinned AMD ARK. The time is a parameter (``at``), never the clock.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from sevlaunch.crypto.snp import ecdsa
from sevlaunch.crypto.snp.certs import AmdExtensions, SnpCert, load_cert, load_certs
from sevlaunch.crypto.snp.chain import AMD_ARKS, SignerKind, VerifiedChain, split_ca, verify_chain
from sevlaunch.crypto.snp.crl import verify_crl
from sevlaunch.errors import SevlaunchError
from sevlaunch.formats.snp.certtable import ARK_GUID, ASK_GUID, VCEK_GUID, VLEK_GUID, CertTable
from sevlaunch.formats.snp.report import SIGNED_SIZE, AttestationReport
from sevlaunch.formats.snp.tcb import Generation, TcbLayout
from sevlaunch.owner.snp import checks
from sevlaunch.owner.snp.checks import FAIL, PASS, SKIP, Result
from sevlaunch.owner.snp.expectations import SnpExpectations
from sevlaunch.owner.snp.verdicts import CHECKS, Verdict, Verdicts

LEAF_CNS = ("SEV-VCEK", "SEV-VLEK")


@dataclass(frozen=True)
class SnpEvidence:
    """What a guest and its host hand the verifier. ``leaf`` is the VCEK or VLEK (DER or
    PEM); ``ca`` one or more PEM bundles with the ASK/ASVK and the ARK; ``cert_table`` an
    extended report's certificate table, used for whatever ``leaf``/``ca`` do not give."""

    report: bytes
    leaf: bytes | None = None
    ca: bytes | None = None
    crl: bytes | None = None
    cert_table: bytes | None = None


class _Run:
    """State shared by the checks of one verification."""

    def __init__(
        self,
        evidence: SnpEvidence,
        exp: SnpExpectations,
        at: datetime.datetime,
        trusted_arks: Mapping[str, Generation],
    ) -> None:
        self.evidence, self.exp, self.at, self.trusted = evidence, exp, at, trusted_arks
        self.report: AttestationReport | None = None
        self.leaf: SnpCert | None = None
        self.ark: SnpCert | None = None
        self.intermediates: dict[str, SnpCert] = {}
        self.cert_problem = ""
        self.chain: VerifiedChain | None = None
        self.ext: AmdExtensions | None = None
        self.product: Generation | None = None
        self.results: dict[str, Result] = {}

    # --- evidence ------------------------------------------------------------------------

    def load_certs(self, report: AttestationReport) -> None:
        table = None
        try:
            if self.evidence.cert_table is not None:
                table = CertTable.from_bytes(self.evidence.cert_table)
            leaf_der = self.evidence.leaf
            if leaf_der is None and table is not None:
                leaf_der = table.find(VLEK_GUID if report.key.signing_key == 1 else VCEK_GUID)
            if leaf_der is None:
                self.cert_problem = "no VCEK/VLEK given (--vcek, or an extended report's table)"
                return
            given = load_certs(leaf_der)  # a DER leaf, or a PEM bundle VCEK ‖ ASK ‖ ARK
            leaves = [c for c in given if c.common_name in LEAF_CNS]
            if len(leaves) != 1:
                self.cert_problem = f"expected one SEV-VCEK or SEV-VLEK, found {len(leaves)}"
                return
            self.leaf = leaves[0]
            self.ext = self.leaf.extensions
            bundle = tuple(c for c in given if c is not self.leaf)
            if self.evidence.ca is not None:
                bundle = load_certs(self.evidence.ca)
            elif not bundle and table is not None:
                bundle = tuple(
                    load_cert(d) for g in (ASK_GUID, ARK_GUID) if (d := table.find(g)) is not None
                )
            if not bundle:
                self.cert_problem = "no ASK/ASVK and ARK given (--ca, or KDS's cert_chain)"
                return
            self.ark, self.intermediates = split_ca(bundle)
        except SevlaunchError as exc:
            self.cert_problem = str(exc)

    def layout(self, report: AttestationReport) -> TcbLayout:
        gen = report.generation or self.product
        return gen.layout if gen else TcbLayout.MILAN

    # --- the checks that need the certificates ------------------------------------------

    def check_generation(self, report: AttestationReport) -> Result:
        from_cpuid = report.generation
        from_ark = self.trusted.get(self.ark.fingerprint) if self.ark else None
        if report.version >= 3 and from_cpuid is None:
            return FAIL, (
                f"CPUID family {report.cpuid_fam_id:#x} model {report.cpuid_mod_id:#x}"
                " is no known SNP generation"
            )
        if from_cpuid and from_ark and from_cpuid is not from_ark:
            return FAIL, f"the report is from {from_cpuid.value}, the ARK is {from_ark.value}'s"
        self.product = from_cpuid or from_ark
        if self.product is None:
            return FAIL, "version 2 report and no trusted ARK: the generation is unknown"
        how = "CPUID" if from_cpuid else "the ARK (version 2 reports carry no CPUID)"
        return PASS, f"{self.product.value}, from {how}"

    def check_signer(self, report: AttestationReport) -> Result:  # noqa: PLR0911 - one per rule
        key = report.key
        if key.mask_chip_key or key.signing_key == 7:
            return FAIL, "the firmware did not sign (MASK_CHIP_KEY or SIGNING_KEY none)"
        if key.signing_key not in (0, 1):
            return FAIL, f"SIGNING_KEY {key.signing_key} is reserved"
        if self.leaf is None:
            return FAIL, self.cert_problem
        want = SignerKind.VCEK if key.signing_key == 0 else SignerKind.VLEK
        if self.leaf.common_name != want.leaf_cn:
            return FAIL, f"KEY_INFO says {want.value}, the certificate is {self.leaf.common_name}"
        if want is SignerKind.VCEK and not self.exp.allow_vcek:
            return FAIL, "VCEK-signed, but only VLEK-signed reports are accepted"
        if want is SignerKind.VLEK:
            csp = self.ext.csp_id if self.ext else None
            if csp not in self.exp.vlek_csp_ids:
                named = ", ".join(self.exp.vlek_csp_ids) or "none named"
                return FAIL, f"VLEK of cloud {csp!r}, not a trusted one ({named})"
            return PASS, f"VLEK of {csp}"
        return PASS, "VCEK"

    def check_chain(self, report: AttestationReport) -> Result:
        if self.leaf is None or self.ark is None:
            return FAIL, self.cert_problem
        ask = self.intermediates.get(self.leaf.issuer_name)
        if ask is None:
            return FAIL, f"the CA bundle lacks {self.leaf.issuer_name!r}, the leaf's issuer"
        try:
            self.chain = verify_chain(
                self.leaf, ask, self.ark, at=self.at, trusted_arks=self.trusted
            )
        except SevlaunchError as exc:
            return FAIL, str(exc)
        return PASS, (
            f"ARK-{self.chain.product.value} (pinned) -> {ask.common_name} -> "
            f"{self.leaf.common_name}, valid at {self.at:%Y-%m-%d}"
        )

    def check_crl(self, report: AttestationReport) -> Result:
        if self.evidence.crl is None:
            if self.exp.require_crl:
                return FAIL, "no CRL given ('sevlaunch owner snp fetch crl'), or accept none"
            return SKIP, "no CRL given (not required)"
        if self.chain is None:
            return SKIP, "not run: the chain did not verify"
        try:
            crl = verify_crl(self.evidence.crl, self.chain.ark, at=self.at)
        except SevlaunchError as exc:
            return FAIL, str(exc)
        revoked = [
            c.common_name
            for c in (self.chain.ask, self.chain.leaf)
            if not c.serial_zero and crl.is_revoked(c)
        ]
        if revoked:
            return FAIL, f"revoked: {', '.join(revoked)}"
        return PASS, f"CRL of {crl.last_update:%Y-%m-%d}, {len(crl.revoked)} revoked, none ours"

    def check_signature(self, report: AttestationReport) -> Result:
        if self.leaf is None:
            return SKIP, "not run: no VCEK/VLEK"
        try:
            key = self.leaf.public_key
            if not isinstance(key, ec.EllipticCurvePublicKey):
                return FAIL, "the VCEK/VLEK key is not ECDSA"
            # the parsed report re-encodes to these bytes exactly (a tested property)
            signed = self.evidence.report[:SIGNED_SIZE]
            ecdsa.verify(key, report.ecdsa_signature, signed)
        except SevlaunchError as exc:
            return FAIL, str(exc)
        return PASS, f"ECDSA P-384 over bytes 0x000–0x29F by the {self.leaf.common_name}"


def check_report(
    evidence: SnpEvidence,
    expectations: SnpExpectations,
    *,
    at: datetime.datetime,
    trusted_arks: Mapping[str, Generation] = AMD_ARKS,
) -> Verdicts:
    """Every check's verdict; never raises for a failed check (see :func:`verify_report`)."""
    if at.tzinfo is None:
        raise ValueError("the verification time must be timezone-aware (UTC)")
    run = _Run(evidence, expectations, at, trusted_arks)
    try:
        report = AttestationReport.from_bytes(evidence.report)
    except SevlaunchError as exc:
        skipped = tuple(Verdict(c, SKIP, "not run: the report did not parse") for c in CHECKS[1:])
        return Verdicts((Verdict("parse", FAIL, str(exc)), *skipped), at.isoformat())
    run.load_certs(report)
    exp = expectations
    steps: dict[str, Callable[[], Result]] = {
        "parse": lambda: checks.check_parse(report, exp),
        "generation": lambda: run.check_generation(report),
        "signer": lambda: run.check_signer(report),
        "chain": lambda: run.check_chain(report),
        "crl": lambda: run.check_crl(report),
        "signature": lambda: run.check_signature(report),
        "tcb_certificate": lambda: (
            checks.check_tcb_certificate(report, run.ext, run.layout(report))
            if run.ext is not None
            else (SKIP, "not run: no VCEK/VLEK")
        ),
        "tcb_order": lambda: checks.check_tcb_order(report, exp, run.layout(report)),
        "tcb_minimum": lambda: checks.check_tcb_minimum(report, exp, run.layout(report)),
        "firmware": lambda: checks.check_firmware(report, exp),
        "chip_id": lambda: checks.check_chip_id(report, exp, run.ext, run.product),
        "policy": lambda: checks.check_policy(report, exp),
        "platform_info": lambda: checks.check_platform_info(report, exp),
        "vmpl": lambda: checks.check_vmpl(report, exp),
        "measurement": lambda: checks.check_measurement(
            report, exp, checks.id_key_trusted(report, exp)
        ),
        "report_data": lambda: checks.check_report_data(report, exp),
        "host_data": lambda: checks.check_host_data(report, exp),
        "id_key": lambda: checks.check_id_key(report, exp),
        "mitigations": lambda: checks.check_mitigations(report, exp),
    }
    verdicts = tuple(Verdict(name, *steps[name]()) for name in CHECKS)
    signer = run.leaf.common_name.removeprefix("SEV-") if run.leaf else None
    return Verdicts(verdicts, at.isoformat(), run.product.value if run.product else None, signer)


def verify_report(
    evidence: SnpEvidence,
    expectations: SnpExpectations,
    *,
    at: datetime.datetime,
    trusted_arks: Mapping[str, Generation] = AMD_ARKS,
) -> Verdicts:
    """Run every check; raise SnpVerificationError naming each failed one, else the verdicts."""
    return check_report(
        evidence, expectations, at=at, trusted_arks=trusted_arks
    ).raise_for_failures()
