"""The SNP routes' JSON shapes. The guest's exchange is :mod:`sevlaunch.protocol.snp`'s wire
form (``tee-pubkey``, ``cert-table``); the owner's workloads name the verifier's expectations
in camelCase; digests are hex as ``sevlaunch owner snp digest`` prints them, host data base64
as libvirt's ``<hostData>`` and QEMU's ``host-data`` take it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from sevlaunch.broker.models import B64_CHAIN, NAME_PATTERN

U64 = (1 << 64) - 1
HEX48 = r"^[0-9a-fA-F]{96}$"
B64_REPORT = 2048  # a report is 1184 bytes, 1580 in base64
B64_KEY = 1024  # a P-384 SubjectPublicKeyInfo is 120 bytes
B64_TABLE = 48 * 1024  # an extended report's certificates: VCEK, ASK, ARK (and a CRL)


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class SnpRootIn(_Model):
    certificate: str = Field(
        max_length=B64_CHAIN, description="base64 ARK, or a KDS cert_chain (ASK ‖ ARK), PEM/DER"
    )
    name: str | None = Field(default=None, pattern=NAME_PATTERN)


class SnpRootOut(_Model):
    name: str
    fingerprint: str = Field(description="SHA-256 of the ARK's DER, as AMD's are pinned")
    product: str
    created_at: float = Field(serialization_alias="createdAt")


class TcbIn(_Model):
    bootloader: int = Field(default=0, ge=0, le=255)
    tee: int = Field(default=0, ge=0, le=255)
    snp: int = Field(default=0, ge=0, le=255)
    microcode: int = Field(default=0, ge=0, le=255)
    fmc: int = Field(default=0, ge=0, le=255)


class FirmwareIn(_Model):
    major: int = Field(default=0, ge=0, le=255)
    minor: int = Field(default=0, ge=0, le=255)
    build: int = Field(default=0, ge=0, le=255)


class SnpWorkloadIn(_Model):
    name: str = Field(pattern=NAME_PATTERN)
    digests: list[str] = Field(
        default_factory=list,
        max_length=256,
        description="expected launch digests (SHA-384, hex); or trust an ID key",
    )
    policies: list[int] = Field(
        default_factory=list,
        max_length=64,
        description="exact 64-bit guest policies allowed (none: any the checks accept)",
    )
    min_abi_major: int = Field(default=0, ge=0, le=255, alias="minAbiMajor")
    min_abi_minor: int = Field(default=0, ge=0, le=255, alias="minAbiMinor")
    min_tcb: TcbIn = Field(default_factory=TcbIn, alias="minTcb", description="of REPORTED_TCB")
    min_firmware: FirmwareIn = Field(default_factory=FirmwareIn, alias="minFirmware")
    id_key_digests: list[str] = Field(default_factory=list, max_length=64, alias="idKeyDigests")
    author_key_digests: list[str] = Field(
        default_factory=list, max_length=64, alias="authorKeyDigests"
    )
    require_id_block: bool = Field(default=False, alias="requireIdBlock")
    host_data: str | None = Field(default=None, max_length=64, alias="hostData")
    vmpl: int | None = Field(default=0, ge=0, le=3, description="null: any VMPL")
    allow_debug: bool = Field(default=False, alias="allowDebug")
    allow_migrate_ma: bool = Field(default=False, alias="allowMigrateMa")
    allow_provisional_firmware: bool = Field(default=False, alias="allowProvisionalFirmware")
    require_crl: bool = Field(default=True, alias="requireCrl")
    vlek_csp_ids: list[str] = Field(default_factory=list, max_length=16, alias="vlekCspIds")
    secrets: dict[str, str] = Field(
        default_factory=dict, max_length=64, description="GUID or alias → base64 value"
    )


class SnpWorkloadOut(_Model):
    name: str
    expectations: dict[str, object] = Field(
        description="what its guests' reports must show (the verifier's expectations)"
    )
    secrets: list[str] = Field(description="GUIDs of the sealed secrets; values are never returned")
    created_at: float = Field(serialization_alias="createdAt")


class ChallengeIn(_Model):
    workload: str = Field(pattern=NAME_PATTERN)


class ChallengeOut(_Model):
    workload: str
    nonce: str = Field(description="base64; single use, bind it in REPORT_DATA")
    expires: float = Field(description="UNIX time after which the nonce is refused")


class EvidenceIn(_Model):
    workload: str = Field(pattern=NAME_PATTERN)
    nonce: str = Field(max_length=128)
    report: str = Field(max_length=B64_REPORT, description="the attestation report, base64")
    tee_pubkey: str = Field(
        alias="tee-pubkey", max_length=B64_KEY, description="DER SubjectPublicKeyInfo, base64"
    )
    cert_table: str | None = Field(
        default=None, alias="cert-table", max_length=B64_TABLE, description="extended report's"
    )


class ReleaseOut(_Model):
    ephemeral: str = Field(description="the broker's one-time P-384 key, DER, base64")
    ciphertext: str = Field(description="AES-256-GCM of the OVMF secret table, base64")
    attestation: str = Field(description="this decision's id in the audit log")
