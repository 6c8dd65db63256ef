"""virSecret-like secrets: libvirt's secret XML and a store whose values never leave by a read API.

The 2017 SEV design let the guest owner hand over the GODH certificate and session blob once,
stored on the host and named by UUID from the domain (see :mod:`sevlaunch.host.domxml`). The
store here (:class:`SecretStore`) is pure and in memory; :class:`SecretBackend` is the
interface a persistent one (SQLite, mode 0600) implements. A secret's value is the raw blob (as ``virsh
secret-set-value`` decodes its base64 argument); :meth:`SecretBackend.get_value` exists only
for the QEMU driver, which resolves references while building a launch, and is never exposed
through the host API.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from lxml import etree  # type: ignore[import-untyped]

from sevlaunch.errors import SecretError
from sevlaunch.host.domxml import parse_document

MAX_VALUE = 64 * 1024
# usage type -> the child element naming what the secret is for (virSecretUsageType).
USAGE_ELEMENTS = {
    "volume": "volume",
    "ceph": "name",
    "iscsi": "target",
    "tls": "name",
    "vtpm": "name",
}
_USAGE_LABELS = {"volume": "volume", "ceph": "Ceph", "iscsi": "iSCSI", "tls": "TLS", "vtpm": "vTPM"}


def _xml_error(detail: str) -> SecretError:
    return SecretError("XML error", detail)


def _not_found(secret_uuid: uuid.UUID) -> SecretError:
    return SecretError(
        "Secret not found",
        f"no secret with matching uuid '{secret_uuid}'; list them with 'secret-list'",
        field="uuid",
        value=str(secret_uuid),
    )


@dataclass(frozen=True, kw_only=True)
class SecretUsage:
    """``<usage type=...>``: what the secret is for; ``target`` is its usage ID."""

    type: str
    target: str

    def __post_init__(self) -> None:
        if self.type not in USAGE_ELEMENTS:
            raise SecretError(
                "XML error",
                f"unknown secret usage type {self.type}: expected one of "
                f"{', '.join(USAGE_ELEMENTS)}",
                field="usage/@type",
                value=self.type,
            )
        if not self.target:
            label = _USAGE_LABELS[self.type]
            raise _xml_error(f"{label} usage specified, but {USAGE_ELEMENTS[self.type]} is missing")


@dataclass(frozen=True, kw_only=True)
class Secret:
    """A secret's definition (never its value)."""

    uuid: uuid.UUID | None = None
    ephemeral: bool = False
    private: bool = False
    description: str | None = None
    usage: SecretUsage | None = None

    @property
    def usage_id(self) -> str | None:
        return None if self.usage is None else self.usage.target

    @classmethod
    def from_xml(cls, data: str | bytes) -> Secret:
        """Parse libvirt's secret XML (``<secret ephemeral='no' private='yes'>...``)."""
        root = parse_document(data, "secret", error=_xml_error)
        uuid_text = root.findtext("uuid")
        return cls(
            uuid=None if uuid_text is None else _parse_uuid(uuid_text),
            ephemeral=_yesno(root, "ephemeral"),
            private=_yesno(root, "private"),
            description=root.findtext("description"),
            usage=_parse_usage(root.find("usage")),
        )

    def to_xml(self) -> str:
        root = etree.Element(
            "secret",
            ephemeral="yes" if self.ephemeral else "no",
            private="yes" if self.private else "no",
        )
        if self.uuid is not None:
            etree.SubElement(root, "uuid").text = str(self.uuid)
        if self.description is not None:
            etree.SubElement(root, "description").text = self.description
        if self.usage is not None:
            usage = etree.SubElement(root, "usage", type=self.usage.type)
            etree.SubElement(usage, USAGE_ELEMENTS[self.usage.type]).text = self.usage.target
        etree.indent(root, space="  ")
        return str(etree.tostring(root, encoding="unicode")) + "\n"


def _yesno(root: etree._Element, name: str) -> bool:
    value = root.get(name)
    if value not in (None, "yes", "no"):
        raise SecretError(
            "XML error",
            f"Invalid value for attribute '{name}' in element 'secret': '{value}'. "
            "Expected one of: yes, no",
            field=f"secret/@{name}",
            value=value,
        )
    return bool(value == "yes")


def _parse_uuid(text: str) -> uuid.UUID:
    compact = text.strip().replace("-", "")
    if len(compact) != 32 or not all(c in "0123456789abcdefABCDEF" for c in compact):
        raise SecretError(
            "internal error",
            f"malformed uuid element: expected 32 hex digits, got '{text}'",
            field="uuid",
            value=text,
        )
    return uuid.UUID(compact)


def _parse_usage(el: etree._Element | None) -> SecretUsage | None:
    if el is None:
        return None
    usage_type = el.get("type")
    if usage_type is None:
        raise _xml_error("unknown secret usage type (null): add type='volume' or similar")
    if usage_type not in USAGE_ELEMENTS:
        return SecretUsage(type=usage_type, target="-")  # raises the unknown-type error
    return SecretUsage(type=usage_type, target=el.findtext(USAGE_ELEMENTS[usage_type]) or "")


class SecretBackend(Protocol):
    """What the host manager needs from a secret store (virConnect*Secret* calls)."""

    def define(self, secret: Secret) -> Secret:
        """Add or redefine a secret; assign a UUID when it has none; keep an existing value."""
        ...

    def lookup(self, secret_uuid: uuid.UUID) -> Secret: ...

    def list(self) -> tuple[Secret, ...]: ...

    def has_value(self, secret_uuid: uuid.UUID) -> bool: ...

    def set_value(self, secret_uuid: uuid.UUID, value: bytes) -> None: ...

    def get_value(self, secret_uuid: uuid.UUID) -> bytes:
        """Internal: for resolving a domain's references at launch; never served by the API."""
        ...

    def undefine(self, secret_uuid: uuid.UUID) -> None: ...


SecretResolver = Callable[[uuid.UUID], bytes]


@dataclass
class SecretStore:
    """The in-memory :class:`SecretBackend`, with libvirt's define rules; ``new_uuid`` makes UUIDs."""

    new_uuid: Callable[[], uuid.UUID] = uuid.uuid4
    _defs: dict[uuid.UUID, Secret] = field(default_factory=dict, repr=False)
    _values: dict[uuid.UUID, bytes] = field(default_factory=dict, repr=False)

    def define(self, secret: Secret) -> Secret:
        if secret.uuid is None:
            secret = Secret(
                uuid=self.new_uuid(),
                ephemeral=secret.ephemeral,
                private=secret.private,
                description=secret.description,
                usage=secret.usage,
            )
        assert secret.uuid is not None
        self._check_redefine(secret)
        self._check_usage_unique(secret)
        self._defs[secret.uuid] = secret
        return secret

    def _check_redefine(self, secret: Secret) -> None:
        old = self._defs.get(secret.uuid) if secret.uuid else None
        if old is None:
            return
        if old.usage != secret.usage:
            raise SecretError(
                "internal error",
                f"a secret with UUID {secret.uuid} is already defined for use with "
                f"{old.usage_id or 'no usage'}; undefine it first to change its usage",
                field="usage",
                value=secret.usage_id,
            )
        if old.private and not secret.private:
            raise SecretError(
                "Invalid secret",
                "cannot change private flag on existing secret; undefine it first",
                field="private",
                value=False,
            )

    def _check_usage_unique(self, secret: Secret) -> None:
        if secret.usage is None:
            return
        for other in self._defs.values():
            if other.uuid != secret.uuid and other.usage == secret.usage:
                raise SecretError(
                    "internal error",
                    f"a secret with UUID {other.uuid} already defined for use with "
                    f"{secret.usage_id}",
                    field="usage",
                    value=secret.usage_id,
                )

    def lookup(self, secret_uuid: uuid.UUID) -> Secret:
        try:
            return self._defs[secret_uuid]
        except KeyError:
            raise _not_found(secret_uuid) from None

    def list(self) -> tuple[Secret, ...]:
        return tuple(self._defs[key] for key in sorted(self._defs))

    def has_value(self, secret_uuid: uuid.UUID) -> bool:
        self.lookup(secret_uuid)
        return secret_uuid in self._values

    def set_value(self, secret_uuid: uuid.UUID, value: bytes) -> None:
        self.lookup(secret_uuid)
        if len(value) > MAX_VALUE:
            raise SecretError(
                "invalid argument",
                f"secret value of {len(value)} bytes exceeds the {MAX_VALUE} byte limit",
                field="value",
                value=len(value),
            )
        self._values[secret_uuid] = bytes(value)

    def get_value(self, secret_uuid: uuid.UUID) -> bytes:
        self.lookup(secret_uuid)
        try:
            return self._values[secret_uuid]
        except KeyError:
            raise SecretError(
                "Secret not found",
                f"secret '{secret_uuid}' does not have a value; set one with 'secret-set-value'",
                field="value",
                value=str(secret_uuid),
            ) from None

    def undefine(self, secret_uuid: uuid.UUID) -> None:
        self.lookup(secret_uuid)
        del self._defs[secret_uuid]
        self._values.pop(secret_uuid, None)
