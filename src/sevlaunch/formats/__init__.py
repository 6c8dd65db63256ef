"""Pure byte layouts of the SEV API: bytes in, frozen dataclasses out, and back, exactly.

Every parser raises :class:`~sevlaunch.errors.FormatError` naming the structure, the field
and its offset; nothing else escapes on hostile input.
"""

from sevlaunch.formats.amdcert import AmdCert
from sevlaunch.formats.chain import CaChain, CertExport, PlatformChain
from sevlaunch.formats.hashes import KernelHashes
from sevlaunch.formats.ovmf import Area, FooterEntry, OvmfFooterTable
from sevlaunch.formats.policy import Policy, PolicyFlags
from sevlaunch.formats.secret import SecretEntry, SecretHeader, SecretTable, resolve_guid
from sevlaunch.formats.session import Measurement, Session
from sevlaunch.formats.sevcert import (
    Algorithm,
    EccCurve,
    EccPublicKey,
    RsaPublicKey,
    SevCert,
    Signature,
    Usage,
)
from sevlaunch.formats.status import Status, status_name

__all__ = [
    "Algorithm",
    "AmdCert",
    "Area",
    "CaChain",
    "CertExport",
    "EccCurve",
    "EccPublicKey",
    "FooterEntry",
    "KernelHashes",
    "Measurement",
    "OvmfFooterTable",
    "PlatformChain",
    "Policy",
    "PolicyFlags",
    "RsaPublicKey",
    "SecretEntry",
    "SecretHeader",
    "SecretTable",
    "Session",
    "SevCert",
    "Signature",
    "Status",
    "Usage",
    "resolve_guid",
    "status_name",
]
