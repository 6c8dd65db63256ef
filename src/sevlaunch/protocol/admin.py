"""The broker's records as its owner (and a launcher, for its own launches) reads them: trust
roots, workloads, launchers, launches and audit entries, typed once at the client.

Each has ``from_wire`` (the JSON object the broker's API sends, with its camelCase keys; a
malformed one raises :class:`~sevlaunch.errors.FormatError` naming the key; keys it does not
know are ignored, so an older client reads a newer broker) and ``to_wire`` (the same object
back, keys in the API's order: ``--json`` prints it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sevlaunch.errors import FormatError
from sevlaunch.protocol import _wire as w

ROOT = "trust root"
WORKLOAD = "workload"
LAUNCHER = "launcher"
LAUNCH = "launch"
AUDIT = "audit entry"


def _flag(structure: str, wire: Mapping[str, object], key: str) -> bool:
    value = wire.get(key)
    if not isinstance(value, bool):
        raise FormatError(structure, key, "expected true or false", value=value)
    return value


def _items(structure: str, wire: Mapping[str, object], key: str) -> list[object]:
    value = wire.get(key)
    if not isinstance(value, list):
        raise FormatError(structure, key, "expected a list", value=value)
    return value


def _integers(structure: str, wire: Mapping[str, object], key: str) -> tuple[int, ...]:
    items = _items(structure, wire, key)
    return tuple(w.integer(structure, {key: item}, key) for item in items)


def _texts(structure: str, wire: Mapping[str, object], key: str) -> tuple[str, ...]:
    return tuple(w.text(structure, {key: item}, key) for item in _items(structure, wire, key))


def _hexes(structure: str, wire: Mapping[str, object], key: str) -> tuple[bytes, ...]:
    found = []
    for item in _texts(structure, wire, key):
        try:
            found.append(bytes.fromhex(item))
        except ValueError as exc:
            raise FormatError(structure, key, f"not hex: {exc}", value=item[:80]) from exc
    return tuple(found)


def _optional_text(structure: str, wire: Mapping[str, object], key: str) -> str | None:
    return None if wire.get(key) is None else w.text(structure, wire, key)


def _details(structure: str, wire: Mapping[str, object], key: str) -> dict[str, object] | None:
    value = wire.get(key)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise FormatError(structure, key, "expected an object", value=value)
    return dict(value)


@dataclass(frozen=True)
class TrustRoot:
    """An ARK the broker accepts chains to (an AMD one is named by its generation)."""

    name: str
    fingerprint: str
    key_id: str
    amd: bool
    has_ask: bool
    created_at: float

    @classmethod
    def from_wire(cls, wire: Mapping[str, object]) -> TrustRoot:
        return cls(
            name=w.text(ROOT, wire, "name"),
            fingerprint=w.text(ROOT, wire, "fingerprint"),
            key_id=w.text(ROOT, wire, "keyId"),
            amd=_flag(ROOT, wire, "amd"),
            has_ask=_flag(ROOT, wire, "hasAsk"),
            created_at=w.number(ROOT, wire, "createdAt"),
        )

    def to_wire(self) -> dict[str, object]:
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "keyId": self.key_id,
            "amd": self.amd,
            "hasAsk": self.has_ask,
            "createdAt": self.created_at,
        }


@dataclass(frozen=True)
class Workload:
    """What a guest must measure as, and the GUIDs of the secrets it gets (never values)."""

    name: str
    policies: tuple[int, ...]
    digests: tuple[bytes, ...]
    min_api: tuple[int, int]
    min_build: int
    secrets: tuple[str, ...]
    created_at: float

    @classmethod
    def from_wire(cls, wire: Mapping[str, object]) -> Workload:
        return cls(
            name=w.text(WORKLOAD, wire, "name"),
            policies=_integers(WORKLOAD, wire, "policies"),
            digests=_hexes(WORKLOAD, wire, "digests"),
            min_api=(w.integer(WORKLOAD, wire, "minApiMajor"), w.integer(WORKLOAD, wire, "minApiMinor")),
            min_build=w.integer(WORKLOAD, wire, "minBuild"),
            secrets=_texts(WORKLOAD, wire, "secrets"),
            created_at=w.number(WORKLOAD, wire, "createdAt"),
        )  # fmt: skip

    def to_wire(self) -> dict[str, object]:
        return {
            "name": self.name,
            "policies": list(self.policies),
            "digests": [d.hex() for d in self.digests],
            "minApiMajor": self.min_api[0],
            "minApiMinor": self.min_api[1],
            "minBuild": self.min_build,
            "secrets": list(self.secrets),
            "createdAt": self.created_at,
        }


@dataclass(frozen=True)
class Launcher:
    """A named launcher and its limits; ``token`` only in the answer that made it."""

    name: str
    created_at: float
    revoked_at: float | None
    max_open: int
    rate: float  # new launches a minute
    burst: int
    open: int  # launches awaiting a measurement now
    defaults: tuple[str, ...]  # limits that are the broker's defaults (max_open, rate, burst)
    token: str | None = field(default=None, repr=False)

    @classmethod
    def from_wire(cls, wire: Mapping[str, object]) -> Launcher:
        return cls(
            name=w.text(LAUNCHER, wire, "name"),
            created_at=w.number(LAUNCHER, wire, "createdAt"),
            revoked_at=w.optional_number(LAUNCHER, wire, "revokedAt"),
            max_open=w.integer(LAUNCHER, wire, "maxOpen"),
            rate=w.number(LAUNCHER, wire, "rate"),
            burst=w.integer(LAUNCHER, wire, "burst"),
            open=w.integer(LAUNCHER, wire, "open"),
            defaults=_texts(LAUNCHER, wire, "defaults"),
            token=_optional_text(LAUNCHER, wire, "token"),
        )

    def to_wire(self) -> dict[str, object]:
        wire: dict[str, object] = {
            "name": self.name,
            "createdAt": self.created_at,
            "revokedAt": self.revoked_at,
            "maxOpen": self.max_open,
            "rate": self.rate,
            "burst": self.burst,
            "open": self.open,
            "defaults": list(self.defaults),
        }
        if self.token is not None:
            wire["token"] = self.token
        return wire


@dataclass(frozen=True)
class LaunchRecord:
    """One launch as the broker records it (steps 4-5 to 11-12, or its expiry)."""

    id: str
    workload: str
    state: str  # awaiting-measurement, released, refused or expired
    reason: str | None
    policy: int
    created_at: float
    expires_at: float
    finished_at: float | None
    launcher: str

    @classmethod
    def from_wire(cls, wire: Mapping[str, object]) -> LaunchRecord:
        return cls(
            id=w.text(LAUNCH, wire, "id"),
            workload=w.text(LAUNCH, wire, "workload"),
            state=w.text(LAUNCH, wire, "state"),
            reason=_optional_text(LAUNCH, wire, "reason"),
            policy=w.integer(LAUNCH, wire, "policy"),
            created_at=w.number(LAUNCH, wire, "createdAt"),
            expires_at=w.number(LAUNCH, wire, "expiresAt"),
            finished_at=w.optional_number(LAUNCH, wire, "finishedAt"),
            launcher=w.text(LAUNCH, wire, "launcher"),
        )

    def to_wire(self) -> dict[str, object]:
        return {
            "id": self.id,
            "workload": self.workload,
            "state": self.state,
            "reason": self.reason,
            "policy": self.policy,
            "createdAt": self.created_at,
            "expiresAt": self.expires_at,
            "finishedAt": self.finished_at,
            "launcher": self.launcher,
        }


@dataclass(frozen=True)
class AuditEntry:
    """One decision the broker made; ``detail`` is the action's own JSON object."""

    id: int
    at: float
    instance: str
    actor: str
    action: str
    outcome: str
    reason: str | None
    workload: str | None
    launch: str | None
    detail: dict[str, object] | None
    launcher: str | None

    @classmethod
    def from_wire(cls, wire: Mapping[str, object]) -> AuditEntry:
        return cls(
            id=w.integer(AUDIT, wire, "id"),
            at=w.number(AUDIT, wire, "at"),
            instance=w.text(AUDIT, wire, "instance"),
            actor=w.text(AUDIT, wire, "actor"),
            action=w.text(AUDIT, wire, "action"),
            outcome=w.text(AUDIT, wire, "outcome"),
            reason=_optional_text(AUDIT, wire, "reason"),
            workload=_optional_text(AUDIT, wire, "workload"),
            launch=_optional_text(AUDIT, wire, "launch"),
            detail=_details(AUDIT, wire, "detail"),
            launcher=_optional_text(AUDIT, wire, "launcher"),
        )

    def to_wire(self) -> dict[str, object]:
        return {
            "id": self.id,
            "at": self.at,
            "instance": self.instance,
            "actor": self.actor,
            "action": self.action,
            "outcome": self.outcome,
            "reason": self.reason,
            "workload": self.workload,
            "launch": self.launch,
            "detail": self.detail,
            "launcher": self.launcher,
        }
