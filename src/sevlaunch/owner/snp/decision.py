"""The SNP release decision, for a key broker and the local owner alike: the verifier's
verdicts in, nothing out or a :class:`~sevlaunch.errors.LaunchRefusedError` whose reason code
names the first failed check the way :class:`sevlaunch.owner.decision.Reason` names SEV's
refusals (its message lists every failed check). Single use of a nonce and its expiry are the
broker's transactions; their codes are here too so that every refusal has one name. Pure.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from sevlaunch.errors import LaunchRefusedError
from sevlaunch.owner.snp.verdicts import Verdicts


class SnpReason(enum.StrEnum):
    """Why an SNP guest gets no secret (the audit log and HTTP answers carry these)."""

    MALFORMED_REPORT = "malformed-report"
    UNTRUSTED_SIGNER = "untrusted-signer"  #: generation, signer or chain
    REVOKED = "revoked"  #: the CRL lists the VCEK/VLEK or its ASK, or no valid CRL
    BAD_SIGNATURE = "bad-signature"
    TCB_MISMATCH = "tcb-mismatch"  #: certificate vs REPORTED_TCB, or the TCB order
    TCB_TOO_OLD = "tcb-too-old"
    FIRMWARE_TOO_OLD = "firmware-too-old"
    CHIP_MISMATCH = "chip-mismatch"
    POLICY_MISMATCH = "policy-mismatch"
    VMPL_MISMATCH = "vmpl-mismatch"
    MEASUREMENT_MISMATCH = "measurement-mismatch"
    REPORT_DATA_MISMATCH = "report-data-mismatch"  #: another nonce or key: a replayed report
    HOST_DATA_MISMATCH = "host-data-mismatch"
    ID_KEY_MISMATCH = "id-key-mismatch"
    MITIGATIONS_MISSING = "mitigations-missing"
    # decided by the broker's transactions, before the verifier runs
    UNKNOWN_NONCE = "unknown-nonce"  #: never issued, or erased after its expiry
    REPLAY = "replay"  #: a nonce already spent
    EXPIRED = "expired"
    WRONG_WORKLOAD = "wrong-workload"  #: a nonce issued for another workload
    BAD_KEY = "bad-key"  #: the guest's key is not a P-384 SubjectPublicKeyInfo
    NO_SECRETS = "no-secrets"  #: the workload has nothing to release (the owner's to fix)


#: The reason of each verifier check when it fails (sevlaunch.owner.snp.verdicts.CHECKS).
CHECK_REASONS: Mapping[str, SnpReason] = {
    "parse": SnpReason.MALFORMED_REPORT,
    "generation": SnpReason.UNTRUSTED_SIGNER,
    "signer": SnpReason.UNTRUSTED_SIGNER,
    "chain": SnpReason.UNTRUSTED_SIGNER,
    "crl": SnpReason.REVOKED,
    "signature": SnpReason.BAD_SIGNATURE,
    "tcb_certificate": SnpReason.TCB_MISMATCH,
    "tcb_order": SnpReason.TCB_MISMATCH,
    "tcb_minimum": SnpReason.TCB_TOO_OLD,
    "firmware": SnpReason.FIRMWARE_TOO_OLD,
    "chip_id": SnpReason.CHIP_MISMATCH,
    "policy": SnpReason.POLICY_MISMATCH,
    "platform_info": SnpReason.POLICY_MISMATCH,
    "vmpl": SnpReason.VMPL_MISMATCH,
    "measurement": SnpReason.MEASUREMENT_MISMATCH,
    "report_data": SnpReason.REPORT_DATA_MISMATCH,
    "host_data": SnpReason.HOST_DATA_MISMATCH,
    "id_key": SnpReason.ID_KEY_MISMATCH,
    "mitigations": SnpReason.MITIGATIONS_MISSING,
}


def refuse(reason: SnpReason, message: str, diagnosis: str | None = None) -> LaunchRefusedError:
    return LaunchRefusedError(str(reason), message, diagnosis)


def decide(verdicts: Verdicts, workload: str = "the workload") -> None:
    """Return if every check passed or was skipped; else refuse with the first failed
    check's reason (a report that fails its signature is not trusted to say anything else)."""
    failed = verdicts.failed
    if not failed:
        return
    first = failed[0]
    listed = "; ".join(f"{v.check}: {v.detail}" for v in failed)
    raise refuse(
        CHECK_REASONS.get(first.check, SnpReason.MALFORMED_REPORT),
        f"the SNP report fails {len(failed)} of {workload}'s check(s): {listed}",
    )
