"""<launchSecurity>: SEV's policy and blobs, checked as libvirt checks them."""

from __future__ import annotations

import uuid

import pytest

from sevlaunch.errors import DomainXMLError
from sevlaunch.host.domxml import LaunchSecurity


def test_policy_text_is_libvirts_width() -> None:
    assert LaunchSecurity(policy=0x33).policy_text == "0x0033"
    assert LaunchSecurity(type="sev-snp", policy=0x30000).policy_text == "0x00030000"
    assert LaunchSecurity(policy=7).guest_policy.requires_es


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (LaunchSecurity, "failed to get launch security policy"),
        (lambda: LaunchSecurity(policy=1 << 32), "does not fit in 32 bits"),
        (lambda: LaunchSecurity(policy=1, reduced_phys_bits=-1), "not a 32-bit unsigned integer"),
        (
            lambda: LaunchSecurity(type="sev-snp", policy=1, session="x"),
            "only valid for launch security type 'sev'",
        ),
        (
            lambda: LaunchSecurity(policy=1, dh_cert="x", dh_cert_secret=uuid.UUID(int=1)),
            "both inline and as secret",
        ),
        (lambda: LaunchSecurity(type="s390-pv", policy=1), "takes no policy"),
        (lambda: LaunchSecurity(type="tdx", policy=1), "Expected one of: sev, sev-snp, s390-pv"),
    ],
)
def test_refusals(build: object, message: str) -> None:
    with pytest.raises(DomainXMLError, match=message):
        build()  # type: ignore[operator]


def test_only_sev_has_an_sev_policy() -> None:
    with pytest.raises(DomainXMLError, match="has no SEV guest policy"):
        _ = LaunchSecurity(type="sev-snp", policy=0x30000).guest_policy
