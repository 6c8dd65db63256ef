"""``<launchSecurity>``: SEV's and SEV-SNP's launch parameters (libvirt 10.5's elements and
attributes) and the sevlaunch extension naming stored secrets for SEV's blobs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sevlaunch.formats.policy import Policy
from sevlaunch.host.domxml.checks import (
    LAUNCH_SECURITY_TYPES,
    U32,
    U64,
    check_choice,
    check_text,
    unsupported,
    xml_error,
)


@dataclass(frozen=True, kw_only=True)
class LaunchSecurity:
    """``<launchSecurity>``: SEV launch parameters (SEV-ES is SEV with policy bit 2 set).

    ``dh_cert``/``session`` are the guest owner's base64 blobs, kept as text exactly as given;
    ``dh_cert_secret``/``session_secret`` name stored secrets instead (sevlaunch extension).
    """

    type: str = "sev"
    policy: int | None = None
    kernel_hashes: bool | None = None
    cbitpos: int | None = None
    reduced_phys_bits: int | None = None
    dh_cert: str | None = None
    session: str | None = None
    dh_cert_secret: uuid.UUID | None = None
    session_secret: uuid.UUID | None = None
    # sev-snp: base64 text as given (QEMU checks the lengths), and two yes/no attributes
    guest_visible_workarounds: str | None = None
    id_block: str | None = None
    id_auth: str | None = None
    host_data: str | None = None
    author_key: bool | None = None
    vcek: bool | None = None

    def __post_init__(self) -> None:
        check_choice("launchSecurity/@type", self.type, LAUNCH_SECURITY_TYPES)
        for name, number in (
            ("cbitpos", self.cbitpos),
            ("reducedPhysBits", self.reduced_phys_bits),
        ):
            if number is not None and not 0 <= number <= U32:
                raise xml_error(
                    f"invalid value for launch security {name}: {number} is not a 32-bit "
                    "unsigned integer",
                    field=f"launchSecurity/{name}",
                    value=number,
                )
        self._check_policy()
        self._check_blobs()
        self._check_snp()

    def _check_policy(self) -> None:
        if self.type == "s390-pv":
            if self.policy is not None or self.cbitpos is not None:
                raise unsupported(
                    "launch security type 's390-pv' takes no policy, cbitpos or reducedPhysBits",
                    field="launchSecurity",
                )
            return
        limit = U64 if self.type == "sev-snp" else U32
        if self.policy is None and self.type == "sev-snp":
            return  # libvirt: optional for SEV-SNP, QEMU's default (0x30000) then applies
        if self.policy is None:
            raise xml_error(
                "failed to get launch security policy: <policy> is required, e.g. "
                "<policy>0x0033</policy>",
                field="launchSecurity/policy",
            )
        if not 0 <= self.policy <= limit:
            raise xml_error(
                f"failed to get launch security policy: {self.policy:#x} does not fit in "
                f"{limit.bit_length()} bits",
                field="launchSecurity/policy",
                value=self.policy,
            )

    def _check_blobs(self) -> None:
        pairs = (
            ("dhCert", self.dh_cert, self.dh_cert_secret),
            ("session", self.session, self.session_secret),
        )
        for name, inline, secret in pairs:
            check_text(f"launchSecurity/{name}", inline)
            if (inline is not None or secret is not None) and self.type != "sev":
                raise unsupported(
                    f"<{name}> is only valid for launch security type 'sev', not '{self.type}'",
                    field=f"launchSecurity/{name}",
                )
            if inline is not None and secret is not None:
                raise unsupported(
                    f"launch security {name} is given both inline and as secret {secret}; "
                    "keep one of them",
                    field=f"launchSecurity/{name}",
                    value=str(secret),
                )

    def _check_snp(self) -> None:
        for name, value in (
            ("guestVisibleWorkarounds", self.guest_visible_workarounds),
            ("idBlock", self.id_block),
            ("idAuth", self.id_auth),
            ("hostData", self.host_data),
            ("authorKey", self.author_key),
            ("vcek", self.vcek),
        ):
            if isinstance(value, str):
                check_text(f"launchSecurity/{name}", value)
            if value is not None and self.type != "sev-snp":
                raise unsupported(
                    f"<{name}> is only valid for launch security type 'sev-snp', not '{self.type}'",
                    field=f"launchSecurity/{name}",
                )

    @property
    def is_snp(self) -> bool:
        return self.type == "sev-snp"

    @property
    def guest_policy(self) -> Policy:
        """The SEV policy as a :class:`~sevlaunch.formats.Policy` (reserved bits kept)."""
        if self.type != "sev" or self.policy is None:
            raise unsupported(
                f"launch security type '{self.type}' has no SEV guest policy",
                field="launchSecurity/policy",
            )
        return Policy.from_int(self.policy, allow_reserved=True)

    @property
    def policy_text(self) -> str | None:
        """The policy as libvirt formats it: ``0x%04x`` for SEV, ``0x%08x`` for SEV-SNP."""
        if self.policy is None:
            return None
        width = 8 if self.type == "sev-snp" else 4
        return f"0x{self.policy:0{width}x}"
