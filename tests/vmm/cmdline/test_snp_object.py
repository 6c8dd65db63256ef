"""``-object sev-snp-guest`` and ``-fw_cfg``: QEMU's property types, its setters' length
checks and messages, and libvirt 10.5's command line for an SNP guest."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from sevlaunch.errors import CommandLineError
from sevlaunch.vmm.cmdline import FwCfgEntry, parse_cmdline
from sevlaunch.vmm.cmdline.config import SevSnpGuestConfig
from sevlaunch.vmm.cmdline.objects import parse_object


def _libvirt(size: int) -> str:
    return base64.b64encode(("libvirt" * 600).encode()[:size]).decode()


def test_libvirts_sev_snp_object_is_accepted(vectors: Path) -> None:
    mapping = json.loads((vectors / "snp" / "libvirt-mapping.json").read_text())
    assert mapping["blobs"]["hostData"] == _libvirt(32)
    obj = dict(mapping["expected_qemu_object_json"])
    for key, size in (
        ("guest-visible-workarounds", 16),
        ("id-block", 96),
        ("id-auth", 4096),
        ("host-data", 32),
    ):
        obj[key] = _libvirt(size)
    parsed = parse_object(json.dumps(obj))
    assert parsed == SevSnpGuestConfig(
        id="lsec0",
        cbitpos=47,
        reduced_phys_bits=1,
        policy=0x30000,
        guest_visible_workarounds=b"libvirtlibvirtli",
        id_block=("libvirt" * 14).encode()[:96],
        id_auth=("libvirt" * 600).encode()[:4096],
        host_data=("libvirt" * 5).encode()[:32],
        author_key_enabled=True,
        vcek_disabled=True,
    )
    assert list(obj) == mapping["property_order_in_args"]


def test_key_value_form_and_defaults() -> None:
    parsed = parse_object("sev-snp-guest,id=s0,cbitpos=51,reduced-phys-bits=1,kernel-hashes=on")
    assert parsed == SevSnpGuestConfig(id="s0", cbitpos=51, reduced_phys_bits=1, kernel_hashes=True)
    assert isinstance(parsed, SevSnpGuestConfig)
    assert (parsed.policy, parsed.id_block, parsed.host_data) == (0x30000, None, bytes(32))
    big = parse_object("sev-snp-guest,id=s0,reduced-phys-bits=1,policy=0x1000030000")
    assert isinstance(big, SevSnpGuestConfig)
    assert big.policy == 0x1000030000  # a uint64


@pytest.mark.parametrize(
    ("prop", "value", "message"),
    [
        ("id-block", _libvirt(95), "parameter length of 95 not equal to 96"),
        ("host-data", _libvirt(31), "parameter length of 31 not equal to 32"),
        ("guest-visible-workarounds", _libvirt(17), "parameter length of 17 exceeds max of 16"),
        ("id-auth", _libvirt(4099), "parameter length:ID_AUTH 4099 exceeds max of 4096"),
        ("host-data", "not base64!", "not valid"),
        ("dh-cert-file", "/x", "Property 'sev-snp-guest.dh-cert-file' not found"),
    ],
)
def test_qemus_setter_checks(prop: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_object(json.dumps({"qom-type": "sev-snp-guest", "id": "s", prop: value}))


def _argv(*extra: str) -> list[str]:
    return [
        "-machine",
        "q35,confidential-guest-support=lsec0",
        "-object",
        "sev-snp-guest,id=lsec0,cbitpos=51,reduced-phys-bits=1",
        "-bios",
        "/fw",
        *extra,
    ]


def test_the_machine_binds_the_snp_object_and_fw_cfg_files() -> None:
    config = parse_cmdline(
        _argv(
            "-fw_cfg",
            'name=opt/org.sevlaunch/attestation,string={"a",,1}',
            "-fw_cfg",
            "opt/x,file=/f",
        )
    )
    assert config.sev_guest is None
    assert config.snp_guest is not None
    assert config.snp_guest.id == "lsec0"
    assert config.fw_cfg == (
        FwCfgEntry("opt/org.sevlaunch/attestation", string='{"a",1}'),
        FwCfgEntry("opt/x", file="/f"),
    )


@pytest.mark.parametrize(
    "arg",
    ["name=opt/a", "name=opt/a,string=x,file=/y", "string=x", "name=opt/a,string=x,bogus=1"],
)
def test_bad_fw_cfg_options_fail_as_qemu_fails(arg: str) -> None:
    with pytest.raises(CommandLineError):
        parse_cmdline(_argv("-fw_cfg", arg))
    with pytest.raises(CommandLineError, match="duplicate fw_cfg file name"):
        parse_cmdline(_argv("-fw_cfg", "opt/a,string=1", "-fw_cfg", "opt/a,string=2"))
