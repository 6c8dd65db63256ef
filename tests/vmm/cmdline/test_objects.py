"""``-object``: sev-guest's QOM properties in both syntaxes, and the objects libvirt adds."""

from __future__ import annotations

import pytest

from sevlaunch.vmm.cmdline.config import ObjectConfig, SevGuestConfig
from sevlaunch.vmm.cmdline.objects import parse_object


def test_json_and_key_value_sev_guest_agree() -> None:
    json_form = parse_object(
        '{"qom-type":"sev-guest","id":"lsec0","cbitpos":51,"reduced-phys-bits":1,'
        '"policy":51,"kernel-hashes":true,"dh-cert-file":"/a/dh_cert.base64"}'
    )
    opts_form = parse_object(
        "sev-guest,id=lsec0,cbitpos=51,reduced-phys-bits=1,policy=0x33,kernel-hashes=on,"
        "dh-cert-file=/a/dh_cert.base64"
    )
    assert (
        json_form
        == opts_form
        == SevGuestConfig(
            id="lsec0",
            cbitpos=51,
            reduced_phys_bits=1,
            policy=0x33,
            kernel_hashes=True,
            dh_cert_file="/a/dh_cert.base64",
        )
    )


def test_other_objects_keep_their_properties() -> None:
    assert parse_object(
        '{"qom-type":"secret","id":"masterKey0","format":"raw","file":"/k.aes"}'
    ) == ObjectConfig("secret", "masterKey0", (("format", "raw"), ("file", "/k.aes")))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sev-guest,id=s,cbitpos=x", "Parameter 'cbitpos' expects integer"),
        ("sev-guest,id=s,policy=0x100000000", "Parameter 'policy' expects uint32_t"),
        ("sev-guest,id=s,foo=1", "Property 'sev-guest.foo' not found"),
        ("bogus,id=b", "invalid object type: bogus"),
        ('{"qom-type":"sev-guest","id":"s","cbitpos":"47"}', "expects uint64"),
    ],
)
def test_refusals(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_object(text)
