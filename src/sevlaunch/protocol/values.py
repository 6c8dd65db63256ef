"""The values that cross a process boundary during a launch, typed once at each end.

Each has ``from_wire`` (a JSON object as the host's or the broker's API sends it, with
libvirt's key names; a malformed one raises :class:`~sevlaunch.errors.FormatError` naming the
key) and ``to_wire`` (the same object back). Binary fields are bytes here, base64 on the wire.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sevlaunch.errors import FormatError, UsageError
from sevlaunch.formats.session import MEASUREMENT_SIZE, Measurement
from sevlaunch.protocol import _wire as w
from sevlaunch.protocol.steps import Step

NODE = "node SEV info"
LAUNCH_SECURITY = "launch security info"


@dataclass(frozen=True)
class NodeSevInfo:
    """virNodeGetSEVInfo: the platform's PDH and chain (PEK ‖ OCA ‖ CEK), its chip id and the
    C-bit layout, and the ASID split when the host knows it."""

    pdh: bytes = field(repr=False)
    cert_chain: bytes = field(repr=False)
    cbitpos: int
    reduced_phys_bits: int
    cpu0_id: bytes | None = None
    max_guests: int | None = None
    max_es_guests: int | None = None

    @classmethod
    def from_wire(cls, wire: Mapping[str, object]) -> NodeSevInfo:
        return cls(
            pdh=w.b64(NODE, wire, "pdh"),
            cert_chain=w.b64(NODE, wire, "cert-chain"),
            cbitpos=w.integer(NODE, wire, "cbitpos"),
            reduced_phys_bits=w.integer(NODE, wire, "reduced-phys-bits"),
            cpu0_id=w.optional_b64(NODE, wire, "cpu0-id"),
            max_guests=w.optional_integer(NODE, wire, "max-guests"),
            max_es_guests=w.optional_integer(NODE, wire, "max-es-guests"),
        )

    def to_wire(self) -> dict[str, str | int]:
        wire: dict[str, str | int] = {
            "pdh": w.encode(self.pdh),
            "cert-chain": w.encode(self.cert_chain),
            "cbitpos": self.cbitpos,
            "reduced-phys-bits": self.reduced_phys_bits,
        }
        if self.cpu0_id:
            wire["cpu0-id"] = w.encode(self.cpu0_id)
        if self.max_guests is not None:
            wire["max-guests"] = self.max_guests
        if self.max_es_guests is not None:
            wire["max-es-guests"] = self.max_es_guests
        return wire

    def with_asids(self, max_guests: int, max_es_guests: int) -> NodeSevInfo:
        return NodeSevInfo(
            self.pdh,
            self.cert_chain,
            self.cbitpos,
            self.reduced_phys_bits,
            self.cpu0_id,
            max_guests,
            max_es_guests,
        )


@dataclass(frozen=True)
class LaunchSecurityInfo:
    """virDomainGetLaunchSecurityInfo after LAUNCH_MEASURE: the 48-byte measurement (MEASURE ‖
    MNONCE) and the platform values the MEASURE MAC covers. The one typed form of the
    measurement from the host to the guest owner's check."""

    measurement: Measurement
    api_major: int
    api_minor: int
    build_id: int
    policy: int

    def __post_init__(self) -> None:
        for name in ("api_major", "api_minor", "build_id"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFF:
                raise UsageError(f"{name} is a byte (0..255), got {value}")
        if not 0 <= self.policy <= 0xFFFF_FFFF:
            raise UsageError(f"policy is a 32-bit unsigned integer, got {self.policy}")

    @classmethod
    def from_wire(cls, wire: Mapping[str, object]) -> LaunchSecurityInfo:
        raw = w.b64(LAUNCH_SECURITY, wire, "sev-measurement")
        if len(raw) != MEASUREMENT_SIZE:
            raise FormatError(
                LAUNCH_SECURITY,
                "sev-measurement",
                f"expected {MEASUREMENT_SIZE} bytes (MEASURE ‖ MNONCE) once base64-decoded, "
                f"got {len(raw)}",
                value=len(raw),
            )
        values = [
            w.integer(LAUNCH_SECURITY, wire, key)
            for key in ("sev-api-major", "sev-api-minor", "sev-build-id", "sev-policy")
        ]
        try:
            return cls(Measurement.from_bytes(raw), *values)
        except UsageError as exc:
            raise FormatError(LAUNCH_SECURITY, "sev-api", str(exc), value=values) from exc

    def to_wire(self) -> dict[str, str | int]:
        return {
            "sev-measurement": w.encode(self.measurement.to_bytes()),
            "sev-api-major": self.api_major,
            "sev-api-minor": self.api_minor,
            "sev-build-id": self.build_id,
            "sev-policy": self.policy,
        }

    @property
    def measurement_b64(self) -> str:
        """``sev-measurement`` as QEMU and libvirt print it."""
        return w.encode(self.measurement.to_bytes())


@dataclass(frozen=True)
class SessionOffer:
    """Step 5's answer: the launch's id at the owner, and what goes into ``<launchSecurity>``
    (GODH certificate and session blob) with the policy the session was made for."""

    launch_id: str
    dh_cert: bytes = field(repr=False)
    session: bytes = field(repr=False)
    policy: int

    @property
    def dh_cert_b64(self) -> str:
        return w.encode(self.dh_cert)

    @property
    def session_b64(self) -> str:
        return w.encode(self.session)


@dataclass(frozen=True)
class SecretRelease:
    """Step 11's answer: what virDomainSetLaunchSecurityState takes (``sev-secret-header`` and
    ``sev-secret``); both empty when the workload has no secret to release."""

    header: bytes = field(repr=False)
    secret: bytes = field(repr=False)

    @classmethod
    def from_wire(cls, wire: Mapping[str, object]) -> SecretRelease:
        header = w.optional_b64("secret release", wire, "sev-secret-header")
        secret = w.optional_b64("secret release", wire, "sev-secret")
        return cls(header or b"", secret or b"")

    def to_wire(self) -> dict[str, str]:
        return {"sev-secret-header": w.encode(self.header), "sev-secret": w.encode(self.secret)}

    @property
    def empty(self) -> bool:
        return not self.header and not self.secret


@dataclass(frozen=True)
class DomainInfo:
    """virDomainGetInfo as the host's API gives it; ``launch`` counts the domain's starts."""

    uuid: str
    name: str
    state: str
    reason: str
    launch: int

    @classmethod
    def from_wire(cls, wire: Mapping[str, object]) -> DomainInfo:
        return cls(
            uuid=w.text("domain", wire, "uuid"),
            name=w.text("domain", wire, "name"),
            state=w.text("domain", wire, "state"),
            reason=w.text("domain", wire, "reason"),
            launch=w.integer("domain", wire, "launch"),
        )

    def to_wire(self) -> dict[str, str | int]:
        return {
            "uuid": self.uuid,
            "name": self.name,
            "state": self.state,
            "reason": self.reason,
            "launch": self.launch,
        }

    @property
    def active(self) -> bool:
        """Running or paused: a hypervisor process exists."""
        return self.state in ("running", "paused")


@dataclass(frozen=True)
class StepReport:
    """One step as the party that did it recorded it (the host's timeline, a ``launch-step``
    event): when it began, how long it took, how it ended and why."""

    launch: int
    step: Step
    outcome: str
    started: float
    duration: float | None = None
    detail: str = ""

    @classmethod
    def from_wire(cls, wire: Mapping[str, object]) -> StepReport:
        return cls(
            launch=w.integer("launch step", wire, "launch"),
            step=Step.of(wire.get("step")),
            outcome=w.text("launch step", wire, "outcome"),
            started=w.optional_number("launch step", wire, "started") or 0.0,
            duration=w.optional_number("launch step", wire, "duration"),
            detail=str(wire.get("detail") or ""),
        )

    def to_wire(self) -> dict[str, object]:
        return {
            "launch": self.launch,
            "step": int(self.step),
            "name": self.step.title,
            "party": self.step.party,
            "started": self.started,
            "duration": self.duration,
            "outcome": self.outcome,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class HostEvent:
    """One event of the host's stream (``/v1/events``): ``kind`` is ``lifecycle``,
    ``launch-step``, ``measurement-available``, ``hypervisor`` or ``subscribed``; ``fields``
    the rest of the object as sent."""

    kind: str
    domain: str | None = None
    fields: Mapping[str, object] = field(default_factory=dict)

    @classmethod
    def from_wire(cls, wire: Mapping[str, object]) -> HostEvent:
        domain = wire.get("domain")
        rest = {k: v for k, v in wire.items() if k not in ("event", "domain")}
        return cls(
            w.text("event", wire, "event"), domain if isinstance(domain, str) else None, rest
        )

    def to_wire(self) -> dict[str, object]:
        return {"event": self.kind, "domain": self.domain, **self.fields}

    def step(self) -> StepReport | None:
        """The step a ``launch-step`` event reports (None for other kinds)."""
        if self.kind != "launch-step":
            return None
        return StepReport.from_wire({"started": self.fields.get("timestamp"), **self.fields})


@dataclass(frozen=True)
class SecretInfo:
    """virConnectListAllSecrets as the host gives it: never the value, only whether one is set."""

    uuid: str
    xml: str
    has_value: bool

    @classmethod
    def from_wire(cls, wire: Mapping[str, object]) -> SecretInfo:
        return cls(
            w.text("secret", wire, "uuid"),
            w.text("secret", wire, "xml"),
            bool(wire.get("has-value")),
        )

    def to_wire(self) -> dict[str, object]:
        return {"uuid": self.uuid, "xml": self.xml, "has-value": self.has_value}


@dataclass(frozen=True)
class LaunchConfiguration:
    """What the VM tool says of the domain it launched, for step 11's words only: a direct
    kernel boot whose kernel, initrd and command line are not in the measurement
    (``kernelHashes`` not ``yes``) cannot be measured as an owner registers a direct boot."""

    direct_boot: bool
    kernel_hashes: bool

    @classmethod
    def from_wire(cls, wire: Mapping[str, object]) -> LaunchConfiguration:
        values = [wire.get("direct-boot"), wire.get("kernel-hashes")]
        if not all(isinstance(v, bool) for v in values):
            raise FormatError(
                "launch configuration", "kernel-hashes", "expected booleans", value=values
            )
        return cls(bool(values[0]), bool(values[1]))

    def to_wire(self) -> dict[str, bool]:
        return {"direct-boot": self.direct_boot, "kernel-hashes": self.kernel_hashes}

    def unmeasurable(self) -> str | None:
        """Why this configuration leaves the direct boot out of the measurement, or None."""
        if self.direct_boot and not self.kernel_hashes:
            return (
                "the domain boots a kernel directly without kernelHashes='yes', so QEMU "
                "measures the firmware alone and not the kernel, initrd and command line"
            )
        return None

    def fix(self) -> str:
        return (
            "Add kernelHashes='yes' to <launchSecurity type='sev'> and boot it with an AmdSev "
            "firmware (OVMF built from AmdSevX64.dsc, which has the hashes table), or register "
            "the firmware-only digest if the kernel is meant to be unmeasured. The guest itself "
            "is not shown to be compromised."
        )
