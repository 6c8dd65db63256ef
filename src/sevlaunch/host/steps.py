"""Which launch step each thing the host does is, for an SEV or an SEV-SNP domain.

The host records the same moments for both (the guest object built, the hypervisor started
paused, the launch begun in the firmware, the first resume, the guest's report of its boot),
but they are different steps of different launches: SEV's 13 (:class:`~sevlaunch.protocol.Step`)
measure before the resume, SNP's 12 (:class:`~sevlaunch.protocol.SnpStep`) measure at it and
attest after the boot. The timeline stores each record's number, name and party, so readers
see the right words either way.
"""

from __future__ import annotations

from dataclasses import dataclass

from sevlaunch.host.domxml import Domain
from sevlaunch.protocol import SnpStep, Step

AnyStep = Step | SnpStep


@dataclass(frozen=True)
class HostSteps:
    built: AnyStep  # the sev-guest / sev-snp-guest object
    started: AnyStep  # the hypervisor started paused
    launched: AnyStep  # SEV: LAUNCH_MEASURE ran; SNP: SNP_LAUNCH_START ran
    resumed: AnyStep  # the first cont (LAUNCH_FINISH)
    booted: AnyStep  # the guest's report of its boot or halt
    snp: bool = False


SEV_STEPS = HostSteps(
    Step.SEV_GUEST_BUILT,
    Step.STARTED_PAUSED,
    Step.LAUNCH_MEASURED,
    Step.RESUMED_BOOTED,
    Step.RESUMED_BOOTED,
)
SNP_STEPS = HostSteps(
    SnpStep.SNP_GUEST_BUILT,
    SnpStep.STARTED_PAUSED,
    SnpStep.LAUNCH_STARTED,
    SnpStep.RESUMED,
    SnpStep.GUEST_BOOTED,
    snp=True,
)


def host_steps(domain: Domain) -> HostSteps:
    lsec = domain.launch_security
    return SNP_STEPS if lsec is not None and lsec.type == "sev-snp" else SEV_STEPS
