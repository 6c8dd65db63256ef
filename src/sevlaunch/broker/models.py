"""The HTTP API's JSON shapes. Field names follow libvirt (``cert-chain``, ``sev-measurement``,
``sev-secret-header``) and QEMU/libvirt XML (``dhCert``, ``session``); bytes are base64."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
LAUNCH_ID_PATTERN = r"^[0-9a-f]{32}$"
U32 = 0xFFFF_FFFF
B64_CERT = 8 * 1024  # one SEV certificate is 2084 bytes, 2780 in base64
B64_CHAIN = 32 * 1024
B64_SECRET = 24 * 1024


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class TrustRootIn(_Model):
    certificate: str = Field(
        max_length=B64_CHAIN, description="base64 ARK, or AMD CA file ASK ‖ ARK"
    )
    name: str | None = Field(default=None, pattern=NAME_PATTERN)


class TrustRootOut(_Model):
    name: str
    fingerprint: str
    key_id: str = Field(serialization_alias="keyId")
    amd: bool
    has_ask: bool = Field(serialization_alias="hasAsk")
    created_at: float = Field(serialization_alias="createdAt")


class WorkloadIn(_Model):
    name: str = Field(pattern=NAME_PATTERN)
    policies: list[int] = Field(min_length=1, max_length=64)
    digests: list[str] = Field(
        min_length=1, max_length=256, description="SHA-256 launch digests, hex"
    )
    min_api_major: int = Field(default=0, ge=0, le=255, alias="minApiMajor")
    min_api_minor: int = Field(default=0, ge=0, le=255, alias="minApiMinor")
    min_build: int = Field(default=0, ge=0, le=255, alias="minBuild")
    secrets: dict[str, str] = Field(
        default_factory=dict, max_length=64, description="GUID or alias → base64 value"
    )


class WorkloadOut(_Model):
    name: str
    policies: list[int]
    digests: list[str]
    min_api_major: int = Field(serialization_alias="minApiMajor")
    min_api_minor: int = Field(serialization_alias="minApiMinor")
    min_build: int = Field(serialization_alias="minBuild")
    secrets: list[str] = Field(description="GUIDs of the sealed secrets; values are never returned")
    created_at: float = Field(serialization_alias="createdAt")


class SecretIn(_Model):
    value: str = Field(max_length=B64_SECRET, description="base64 secret value")


class LaunchIn(_Model):
    workload: str = Field(pattern=NAME_PATTERN)
    pdh: str = Field(max_length=B64_CERT, description="node SEV info 'pdh' (base64)")
    cert_chain: str = Field(
        alias="cert-chain", max_length=B64_CHAIN, description="node SEV info 'cert-chain' (base64)"
    )
    cek: str | None = Field(default=None, max_length=B64_CERT, description="AMD-signed CEK")
    policy: int | None = Field(default=None, ge=0, le=U32)
    domain: str | None = Field(
        default=None,
        max_length=200,
        pattern=r"^[^\x00-\x1f/]+$",
        description="the guest's domain name on its host manager (the VM tool's)",
    )
    host: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s\"'<>\\]{1,200}$",
        description="the host manager's page (http or https), where the domain is shown",
    )


class LaunchOut(_Model):
    id: str
    dh_cert: str = Field(serialization_alias="dhCert")
    session: str
    policy: int
    expires_at: float = Field(serialization_alias="expiresAt")


class LaunchStateOut(_Model):
    id: str
    workload: str
    state: str = Field(description="awaiting-measurement, released, refused or expired")
    reason: str | None
    policy: int
    created_at: float = Field(serialization_alias="createdAt")
    expires_at: float = Field(serialization_alias="expiresAt")
    finished_at: float | None = Field(serialization_alias="finishedAt")
    launcher: str = Field(description="the launcher that started it")


class LauncherIn(_Model):
    name: str = Field(pattern=NAME_PATTERN)
    max_open: int | None = Field(
        default=None, ge=1, le=1_000_000, alias="maxOpen", description="open launches at most"
    )
    rate: float | None = Field(
        default=None, gt=0, le=1_000_000, description="new launches a minute"
    )
    burst: int | None = Field(default=None, ge=1, le=1_000_000, description="bucket size")


class LauncherOut(_Model):
    name: str
    created_at: float = Field(serialization_alias="createdAt")
    revoked_at: float | None = Field(serialization_alias="revokedAt")
    max_open: int = Field(serialization_alias="maxOpen")
    rate: float = Field(description="new launches a minute")
    burst: int
    open: int = Field(description="launches awaiting a measurement now")
    defaults: list[str] = Field(description="limits that are the broker's defaults")


class NewLauncherOut(LauncherOut):
    token: str = Field(description="the launcher's bearer token: shown this once only")


class ConfigurationIn(_Model):
    """What the VM tool says of the domain; it only chooses the words of a refusal."""

    direct_boot: bool = Field(alias="direct-boot")
    kernel_hashes: bool = Field(alias="kernel-hashes")


class MeasurementIn(_Model):
    measurement: str = Field(alias="sev-measurement", max_length=128)
    api_major: int = Field(alias="sev-api-major", ge=0, le=255)
    api_minor: int = Field(alias="sev-api-minor", ge=0, le=255)
    build_id: int = Field(alias="sev-build-id", ge=0, le=255)
    policy: int = Field(alias="sev-policy", ge=0, le=U32)
    configuration: ConfigurationIn | None = None


class StepsIn(_Model):
    """A launch's steps as its VM tool recorded them (the protocol's StepReport on the wire)."""

    steps: list[dict[str, object]] = Field(max_length=13)
    host_launch: int | None = Field(default=None, alias="host-launch", ge=0)


class StepsOut(_Model):
    recorded: int


class SecretOut(_Model):
    id: str
    secret_header: str | None = Field(serialization_alias="sev-secret-header")
    secret: str | None = Field(serialization_alias="sev-secret")


class AuditOut(_Model):
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


class ErrorOut(_Model):
    error: str = Field(description="stable reason code")
    detail: str
    diagnosis: str | None = None
