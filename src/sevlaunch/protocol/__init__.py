"""The launch protocol: the 13 steps and the typed values that travel between the parties.

One vocabulary for the VM tool, the host manager, the broker and both dashboards: a
:class:`Step` names each of DESIGN.md's 13 steps with one number, one name and one party, and
the frozen values (:class:`NodeSevInfo`, :class:`LaunchSecurityInfo`, :class:`SessionOffer`,
:class:`SecretRelease`, :class:`DomainInfo`, :class:`StepReport`) carry what crosses a process
boundary, converted to and from the wire dicts once, with libvirt's key names. SEV-SNP's
steps and values are in :mod:`.snp`. Pure: depends
only on :mod:`sevlaunch.errors` and :mod:`sevlaunch.formats`.
"""

from __future__ import annotations

from sevlaunch.protocol.snp import (
    GuestAttestationConfig,
    NodeSnpInfo,
    SnpChallenge,
    SnpEvidence,
    SnpLaunchSecurityInfo,
    SnpRelease,
    SnpStep,
)
from sevlaunch.protocol.steps import Outcome, Step
from sevlaunch.protocol.timeline import one_per_step
from sevlaunch.protocol.values import (
    DomainInfo,
    HostEvent,
    LaunchConfiguration,
    LaunchSecurityInfo,
    NodeSevInfo,
    SecretInfo,
    SecretRelease,
    SessionOffer,
    StepReport,
)

__all__ = [
    "DomainInfo",
    "GuestAttestationConfig",
    "HostEvent",
    "LaunchConfiguration",
    "LaunchSecurityInfo",
    "NodeSevInfo",
    "NodeSnpInfo",
    "Outcome",
    "SecretInfo",
    "SecretRelease",
    "SessionOffer",
    "SnpChallenge",
    "SnpEvidence",
    "SnpLaunchSecurityInfo",
    "SnpRelease",
    "SnpStep",
    "Step",
    "StepReport",
    "one_per_step",
]
