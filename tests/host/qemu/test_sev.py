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


def test_sev_snp_object_is_libvirts() -> None:
    """libvirt 10.5's launch-security-sev-snp test: keys in its order, the policy in decimal,
    the blobs as the XML holds them, authorKey='yes' and vcek='no' as two true booleans."""
    props, files = build(
        LaunchSecurity(
            type="sev-snp",
            policy=0x30000,
            cbitpos=47,
            reduced_phys_bits=1,
            guest_visible_workarounds=" R1ZX ",
            id_block="SUQ=",
            id_auth="QVVUSA==",
            host_data="SE9TVA==",
            author_key=True,
            vcek=False,
        )
    )
    assert list(props.items()) == [
        ("qom-type", "sev-snp-guest"),
        ("id", "lsec0"),
        ("cbitpos", 47),
        ("reduced-phys-bits", 1),
        ("policy", 196608),
        ("guest-visible-workarounds", "R1ZX"),
        ("id-block", "SUQ="),
        ("id-auth", "QVVUSA=="),
        ("host-data", "SE9TVA=="),
        ("author-key-enabled", True),
        ("vcek-disabled", True),
    ]
    assert files == []


def test_sev_snp_defaults_are_left_to_qemu() -> None:
    """No policy (or 0), authorKey='no', vcek='yes': libvirt writes none of them."""
    host = HostSevDefaults(cbitpos=51, reduced_phys_bits=1)
    for policy in (None, 0):
        props, _ = build(
            LaunchSecurity(type="sev-snp", policy=policy, author_key=False, vcek=True), host
        )
        assert props == {
            "qom-type": "sev-snp-guest",
            "id": "lsec0",
            "cbitpos": 51,
            "reduced-phys-bits": 1,
        }
    props, _ = build(LaunchSecurity(type="sev-snp", kernel_hashes=True), host)
    assert list(props)[4:] == ["kernel-hashes"]


def test_s390_pv_is_refused_with_libvirts_words() -> None:
    with pytest.raises(
        DomainXMLError, match="s390-pv launch security is not supported with this QEMU binary"
    ):
        build(LaunchSecurity(type="s390-pv"))
