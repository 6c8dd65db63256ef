"""Pure byte layouts of the SEV API: bytes in, frozen dataclasses out, and back, exactly.

Every parser raises :class:`~sevlaunch.errors.FormatError` naming the structure, the field
and its offset; nothing else escapes on hostile input. Names are imported lazily (PEP 562) so
that a command that needs one layout does not pay for all of them at start-up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sevlaunch._lazy import exports

_EXPORTS = {
    "AmdCert": "amdcert",
    "CaChain": "chain",
    "CertExport": "chain",
    "PlatformChain": "chain",
    "KernelHashes": "hashes",
    "Area": "ovmf",
    "FooterEntry": "ovmf",
    "OvmfFooterTable": "ovmf",
    "Policy": "policy",
    "PolicyFlags": "policy",
    "SecretEntry": "secret",
    "SecretHeader": "secret",
    "SecretTable": "secret",
    "resolve_guid": "secret",
    "Measurement": "session",
    "Session": "session",
    "Algorithm": "sevcert",
    "EccCurve": "sevcert",
    "EccPublicKey": "sevcert",
    "RsaPublicKey": "sevcert",
    "SevCert": "sevcert",
    "Signature": "sevcert",
    "Usage": "sevcert",
    "Status": "status",
    "status_name": "status",
}

__all__ = [  # noqa: RUF022 - the same order as _EXPORTS
    "AmdCert",
    "CaChain",
    "CertExport",
    "PlatformChain",
    "KernelHashes",
    "Area",
    "FooterEntry",
    "OvmfFooterTable",
    "Policy",
    "PolicyFlags",
    "SecretEntry",
    "SecretHeader",
    "SecretTable",
    "resolve_guid",
    "Measurement",
    "Session",
    "Algorithm",
    "EccCurve",
    "EccPublicKey",
    "RsaPublicKey",
    "SevCert",
    "Signature",
    "Usage",
    "Status",
    "status_name",
]


__getattr__ = exports(__name__, _EXPORTS, globals())


if TYPE_CHECKING:
    from sevlaunch.formats.amdcert import AmdCert as AmdCert
    from sevlaunch.formats.chain import CaChain as CaChain
    from sevlaunch.formats.chain import CertExport as CertExport
    from sevlaunch.formats.chain import PlatformChain as PlatformChain
    from sevlaunch.formats.hashes import KernelHashes as KernelHashes
    from sevlaunch.formats.ovmf import Area as Area
    from sevlaunch.formats.ovmf import FooterEntry as FooterEntry
    from sevlaunch.formats.ovmf import OvmfFooterTable as OvmfFooterTable
    from sevlaunch.formats.policy import Policy as Policy
    from sevlaunch.formats.policy import PolicyFlags as PolicyFlags
    from sevlaunch.formats.secret import SecretEntry as SecretEntry
    from sevlaunch.formats.secret import SecretHeader as SecretHeader
    from sevlaunch.formats.secret import SecretTable as SecretTable
    from sevlaunch.formats.secret import resolve_guid as resolve_guid
    from sevlaunch.formats.session import Measurement as Measurement
    from sevlaunch.formats.session import Session as Session
    from sevlaunch.formats.sevcert import Algorithm as Algorithm
    from sevlaunch.formats.sevcert import EccCurve as EccCurve
    from sevlaunch.formats.sevcert import EccPublicKey as EccPublicKey
    from sevlaunch.formats.sevcert import RsaPublicKey as RsaPublicKey
    from sevlaunch.formats.sevcert import SevCert as SevCert
    from sevlaunch.formats.sevcert import Signature as Signature
    from sevlaunch.formats.sevcert import Usage as Usage
    from sevlaunch.formats.status import Status as Status
    from sevlaunch.formats.status import status_name as status_name
