"""Define-time validation: what libvirt 9.0's QEMU driver refuses at define, in its classes and
words (checked against a real libvirt where the test says so), and what the host manager's
command line cannot build, said the same way."""

from __future__ import annotations

import pytest

from sevlaunch.errors import DomainXMLError
from sevlaunch.host.domxml import Domain
from sevlaunch.host.validate import (
    LAUNCH_SECURITY_SUPPORTED,
    disk_bus,
    machine_family,
    validate_define,
)
from tests.host.qemu.cases import ACPI, LIBVIRT_CASES, PFLASH, SEV_CASES, disk, domain


@pytest.mark.parametrize("case", sorted(LIBVIRT_CASES | SEV_CASES))
def test_every_supported_configuration_is_accepted(case: str) -> None:
    validate_define(Domain.from_xml({**LIBVIRT_CASES, **SEV_CASES}[case]))


SNP = "<launchSecurity type='sev-snp'><policy>0x30000</policy></launchSecurity>"
S390 = "<launchSecurity type='s390-pv'/>"


@pytest.mark.parametrize(
    ("xml", "kind", "message"),
    [
        # libvirt 9.0 at define (virsh define on Debian 12 gives these words)
        (
            domain(tail=S390),
            "unsupported configuration",
            "S390 PV launch security is not supported with this QEMU binary",
        ),
        (
            domain(devices=disk("hda", "ide", "/a.img")),
            "unsupported configuration",
            "IDE controllers are unsupported for this QEMU binary or machine type",
        ),
        (
            domain(devices="<controller type='ide' index='0'/>"),
            "unsupported configuration",
            "IDE controllers are unsupported",
        ),
        (
            domain(os="<loader readonly='yes' type='rom'/>"),
            "XML error",
            "no loader path specified and firmware auto selection disabled",
        ),
        (domain(os=PFLASH), "unsupported configuration", "UEFI requires ACPI on this architecture"),
        (
            domain(devices=disk("sda", "sata", "/a.img", extra="<readonly/>")),
            "unsupported configuration",
            "readonly sata disks are not supported",
        ),
        (
            domain(
                machine="pc-i440fx-7.2", devices=disk("hda", "ide", "/a.img", extra="<readonly/>")
            ),
            "unsupported configuration",
            "readonly ide disks are not supported",
        ),
        (
            domain(top="<cpu mode='host-passthrough'/>"),
            "unsupported configuration",
            "CPU mode 'host-passthrough' for x86_64 qemu domain on x86_64 host is not supported by hypervisor",
        ),
        (
            domain(devices=disk("vdc", "virtio", "/a.iso", device="cdrom")),
            "unsupported configuration",
            "disk type of 'vdc' does not support ejectable media",
        ),
        # what the host manager cannot run, in libvirt's class
        (
            domain(devices="<interface type='network'><source network='default'/></interface>"),
            "unsupported configuration",
            "device <interface> is not supported",
        ),
        (
            domain(devices="<graphics type='vnc'/>"),
            "unsupported configuration",
            "device <graphics> is not supported",
        ),
        (
            domain(devices=disk("sda", "scsi", "/a.img")),
            "unsupported configuration",
            "disk bus 'scsi' is not supported",
        ),
        (
            domain(
                devices="<disk type='network' device='disk'><target dev='vda' bus='virtio'/></disk>"
            ),
            "unsupported configuration",
            "disk type 'network' is not supported",
        ),
        (
            domain(
                devices="<serial type='tcp'><source mode='bind' host='0' service='1'/></serial>"
            ),
            "unsupported configuration",
            "serial type 'tcp' is not supported",
        ),
        (
            domain(devices="<controller type='scsi' model='virtio-scsi'/>"),
            "unsupported configuration",
            "controller type 'scsi' is not supported",
        ),
        (
            domain(devices="<controller type='usb' model='ich9-ehci1'/>"),
            "unsupported configuration",
            "usb controller model 'ich9-ehci1' is not supported",
        ),
        (
            domain(machine="microvm"),
            "unsupported configuration",
            "machine type 'microvm' is not supported",
        ),
        (
            domain(os="").replace("<os>", "<os firmware='efi'>"),
            "unsupported configuration",
            "firmware autoselection",
        ),
        (
            domain(virt="xen"),
            "unsupported configuration",
            "domain type 'xen' is not handled by the QEMU driver",
        ),
    ],
)
def test_refusals_in_libvirts_words(xml: str, kind: str, message: str) -> None:
    with pytest.raises(DomainXMLError) as caught:
        validate_define(Domain.from_xml(xml))
    assert caught.value.kind == kind
    assert message in caught.value.detail
    assert caught.value.field is not None


def test_sev_on_a_hypervisor_without_sev_says_why() -> None:
    with pytest.raises(DomainXMLError) as caught:
        validate_define(
            Domain.from_xml(SEV_CASES["sev-direct"]), no_sev="QEMU does not support SEV guest"
        )
    assert str(caught.value) == (
        "unsupported configuration: SEV launch security is not supported with this QEMU binary "
        "(QEMU does not support SEV guest)"
    )
    validate_define(
        Domain.from_xml(LIBVIRT_CASES["q35-no-devices"]), no_sev="no SEV"
    )  # no SEV asked


def test_sev_snp_is_accepted_and_needs_the_hypervisors_sev() -> None:
    """libvirt 10.5 defines SNP guests; like SEV's, they need the binary's SEV (SNP builds on
    it: the domain capabilities' <sev/> applies to both)."""
    assert {"sev", "sev-snp"} == LAUNCH_SECURITY_SUPPORTED
    validate_define(Domain.from_xml(domain(virt="kvm", tail=SNP)))
    with pytest.raises(DomainXMLError, match="SEV SNP launch security is not supported"):
        validate_define(Domain.from_xml(domain(virt="kvm", tail=SNP)), no_sev="no SEV")


def test_pflash_with_acpi_is_accepted() -> None:
    validate_define(Domain.from_xml(domain(os=PFLASH, top=ACPI)))


def test_machine_families_and_default_buses() -> None:
    assert machine_family(Domain.from_xml(domain(machine="q35"))) == "q35"
    assert machine_family(Domain.from_xml(domain(machine="pc"))) == "pc"
    assert machine_family(Domain.from_xml(domain(machine="pc-i440fx-7.2"))) == "pc"
    d = Domain.from_xml(
        domain(
            devices=disk("vda", "virtio", "/a")
            + "<disk type='file'><source file='/b'/><target dev='hdb'/></disk>"
        )
    )
    assert [disk_bus(x) for x in d.disks] == ["virtio", "ide"]
