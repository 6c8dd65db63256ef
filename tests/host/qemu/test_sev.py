"""The sev-guest object: libvirt's keys and order, the host's geometry when the domain gives
none, the blobs verbatim or from stored secrets."""

from __future__ import annotations

import json
import uuid

import pytest

from sevlaunch.errors import DomainXMLError
from sevlaunch.host.domxml import Domain, LaunchSecurity
from sevlaunch.host.qemu.plan import HostSevDefaults
from sevlaunch.host.qemu.sev import sev_object
from tests.host.qemu.cases import domain


def build(
    lsec: LaunchSecurity, host: HostSevDefaults | None = None
) -> tuple[dict[str, object], list[str]]:
    text, files = sev_object(
        Domain.from_xml(domain()), lsec, "/lib", lambda ref: b"\x02stored", host
    )
    return json.loads(text), [f"{f.path}={f.content!r}" for f in files]


def test_geometry_comes_from_the_host_when_the_domain_leaves_it_out() -> None:
    props, files = build(
        LaunchSecurity(policy=0x33), HostSevDefaults(cbitpos=51, reduced_phys_bits=1)
    )
    assert props == {
        "qom-type": "sev-guest",
        "id": "lsec0",
        "cbitpos": 51,
        "reduced-phys-bits": 1,
        "policy": 0x33,
    }
    assert files == []
    with pytest.raises(DomainXMLError, match="gives no <cbitpos>"):
        build(LaunchSecurity(policy=1))


def test_kernel_hashes_only_when_the_domain_says() -> None:
    for hashes in (True, False):
        props, _ = build(
            LaunchSecurity(policy=1, cbitpos=47, reduced_phys_bits=1, kernel_hashes=hashes)
        )
        assert props["kernel-hashes"] is hashes
        assert list(props)[-1] == "kernel-hashes"


def test_blobs_inline_verbatim_or_stored_in_base64() -> None:
    ref = uuid.UUID(int=5)
    props, files = build(
        LaunchSecurity(
            policy=1, cbitpos=47, reduced_phys_bits=1, dh_cert="QUJD", session_secret=ref
        )
    )
    assert (props["dh-cert-file"], props["session-file"]) == (
        "/lib/dh_cert.base64",
        "/lib/session.base64",
    )
    assert files == ["/lib/dh_cert.base64=b'QUJD'", "/lib/session.base64=b'AnN0b3JlZA=='"]


def test_sev_snp_is_refused_with_libvirts_words() -> None:
    with pytest.raises(
        DomainXMLError, match="sev-snp launch security is not supported with this QEMU binary"
    ):
        build(LaunchSecurity(type="sev-snp", policy=0x30000))
