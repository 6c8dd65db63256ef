"""Domain XML: libvirt's documents parse, round-trip in place and validate against its schema."""

from __future__ import annotations

import base64
import dataclasses
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree  # type: ignore[import-untyped]

from sevlaunch.errors import DomainXMLError, HostError
from sevlaunch.formats import PolicyFlags
from sevlaunch.host.domxml import (
    NS,
    CpuConfig,
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
# formats it), with a q35 machine.
SEV_DIRECT = """\
<domain type='kvm'>
  <name>QEMUGuest1</name>
  <uuid>c7a5fdbd-edaf-9455-926a-d65c16db1809</uuid>
  <memory unit='KiB'>219100</memory>
  <currentMemory unit='KiB'>219100</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc-q35-8.2'>hvm</type>
    <kernel>/vmlinuz</kernel>
    <initrd>/initrd</initrd>
    <cmdline>runme</cmdline>
    <boot dev='hd'/>
  </os>
  <cpu mode='custom' match='exact' check='none'>
    <model fallback='forbid'>qemu64</model>
  </cpu>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' index='0' model='none'/>
    <controller type='pci' index='0' model='pcie-root'/>
    <input type='mouse' bus='ps2'/>
    <input type='keyboard' bus='ps2'/>
    <audio id='1' type='none'/>
    <memballoon model='none'/>
  </devices>
  <launchSecurity type='sev' kernelHashes='yes'>
    <cbitpos>47</cbitpos>
    <reducedPhysBits>1</reducedPhysBits>
    <policy>0x0001</policy>
    <dhCert>AQAAAAAOAAAAQAAAAAOAAAAQAAAAAOAAAAQAAAAAOAAAAQAAAAAOAAA</dhCert>
    <session>IHAVENOIDEABUTJUSTPROVIDINGASTRING</session>
  </launchSecurity>
</domain>
"""

# The kbase's attestable guest: stateless OVMF, locked memory, an encrypted data disk, a
# serial log file, and the blobs named as stored secrets.
SEV_LOADER = """\
<domain type='kvm'>
  <name>sev-guest</name>
  <uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid>
  <metadata>
    <app:owner xmlns:app="https://example.org/app/1">ops</app:owner>
    <sevlaunch:launchSecurity xmlns:sevlaunch="https://sevlaunch.dev/xmlns/domain/1">
      <sevlaunch:dhCertSecret uuid="0a3e0a8c-2f54-4b5c-9d1e-6a7a2c1f0b11"/>
      <sevlaunch:sessionSecret uuid="5b7f3c11-8d2e-4c19-a0d4-f1e2d3c4b5a6"/>
    </sevlaunch:launchSecurity>
  </metadata>
  <memory unit='KiB'>4194304</memory>
  <currentMemory unit='KiB'>4194304</currentMemory>
  <memoryBacking>
    <locked/>
  </memoryBacking>
  <vcpu placement='static'>4</vcpu>
  <os firmware='efi'>
    <type arch='x86_64' machine='q35'>hvm</type>
    <firmware>
      <feature enabled='no' name='enrolled-keys'/>
      <feature enabled='no' name='secure-boot'/>
    </firmware>
    <loader readonly='yes' type='pflash' stateless='yes' format='raw'>/usr/share/edk2/ovmf/OVMF.amdsev.fd</loader>
    <boot dev='hd'/>
  </os>
  <features>
    <acpi/>
    <apic/>
  </features>
  <cpu mode='host-passthrough' check='none' migratable='on'/>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/sevlaunch-vmm</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' iommu='on'/>
      <source file='/var/lib/sevlaunch/images/data.img'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <controller type='pci' index='0' model='pcie-root'/>
    <interface type='network'>
      <source network='default'/>
      <model type='virtio'/>
      <driver iommu='on'/>
      <rom enabled='no'/>
    </interface>
    <serial type='file'>
      <source path='/var/log/sevlaunch/sev-guest.log'/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path='/var/log/sevlaunch/sev-guest.log'/>
      <target type='serial' port='0'/>
    </console>
    <memballoon model='none'/>
  </devices>
  <launchSecurity type='sev'>
    <cbitpos>51</cbitpos>
    <reducedPhysBits>1</reducedPhysBits>
    <policy>0x0033</policy>
  </launchSecurity>
</domain>
"""

SEV_ES = """\
<domain type='kvm'>
  <name>sev-es</name>
  <memory unit='KiB'>1048576</memory>
  <vcpu placement='static'>2</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <loader readonly='yes' type='rom'>/usr/share/edk2/ovmf/OVMF.amdsev.fd</loader>
    <kernel>/boot/vmlinuz</kernel>
    <initrd>/boot/initrd.img</initrd>
    <cmdline>console=ttyS0 root=/dev/vda1</cmdline>
  </os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='pty'>
      <target port='0'/>
    </serial>
  </devices>
  <launchSecurity type='sev' kernelHashes='no'>
    <policy>0x0007</policy>
    <dhCert>Z29kaA==</dhCert>
    <session>c2Vzc2lvbg==</session>
  </launchSecurity>
</domain>
"""

PLAIN = """\
<domain type='qemu'>
  <name>plain</name>
  <uuid>00000000-0000-4000-8000-000000000001</uuid>
  <title>A guest without SEV</title>
  <memory unit='KiB'>131072</memory>
  <vcpu placement='static'>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <boot dev='hd'/>
  </os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='file'>
      <source path='/tmp/plain.log'/>
    </serial>
  </devices>
</domain>
"""

# libvirt tests/qemuxmlconfdata/launch-security-sev-snp.x86_64-latest.xml, blobs shortened.
SEV_SNP = """\
<domain type='kvm'>
  <name>QEMUGuest1</name>
  <uuid>c7a5fdbd-edaf-9455-926a-d65c16db1809</uuid>
  <memory unit='KiB'>219100</memory>
  <currentMemory unit='KiB'>219100</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <os firmware='efi'>
    <type arch='x86_64' machine='pc-q35-8.2'>hvm</type>
    <loader readonly='yes' type='pflash' stateless='yes' format='raw'>/usr/share/edk2/ovmf/OVMF.amdsev.fd</loader>
    <boot dev='hd'/>
  </os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
  </devices>
  <launchSecurity type='sev-snp' authorKey='yes' vcek='no'>
    <cbitpos>47</cbitpos>
    <reducedPhysBits>1</reducedPhysBits>
    <policy>0x00030000</policy>
    <guestVisibleWorkarounds>bGlidmlydGxpYnZpcnRsaQ==</guestVisibleWorkarounds>
    <hostData>bGlidmlydGxpYnZpcnRsaWJ2aXJ0bGlidmlydGxpYnY=</hostData>
  </launchSecurity>
</domain>
"""

SAMPLES = {
    "sev-direct": SEV_DIRECT,
    "sev-loader": SEV_LOADER,
    "sev-es": SEV_ES,
    "plain": PLAIN,
    "sev-snp": SEV_SNP,
}


def canonical(xml: str) -> bytes:
    """C14N with blank text dropped: equal for equivalent documents."""
    parser = etree.XMLParser(remove_blank_text=True)
    return bytes(etree.tostring(etree.fromstring(xml.encode(), parser), method="c14n"))


def replace_root_child(xml: str, tag: str, new: str | None) -> str:
    root = etree.fromstring(xml.encode())
    old = root.find(tag)
    if new is None:
        root.remove(old)
    else:
        root.replace(old, etree.fromstring(new))
    return str(etree.tostring(root, encoding="unicode"))


# -- accepted documents ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_is_valid_libvirt_xml(name: str, schemas: Path) -> None:
    validate_against_schema(SAMPLES[name], schemas)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_round_trip_is_equivalent_and_valid(name: str, schemas: Path) -> None:
    domain = Domain.from_xml(SAMPLES[name])
    written = domain.to_xml()
    validate_against_schema(written, schemas)
    assert canonical(written) == canonical(SAMPLES[name])
    assert Domain.from_xml(written) == domain
    assert Domain.from_xml(written).to_xml() == written


def test_sev_direct_fields() -> None:
    domain = Domain.from_xml(SEV_DIRECT)
    assert domain.name == "QEMUGuest1"
    assert domain.uuid == uuid.UUID("c7a5fdbd-edaf-9455-926a-d65c16db1809")
    assert (domain.memory_kib, domain.current_memory_kib, domain.vcpus) == (219100, 219100, 1)
    assert domain.os == OsConfig(
        arch="x86_64",
        machine="pc-q35-8.2",
        kernel="/vmlinuz",
        initrd="/initrd",
        cmdline="runme",
    )
    assert domain.cpu == CpuConfig(mode="custom", model="qemu64")
    assert domain.launch_security == LaunchSecurity(
        policy=1,
        kernel_hashes=True,
        cbitpos=47,
        reduced_phys_bits=1,
        dh_cert="AQAAAAAOAAAAQAAAAAOAAAAQAAAAAOAAAAQAAAAAOAAAAQAAAAAOAAA",
        session="IHAVENOIDEABUTJUSTPROVIDINGASTRING",
    )
    assert domain.is_sev
    assert domain.emulator == "/usr/bin/qemu-system-x86_64"


def test_sev_loader_fields() -> None:
    domain = Domain.from_xml(SEV_LOADER)
    assert domain.os.firmware == "efi"
    assert domain.os.loader == Loader(
        path="/usr/share/edk2/ovmf/OVMF.amdsev.fd", readonly=True, type="pflash", stateless=True
    )
    assert domain.cpu == CpuConfig(mode="host-passthrough")
    lsec = domain.launch_security
    assert lsec is not None
    assert lsec.dh_cert is None
    assert lsec.dh_cert_secret == uuid.UUID("0a3e0a8c-2f54-4b5c-9d1e-6a7a2c1f0b11")
    assert lsec.session_secret == uuid.UUID("5b7f3c11-8d2e-4c19-a0d4-f1e2d3c4b5a6")
    assert lsec.guest_policy.flags == (
        PolicyFlags.NODBG | PolicyFlags.NOKS | PolicyFlags.DOMAIN | PolicyFlags.SEV
    )
    assert domain.disks == (
        DiskConfig(
            source="/var/lib/sevlaunch/images/data.img",
            target_dev="vda",
            target_bus="virtio",
            driver_type="raw",
        ),
    )
    assert domain.serials == (SerialConfig(type="file", path="/var/log/sevlaunch/sev-guest.log"),)


def test_sev_es_policy_and_plain_domain() -> None:
    es = Domain.from_xml(SEV_ES).launch_security
    assert es is not None
    assert es.guest_policy.requires_es
    assert es.kernel_hashes is False
    plain = Domain.from_xml(PLAIN)
    assert plain.launch_security is None
    assert not plain.is_sev
    assert plain.type == "qemu"


def test_sev_snp_is_accepted_with_its_policy_width() -> None:
    lsec = Domain.from_xml(SEV_SNP).launch_security
    assert lsec is not None
    assert (lsec.type, lsec.policy, lsec.policy_text) == ("sev-snp", 0x30000, "0x00030000")
    with pytest.raises(DomainXMLError, match="no SEV guest policy"):
        _ = lsec.guest_policy


# -- normalisation as libvirt's formatter does it ----------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit", "kib"),
    [
        ("2", "GiB", 2 * 1024 * 1024),
        ("2", "G", 2 * 1024 * 1024),
        ("2", "g", 2 * 1024 * 1024),
        ("512", "MiB", 512 * 1024),
        ("1", "MB", 977),  # 10**6 bytes, rounded up to whole KiB
        ("1000", "KB", 977),
        ("1048576", "b", 1024),
        ("1", "bytes", 1),
        ("1", "TiB", 1024**3),
        ("4096", None, 4096),
        ("4096", "k", 4096),
    ],
)
def test_memory_units_convert_to_kib(value: str, unit: str | None, kib: int) -> None:
    unit_attr = f" unit='{unit}'" if unit else ""
    xml = replace_root_child(PLAIN, "memory", f"<memory{unit_attr}>{value}</memory>")
    domain = Domain.from_xml(xml)
    assert domain.memory_kib == kib
    assert f'<memory unit="KiB">{kib}</memory>' in domain.to_xml()


def test_policy_spellings_normalise_to_libvirt_hex() -> None:
    for text in ("0x33", "33", "0X0033", " 0x0033 "):
        xml = SEV_DIRECT.replace("<policy>0x0001</policy>", f"<policy>{text}</policy>")
        domain = Domain.from_xml(xml)
        assert domain.launch_security is not None
        assert domain.launch_security.policy == 0x33
        assert "<policy>0x0033</policy>" in domain.to_xml()


def test_uuid_without_dashes_is_written_canonically() -> None:
    xml = PLAIN.replace("00000000-0000-4000-8000-000000000001", "0000000000004000800000000000000A")
    assert "<uuid>00000000-0000-4000-8000-00000000000a</uuid>" in Domain.from_xml(xml).to_xml()


def test_current_memory_above_memory_is_dropped_as_libvirt_clamps_it() -> None:
    xml = SEV_DIRECT.replace("<currentMemory unit='KiB'>219100", "<currentMemory unit='KiB'>999999")
    assert Domain.from_xml(xml).current_memory_kib is None


# -- edits land in place; everything else stays ---------------------------------------------


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


# -- errors libvirt would give -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        pytest.param(
            replace_root_child(PLAIN, "name", None),
            "XML error: missing name information",
            id="no-name",
        ),
        pytest.param(
            replace_root_child(PLAIN, "name", "<name></name>"),
            "XML error: missing name information",
            id="empty-name",
        ),
        pytest.param(
            replace_root_child(PLAIN, "name", "<name>a/b</name>"),
            "cannot contain '/'",
            id="slash-in-name",
        ),
        pytest.param(
            replace_root_child(PLAIN, "uuid", "<uuid>not-a-uuid</uuid>"),
            "internal error: malformed uuid element",
            id="bad-uuid",
        ),
        pytest.param(
            SEV_DIRECT.replace("0x0001", "0xzz"),
            "XML error: failed to get launch security policy",
            id="bad-policy",
        ),
        pytest.param(
            SEV_DIRECT.replace("0x0001", "0x100000000"),
            "XML error: failed to get launch security policy",
            id="policy-over-32-bits",
        ),
        pytest.param(
            SEV_DIRECT.replace("<policy>0x0001</policy>", ""),
            "XML error: failed to get launch security policy",
            id="no-policy",
        ),
        pytest.param(
            SEV_DIRECT.replace("<launchSecurity type='sev' ", "<launchSecurity "),
            "XML error: Missing required attribute 'type' in element 'launchSecurity'",
            id="launch-security-without-type",
        ),
        pytest.param(
            SEV_DIRECT.replace("type='sev'", "type='tdx-ish'"),
            "XML error: Invalid value for attribute 'type' in element 'launchSecurity': 'tdx-ish'",
            id="unknown-launch-security-type",
        ),
        pytest.param(
            SEV_DIRECT.replace("kernelHashes='yes'", "kernelHashes='maybe'"),
            "Invalid value for attribute 'kernelHashes'",
            id="bad-kernel-hashes",
        ),
        pytest.param(
            SEV_DIRECT.replace("<cbitpos>47", "<cbitpos>-1"),
            "Invalid value for launch security cbitpos",
            id="bad-cbitpos",
        ),
        pytest.param(
            replace_root_child(PLAIN, "memory", None),
            "Memory size must be specified",
            id="no-memory",
        ),
        pytest.param(
            replace_root_child(PLAIN, "memory", "<memory unit='furlong'>1</memory>"),
            "invalid argument: unknown suffix 'furlong'",
            id="bad-unit",
        ),
        pytest.param(
            replace_root_child(PLAIN, "memory", "<memory>lots</memory>"),
            "could not parse element",
            id="bad-memory",
        ),
        pytest.param(
            replace_root_child(PLAIN, "memory", "<memory unit='EiB'>16</memory>"),
            "numerical overflow",
            id="memory-overflow",
        ),
        pytest.param(
            replace_root_child(PLAIN, "vcpu", "<vcpu>0</vcpu>"),
            "maximum vcpus count must be an integer",
            id="zero-vcpus",
        ),
        pytest.param(
            replace_root_child(PLAIN, "os", "<os><boot dev='hd'/></os>"),
            "an os <type> must be specified",
            id="no-os-type",
        ),
        pytest.param(
            replace_root_child(PLAIN, "os", "<os><type>dos</type></os>"),
            "unknown OS type",
            id="unknown-os-type",
        ),
        pytest.param(
            PLAIN.replace("<domain type='qemu'>", "<domain>"),
            "Missing required attribute 'type' in element 'domain'",
            id="domain-without-type",
        ),
        pytest.param(
            "<domain type='kvm'><name>x", "XML error: (domain_definition):1:", id="not-xml"
        ),
        pytest.param(
            "<network><name>x</name></network>",
            "unexpected root element <network>, expecting <domain>",
            id="wrong-root",
        ),
        pytest.param(
            PLAIN.replace("</devices>", "<disk type='file'><source file='/a'/></disk></devices>"),
            "missing target information for device /a",
            id="disk-without-target",
        ),
        pytest.param(
            SEV_LOADER.replace("<policy>0x0033</policy>", "<policy>0x3</policy><dhCert>x</dhCert>"),
            "unsupported configuration: launch security dhCert is given both inline and as secret",
            id="dhcert-inline-and-secret",
        ),
        pytest.param(
            replace_root_child(SEV_LOADER, "launchSecurity", None),
            "unsupported configuration: the sevlaunch dhCertSecret/sessionSecret metadata needs",
            id="secret-refs-without-sev",
        ),
        pytest.param(
            SEV_LOADER.replace('uuid="0a3e0a8c-2f54-4b5c-9d1e-6a7a2c1f0b11"', 'uuid="nope"'),
            "malformed uuid element",
            id="bad-secret-ref",
        ),
    ],
)
def test_bad_documents_get_libvirt_errors(xml: str, message: str) -> None:
    with pytest.raises(DomainXMLError) as caught:
        Domain.from_xml(xml)
    assert message in str(caught.value)
    assert isinstance(caught.value, HostError)


def test_errors_name_the_field() -> None:
    with pytest.raises(DomainXMLError) as caught:
        Domain.from_xml(SEV_DIRECT.replace("0x0001", "0xzz"))
    assert caught.value.kind == "XML error"
    assert caught.value.field == "launchSecurity/policy"
    assert caught.value.value == "0xzz"


def test_entities_are_neither_expanded_nor_fetched(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    xxe = (
        f'<!DOCTYPE domain [<!ENTITY x SYSTEM "file://{secret}">]>'
        "<domain type='kvm'><name>&x;</name><memory>1</memory><os><type>hvm</type></os></domain>"
    )
    with pytest.raises(DomainXMLError) as caught:
        Domain.from_xml(xxe)
    assert "TOP-SECRET" not in str(caught.value)


def test_oversized_documents_are_refused() -> None:
    huge = PLAIN.replace("<title>", "<title>" + "x" * (11 * 1024 * 1024))
    with pytest.raises(DomainXMLError, match="byte limit"):
        Domain.from_xml(huge)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (LaunchSecurity, "failed to get launch security policy"),
        (lambda: LaunchSecurity(type="sev-snp", policy=1, dh_cert="x"), "only valid for"),
        (lambda: LaunchSecurity(policy=1, cbitpos=2**32), "32-bit unsigned"),
        (lambda: Loader(path="relative/OVMF.fd"), "must be an absolute path"),
        (lambda: DiskConfig(target_dev="disk0"), "invalid disk target"),
        (lambda: SerialConfig(type="file"), "Missing source path"),
        (lambda: OsConfig(cmdline="a\x00b"), "character XML cannot carry"),
        (lambda: Domain(name="x", memory_kib=0), "Memory size must be specified"),
        (lambda: Domain(name="x", memory_kib=1, current_memory_kib=2), "exceeds memory"),
        (lambda: Domain(name="x", memory_kib=1, type="bogus"), "Invalid value for attribute"),
    ],
)
def test_constructors_refuse_what_cannot_be_written(
    build: Callable[[], object], message: str
) -> None:
    with pytest.raises(DomainXMLError, match=message):
        build()


def test_schema_failures_are_reported(schemas: Path) -> None:
    invalid = SEV_DIRECT.replace("<vcpu placement='static'>1</vcpu>", "<vcpu>one</vcpu>")
    with pytest.raises(DomainXMLError, match="failed to validate against schema"):
        validate_against_schema(invalid, schemas)


def test_missing_schema_is_reported(tmp_path: Path) -> None:
    with pytest.raises(DomainXMLError, match="Unable to load the RelaxNG schema"):
        validate_against_schema(PLAIN, tmp_path)


# -- generated domains -------------------------------------------------------------------------

_safe_text = st.text(
    alphabet=st.characters(
        codec="utf-8", exclude_categories=("Cs", "Cc"), exclude_characters="\ufffe\uffff"
    ),
    min_size=1,
    max_size=20,
)
_path = st.builds(lambda s: "/" + s, _safe_text.filter(lambda s: s.strip() == s))
_names = _safe_text.filter(lambda s: "/" not in s and s.strip() and s not in (".", ".."))
_b64 = st.binary(min_size=1, max_size=48).map(lambda b: base64.b64encode(b).decode())
_uuids = st.uuids()


@st.composite
def _launch_security(draw: st.DrawFn) -> LaunchSecurity:
    dh_secret = draw(st.booleans())
    session_secret = draw(st.booleans())
    return LaunchSecurity(
        policy=draw(st.integers(0, 2**32 - 1)),
        kernel_hashes=draw(st.sampled_from([None, True, False])),
        cbitpos=draw(st.none() | st.integers(0, 63)),
        reduced_phys_bits=draw(st.none() | st.integers(0, 63)),
        dh_cert=None if dh_secret else draw(st.none() | _b64),
        session=None if session_secret else draw(st.none() | _b64),
        dh_cert_secret=draw(_uuids) if dh_secret else None,
        session_secret=draw(_uuids) if session_secret else None,
    )


_os = st.builds(
    OsConfig,
    arch=st.sampled_from([None, "x86_64"]),
    machine=st.sampled_from([None, "q35", "pc-q35-8.2"]),
    firmware=st.sampled_from([None, "efi", "bios"]),
    loader=st.none()
    | st.builds(
        Loader,
        path=_path,
        readonly=st.sampled_from([None, True, False]),
        type=st.sampled_from([None, "rom", "pflash"]),
        stateless=st.sampled_from([None, True, False]),
    ),
    nvram=st.none() | st.builds(Nvram, path=_path),
    kernel=st.none() | _path,
    initrd=st.none() | _path,
    cmdline=st.none() | _safe_text,
)

_disks = st.builds(
    DiskConfig,
    source=_path,
    target_dev=st.sampled_from(["vda", "vdb", "sda", "hdc"]),
    target_bus=st.sampled_from([None, "virtio", "sata"]),
    driver_type=st.sampled_from([None, "raw", "qcow2"]),
    readonly=st.booleans(),
)
_serials = st.one_of(
    st.builds(SerialConfig, type=st.just("file"), path=_path),
    st.builds(SerialConfig, type=st.just("pty")),
    st.builds(
        SerialConfig,
        type=st.just("pty"),
        log_file=_path,
        log_append=st.none() | st.booleans(),
    ),
)

_domains_any = st.builds(
    Domain,
    name=_names,
    memory_kib=st.integers(1, 2**40),
    type=st.sampled_from(["kvm", "qemu"]),
    uuid=st.none() | _uuids,
    vcpus=st.integers(1, 512),
    os=_os,
    cpu=st.none()
    | st.builds(
        CpuConfig,
        mode=st.sampled_from([None, "custom", "host-passthrough"]),
        model=st.none() | st.sampled_from(["EPYC", "qemu64"]),
    ),
    launch_security=st.none() | _launch_security(),
    emulator=st.none() | _path,
    disks=st.lists(_disks, max_size=3).map(tuple),
    serials=st.lists(_serials, max_size=2).map(tuple),
    current_memory_kib=st.none(),
)
_domains = st.one_of(
    _domains_any,
    st.builds(
        lambda d, current: dataclasses.replace(d, current_memory_kib=min(current, d.memory_kib)),
        _domains_any,
        st.integers(1, 2**20),
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(domain=_domains)
def test_generated_domains_round_trip_and_validate(domain: Domain, schemas: Path) -> None:
    written = domain.to_xml()
    validate_against_schema(written, schemas)
    parsed = Domain.from_xml(written)
    assert parsed == domain
    assert parsed.to_xml() == written


@settings(max_examples=100, deadline=None)
@given(base=st.sampled_from(sorted(SAMPLES)), domain=_domains)
def test_generated_edits_of_samples_stay_valid(base: str, domain: Domain, schemas: Path) -> None:
    template = Domain.from_xml(SAMPLES[base]).template
    edited = dataclasses.replace(domain, template=template)
    written = edited.to_xml()
    validate_against_schema(written, schemas)
    assert Domain.from_xml(written) == edited


@pytest.mark.parametrize(
    ("name", "kind", "message"),
    [
        ("..", "XML error", "name '..' cannot be used"),
        (".", "XML error", "name '.' cannot be used"),
        ("\t ", "missing name information", "empty or only white space"),
        ("a/b", "XML error", "name a/b cannot contain '/'"),
        ("a\nb", "XML error", "invalid char in name: \\n"),
        ("x" * (1 << 20), "XML error", "name of 1048576 bytes is too long"),
    ],
)
def test_libvirts_name_rules(name: str, kind: str, message: str) -> None:
    with pytest.raises(DomainXMLError) as caught:
        Domain(name=name, memory_kib=1024)
    assert caught.value.kind == kind
    assert message in caught.value.detail
    assert caught.value.field == "name"


def test_names_libvirt_takes_are_taken() -> None:
    for name in ("x" * 247, "é" * 123, "a b", "x..y", "-dash", "a,b", "a'b", "&"):
        assert Domain(name=name, memory_kib=1024).name == name


def test_a_serial_log_round_trips_with_libvirts_on_off() -> None:
    xml = (
        "<domain type='kvm'><name>l</name><memory>1024</memory><os><type>hvm</type></os>"
        "<devices><serial type='pty'><log file='/var/log/l/console.log' append='on'/>"
        "<target port='0'/></serial></devices></domain>"
    )
    domain = Domain.from_xml(xml)
    assert domain.serials == (
        SerialConfig(type="pty", log_file="/var/log/l/console.log", log_append=True),
    )
    assert '<log file="/var/log/l/console.log" append="on"/>' in domain.to_xml()
    with pytest.raises(DomainXMLError, match="Expected one of: on, off"):
        Domain.from_xml(xml.replace("append='on'", "append='yes'"))


@pytest.mark.parametrize("model", ["qemu64,+x2apic,hv-passthrough=on", "a=b", "-x", "EPYC Rome"])
def test_a_cpu_model_is_a_bare_model_name(model: str) -> None:
    with pytest.raises(DomainXMLError) as caught:
        CpuConfig(mode="custom", model=model)
    assert str(caught.value) == (
        f"unsupported configuration: CPU model {model} is not supported by hypervisor"
    )
