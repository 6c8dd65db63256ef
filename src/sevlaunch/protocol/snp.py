"""An SEV-SNP launch's steps and the values that cross a process boundary in it.

SNP changes the shape of a launch (sev-snp.md §1): the owner's inputs (policy, ID block, host
data) go into the domain at define time, nothing is measured for the host to read, and the
secret is released after boot to a guest that presents a report it asked the firmware for.
:class:`SnpStep` names those steps the way :class:`~sevlaunch.protocol.Step` names SEV's 13;
the values carry the guest ↔ broker exchange (:class:`SnpChallenge`, :class:`SnpEvidence`,
:class:`SnpRelease`) and the guest's attestation config, which the host hands the guest in
fw_cfg (:data:`FW_CFG_NAME`, as libvirt's ``<sysinfo type='fwcfg'>`` writes it).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from sevlaunch.errors import FormatError
from sevlaunch.protocol import _wire as w

#: The fw_cfg file holding a guest's attestation config (QEMU: ``-fw_cfg name=...,string=``).
FW_CFG_NAME = "opt/org.sevlaunch/attestation"
CHALLENGE = "SNP challenge"
EVIDENCE = "SNP evidence"
RELEASE = "SNP release"
LAUNCH_SECURITY = "launch security info"
NODE_SNP = "node SNP info"


class SnpStep(enum.IntEnum):
    """One SNP launch step: ``int(step)`` its number, :attr:`title` and :attr:`party`."""

    title: str
    party: str

    def __new__(cls, number: int, title: str, party: str) -> SnpStep:
        step = int.__new__(cls, number)
        step._value_ = number
        step.title = title
        step.party = party
        return step

    LAUNCH_REQUESTED = (1, "launch requested", "guest owner → VM tool")
    LAUNCH_PARAMETERS = (2, "launch parameters fetched", "VM tool → broker")
    DOMAIN_DEFINED = (3, "domain defined (sev-snp)", "VM tool → host")
    SNP_GUEST_BUILT = (4, "sev-snp-guest object built", "host")
    STARTED_PAUSED = (5, "hypervisor started paused (-S)", "host → hypervisor")
    LAUNCH_STARTED = (6, "SNP_LAUNCH_START", "hypervisor → firmware")
    RESUMED = (7, "resumed: pages measured, launch finished", "host → hypervisor → firmware")
    NONCE_ISSUED = (8, "nonce issued", "guest → broker")
    REPORT_REQUESTED = (9, "report requested (MSG_REPORT_REQ)", "guest → hypervisor → firmware")
    REPORT_VERIFIED = (10, "report verified", "broker")
    SECRET_RELEASED = (11, "secret released to the guest's key", "broker → guest")
    GUEST_BOOTED = (12, "disk unlocked, guest booted", "guest")

    @classmethod
    def of(cls, number: object) -> SnpStep:
        if isinstance(number, bool) or not isinstance(number, int):
            raise FormatError("SNP launch step", "step", "expected a step number", value=number)
        for step in cls:
            if int(step) == number:
                return step
        raise FormatError(
            "SNP launch step", "step", "an SNP launch has steps 1 to 12", value=number
        )

    def __str__(self) -> str:
        return f"SNP step {int(self)} ({self.title})"


@dataclass(frozen=True)
class GuestAttestationConfig:
    """Where the guest's attestation agent goes after boot, and for which workload."""

    broker: str
    workload: str

    @classmethod
    def from_json(cls, text: str | bytes) -> GuestAttestationConfig:
        try:
            wire = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise FormatError("attestation config", "json", f"not JSON: {exc}") from exc
        if not isinstance(wire, dict):
            raise FormatError("attestation config", "json", "expected an object")
        return cls(
            w.text("attestation config", wire, "broker"),
            w.text("attestation config", wire, "workload"),
        )

    def to_json(self) -> str:
        return json.dumps({"broker": self.broker, "workload": self.workload}, sort_keys=True)


@dataclass(frozen=True)
class SnpChallenge:
    """The broker's single-use nonce for one attestation of ``workload``."""

    workload: str
    nonce: bytes = field(repr=False)
    expires: float = 0.0

    @classmethod
    def from_wire(cls, wire: Mapping[str, object]) -> SnpChallenge:
        return cls(
            w.text(CHALLENGE, wire, "workload"),
            w.b64(CHALLENGE, wire, "nonce"),
            w.optional_number(CHALLENGE, wire, "expires") or 0.0,
        )

    def to_wire(self) -> dict[str, object]:
        return {"workload": self.workload, "nonce": w.encode(self.nonce), "expires": self.expires}


@dataclass(frozen=True)
class SnpEvidence:
    """What the guest presents: the report it asked the firmware for (REPORT_DATA binding
    the nonce and ``tee_pubkey``), the key (DER SubjectPublicKeyInfo) and, from an extended
    request, the host's certificate table."""

    workload: str
    nonce: bytes = field(repr=False)
    report: bytes = field(repr=False)
    tee_pubkey: bytes = field(repr=False)
    cert_table: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_wire(cls, wire: Mapping[str, object]) -> SnpEvidence:
        return cls(
            w.text(EVIDENCE, wire, "workload"),
            w.b64(EVIDENCE, wire, "nonce"),
            w.b64(EVIDENCE, wire, "report"),
            w.b64(EVIDENCE, wire, "tee-pubkey"),
            w.optional_b64(EVIDENCE, wire, "cert-table"),
        )

    def to_wire(self) -> dict[str, object]:
        wire: dict[str, object] = {
            "workload": self.workload,
            "nonce": w.encode(self.nonce),
            "report": w.encode(self.report),
            "tee-pubkey": w.encode(self.tee_pubkey),
        }
        if self.cert_table:
            wire["cert-table"] = w.encode(self.cert_table)
        return wire


@dataclass(frozen=True)
class SnpRelease:
    """The workload's secrets (an OVMF secret table, as SEV guests get) sealed to the
    guest's key: the broker's one-time key and the AES-GCM ciphertext; ``attestation`` is
    the broker's id of the decision in its audit log."""

    ephemeral: bytes = field(repr=False)
    ciphertext: bytes = field(repr=False)
    attestation: str = ""

    @classmethod
    def from_wire(cls, wire: Mapping[str, object]) -> SnpRelease:
        return cls(
            w.b64(RELEASE, wire, "ephemeral"),
            w.b64(RELEASE, wire, "ciphertext"),
            str(wire.get("attestation") or ""),
        )

    def to_wire(self) -> dict[str, object]:
        return {
            "ephemeral": w.encode(self.ephemeral),
            "ciphertext": w.encode(self.ciphertext),
            "attestation": self.attestation,
        }


@dataclass(frozen=True)
class SnpLaunchSecurityInfo:
    """virDomainGetLaunchSecurityInfo for an SEV-SNP domain (libvirt 10.5): the firmware's
    version and the guest's 64-bit policy from ``query-sev``, and no measurement: an SNP guest's
    launch digest is only in the reports it asks for after boot."""

    api_major: int
    api_minor: int
    build_id: int
    snp_policy: int

    @classmethod
    def from_wire(cls, wire: Mapping[str, object]) -> SnpLaunchSecurityInfo:
        return cls(
            *(
                w.integer(LAUNCH_SECURITY, wire, key)
                for key in ("sev-api-major", "sev-api-minor", "sev-build-id", "sev-snp-policy")
            )
        )

    def to_wire(self) -> dict[str, int]:
        return {
            "sev-api-major": self.api_major,
            "sev-api-minor": self.api_minor,
            "sev-build-id": self.build_id,
            "sev-snp-policy": self.snp_policy,
        }


@dataclass(frozen=True)
class NodeSnpInfo:
    """What a host says of SEV-SNP: the launchSecurity types its hypervisor can start
    (libvirt 10.5's domain capabilities ``sectype`` enum: ``sev-snp`` when the binary has the
    ``sev-snp-guest`` type) and, where the host can ask the platform (the emulated one's socket;
    ``snphost show`` on a real host), SNP_PLATFORM_STATUS's state, version and TCBs."""

    sectypes: tuple[str, ...]
    state: str | None = None
    api_major: int | None = None
    api_minor: int | None = None
    build_id: int | None = None
    current_tcb: int | None = None
    reported_tcb: int | None = None
    guests: int | None = None

    _KEYS = (
        ("api_major", "snp-api-major"),
        ("api_minor", "snp-api-minor"),
        ("build_id", "snp-build-id"),
        ("current_tcb", "snp-current-tcb"),
        ("reported_tcb", "snp-reported-tcb"),
        ("guests", "snp-guests"),
    )

    @property
    def snp(self) -> bool:
        return "sev-snp" in self.sectypes

    @classmethod
    def from_wire(cls, wire: Mapping[str, object]) -> NodeSnpInfo:
        types = wire.get("launch-security-types")
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise FormatError(NODE_SNP, "launch-security-types", "expected a list of strings")
        state = wire.get("snp-state")
        if state is not None and not isinstance(state, str):
            raise FormatError(NODE_SNP, "snp-state", "expected a string", value=state)
        values = {name: w.optional_integer(NODE_SNP, wire, key) for name, key in cls._KEYS}
        return cls(tuple(types), state, **values)

    def to_wire(self) -> dict[str, object]:
        wire: dict[str, object] = {"launch-security-types": list(self.sectypes)}
        if self.state is not None:
            wire["snp-state"] = self.state
        for name, key in self._KEYS:
            if getattr(self, name) is not None:
                wire[key] = getattr(self, name)
        return wire
