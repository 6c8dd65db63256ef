"""Domain XML written back in place: edits land where they were, unknown elements stay,
new elements go where libvirt puts them."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest
from lxml import etree  # type: ignore[import-untyped]

from sevlaunch.errors import DomainXMLError
from sevlaunch.host.domxml import (
    NS,
    DiskConfig,
    Domain,
    LaunchSecurity,
    Loader,
    Nvram,
    OsConfig,
    SerialConfig,
    validate_against_schema,
)

# libvirt tests/qemuxmlconfdata/launch-security-sev-direct.x86_64-latest.xml (as libvirt
from tests.host.domxml.samples import (
    SEV_LOADER,
    SEV_SNP,
)


def test_edits_keep_unknown_elements_in_place(schemas: Path) -> None:
    domain = Domain.from_xml(SEV_LOADER)
    assert domain.launch_security is not None
    edited = dataclasses.replace(
        domain,
        vcpus=8,
        launch_security=dataclasses.replace(domain.launch_security, policy=0x7),
        disks=(
            *domain.disks,
            DiskConfig(source="/var/lib/sevlaunch/images/b.img", target_dev="vdb", readonly=True),
        ),
    )
    written = edited.to_xml()
    validate_against_schema(written, schemas)
    root = etree.fromstring(written.encode())
    assert [el.tag for el in root] == [el.tag for el in etree.fromstring(SEV_LOADER.encode())]
    assert [el.tag for el in root.find("devices")] == [
        "emulator",
        "disk",
        "disk",
        "controller",
        "interface",
        "serial",
        "console",
        "memballoon",
    ]
    assert root.find("devices/disk[1]/driver").get("iommu") == "on"
    assert root.find("devices/interface/rom").get("enabled") == "no"
    assert root.find("metadata")[0].text == "ops"
    assert Domain.from_xml(written) == edited


def test_dropping_parts_removes_only_them(schemas: Path) -> None:
    domain = Domain.from_xml(SEV_LOADER)
    stripped = dataclasses.replace(
        domain, launch_security=None, disks=(), serials=(), cpu=None, uuid=None
    )
    written = stripped.to_xml()
    validate_against_schema(written, schemas)
    root = etree.fromstring(written.encode())
    assert root.find("launchSecurity") is None
    assert root.find(f"metadata/{{{NS}}}launchSecurity") is None
    assert root.find("metadata") is not None  # another application's metadata stays
    assert root.find("devices/console") is not None
    assert root.find("features/acpi") is not None
    assert Domain.from_xml(written) == stripped


def test_changing_launch_security_type_drops_the_old_children(schemas: Path) -> None:
    snp = Domain.from_xml(SEV_SNP)
    as_sev = dataclasses.replace(snp, launch_security=LaunchSecurity(policy=0x1))
    written = as_sev.to_xml()
    validate_against_schema(written, schemas)
    assert "hostData" not in written
    assert "authorKey" not in written


def test_domain_built_from_scratch(schemas: Path) -> None:
    domain = Domain(
        name="fresh",
        memory_kib=2 * 1024 * 1024,
        uuid=uuid.UUID(int=42),
        vcpus=2,
        os=OsConfig(
            arch="x86_64",
            machine="q35",
            loader=Loader(path="/usr/share/ovmf/OVMF.fd", readonly=True, type="pflash"),
            nvram=Nvram(path="/var/lib/nvram/fresh_VARS.fd", template="/usr/share/ovmf/VARS.fd"),
        ),
        launch_security=LaunchSecurity(
            policy=0x33, kernel_hashes=True, dh_cert_secret=uuid.UUID(int=7), session="c2Vz"
        ),
        emulator="/usr/bin/sevlaunch-vmm",
        disks=(DiskConfig(source="/images/a.img", target_dev="vda", target_bus="virtio"),),
        serials=(SerialConfig(type="file", path="/logs/fresh.log"), SerialConfig()),
    )
    written = domain.to_xml()
    validate_against_schema(written, schemas)
    assert Domain.from_xml(written) == domain
    root = etree.fromstring(written.encode())
    assert [el.tag for el in root] == [
        "name",
        "uuid",
        "metadata",
        "memory",
        "vcpu",
        "os",
        "devices",
        "launchSecurity",
    ]


def test_a_serial_log_round_trips_with_libvirts_on_off() -> None:
    xml = (
        "<domain type='kvm'><name>l</name><memory>1024</memory><os><type>hvm</type></os>"
        "<devices><serial type='pty'><log file='/var/log/l/console.log' append='on'/>"
        "<target port='0'/></serial></devices></domain>"
    )
    domain = Domain.from_xml(xml)
    assert domain.serials == (
        SerialConfig(type="pty", log_file="/var/log/l/console.log", log_append=True, port=0),
    )
    assert '<log file="/var/log/l/console.log" append="on"/>' in domain.to_xml()
    with pytest.raises(DomainXMLError, match="Expected one of: on, off"):
        Domain.from_xml(xml.replace("append='on'", "append='yes'"))
