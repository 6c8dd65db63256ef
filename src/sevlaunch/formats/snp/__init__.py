"""SEV-SNP byte layouts (sev-snp.md), beside SEV's in :mod:`sevlaunch.formats`.

Same contract as the SEV formats: bytes in, frozen dataclasses out and back exactly, and only
:class:`~sevlaunch.errors.FormatError` on hostile input. Names load lazily (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sevlaunch._lazy import exports

_EXPORTS = {
    "Generation": "tcb",
    "TcbLayout": "tcb",
    "TcbVersion": "tcb",
    "KeyInfo": "policy",
    "PlatformInfo": "policy",
    "PlatformInfoFlags": "policy",
    "SigningKey": "policy",
    "SnpPolicy": "policy",
    "SnpPolicyFlags": "policy",
    "EcdsaPublicKey": "ecdsa",
    "EcdsaSignature": "ecdsa",
    "AttestationReport": "report",
    "IdAuth": "idblock",
    "IdBlock": "idblock",
    "GuestField": "guest_msg",
    "KeyRequest": "guest_msg",
    "KeyResponse": "guest_msg",
    "MessageHeader": "guest_msg",
    "MessageType": "guest_msg",
    "ReportRequest": "guest_msg",
    "ReportResponse": "guest_msg",
    "SecretsPage": "secrets",
    "CertTable": "certtable",
    "CertTableEntry": "certtable",
    "PageInfo": "pageinfo",
    "PageType": "pageinfo",
    "MetadataSection": "metadata",
    "SectionType": "metadata",
    "SevMetadata": "metadata",
}

__all__ = [  # noqa: RUF022 - the same order as _EXPORTS
    "Generation",
    "TcbLayout",
    "TcbVersion",
    "KeyInfo",
    "PlatformInfo",
    "PlatformInfoFlags",
    "SigningKey",
    "SnpPolicy",
    "SnpPolicyFlags",
    "EcdsaPublicKey",
    "EcdsaSignature",
    "AttestationReport",
    "IdAuth",
    "IdBlock",
    "GuestField",
    "KeyRequest",
    "KeyResponse",
    "MessageHeader",
    "MessageType",
    "ReportRequest",
    "ReportResponse",
    "SecretsPage",
    "CertTable",
    "CertTableEntry",
    "PageInfo",
    "PageType",
    "MetadataSection",
    "SectionType",
    "SevMetadata",
]


__getattr__ = exports(__name__, _EXPORTS, globals())


if TYPE_CHECKING:
    from sevlaunch.formats.snp.certtable import CertTable as CertTable
    from sevlaunch.formats.snp.certtable import CertTableEntry as CertTableEntry
    from sevlaunch.formats.snp.ecdsa import EcdsaPublicKey as EcdsaPublicKey
    from sevlaunch.formats.snp.ecdsa import EcdsaSignature as EcdsaSignature
    from sevlaunch.formats.snp.guest_msg import GuestField as GuestField
    from sevlaunch.formats.snp.guest_msg import KeyRequest as KeyRequest
    from sevlaunch.formats.snp.guest_msg import KeyResponse as KeyResponse
    from sevlaunch.formats.snp.guest_msg import MessageHeader as MessageHeader
    from sevlaunch.formats.snp.guest_msg import MessageType as MessageType
    from sevlaunch.formats.snp.guest_msg import ReportRequest as ReportRequest
    from sevlaunch.formats.snp.guest_msg import ReportResponse as ReportResponse
    from sevlaunch.formats.snp.idblock import IdAuth as IdAuth
    from sevlaunch.formats.snp.idblock import IdBlock as IdBlock
    from sevlaunch.formats.snp.metadata import MetadataSection as MetadataSection
    from sevlaunch.formats.snp.metadata import SectionType as SectionType
    from sevlaunch.formats.snp.metadata import SevMetadata as SevMetadata
    from sevlaunch.formats.snp.pageinfo import PageInfo as PageInfo
    from sevlaunch.formats.snp.pageinfo import PageType as PageType
    from sevlaunch.formats.snp.policy import KeyInfo as KeyInfo
    from sevlaunch.formats.snp.policy import PlatformInfo as PlatformInfo
    from sevlaunch.formats.snp.policy import PlatformInfoFlags as PlatformInfoFlags
    from sevlaunch.formats.snp.policy import SigningKey as SigningKey
    from sevlaunch.formats.snp.policy import SnpPolicy as SnpPolicy
    from sevlaunch.formats.snp.policy import SnpPolicyFlags as SnpPolicyFlags
    from sevlaunch.formats.snp.report import AttestationReport as AttestationReport
    from sevlaunch.formats.snp.secrets import SecretsPage as SecretsPage
    from sevlaunch.formats.snp.tcb import Generation as Generation
    from sevlaunch.formats.snp.tcb import TcbLayout as TcbLayout
    from sevlaunch.formats.snp.tcb import TcbVersion as TcbVersion
