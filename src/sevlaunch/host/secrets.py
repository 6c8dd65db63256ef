"""libvirt's secret XML (``<secret ephemeral='no' private='yes'>...``) as a frozen dataclass.

The 2017 SEV design let the guest owner hand over the GODH certificate and session blob once,
stored on the host and named by UUID from the domain (see :mod:`sevlaunch.host.domxml`).
:mod:`sevlaunch.host.secretstore` keeps them with libvirt's rules; a secret's value is the raw
blob (as ``virsh secret-set-value`` decodes its base64 argument).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from lxml import etree  # type: ignore[import-untyped]

from sevlaunch.errors import SecretError
from sevlaunch.host.domxml import parse_document

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
