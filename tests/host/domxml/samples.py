"""libvirt documents the domain XML tests share: SEV with direct kernel boot, SEV with a
stateless loader and stored secrets, SEV-ES, a plain guest and SEV-SNP; and the strategies
that generate domains."""

from __future__ import annotations

import base64
import dataclasses

from hypothesis import strategies as st
from lxml import etree  # type: ignore[import-untyped]

from sevlaunch.host.domxml import (
    CpuConfig,
    DiskConfig,
    Domain,
    FwCfgEntry,
    LaunchSecurity,
    Loader,
    Nvram,
    OsConfig,
    SerialConfig,
)
from sevlaunch.host.domxml.devices import (
    BalloonConfig,
    ControllerConfig,
    DriveAddress,
    PciAddress,
)

# libvirt tests/qemuxmlconfdata/launch-security-sev-direct.x86_64-latest.xml (as libvirt
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
    if draw(st.booleans()):
        return draw(_snp_launch_security())
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


@st.composite
def _snp_launch_security(draw: st.DrawFn) -> LaunchSecurity:
    return LaunchSecurity(
        type="sev-snp",
        policy=draw(st.integers(0, 2**64 - 1)),
        kernel_hashes=draw(st.sampled_from([None, True, False])),
        cbitpos=draw(st.none() | st.integers(0, 63)),
        reduced_phys_bits=draw(st.none() | st.integers(0, 63)),
        guest_visible_workarounds=draw(st.none() | _b64),
        id_block=draw(st.none() | _b64),
        id_auth=draw(st.none() | _b64),
        host_data=draw(st.none() | _b64),
        author_key=draw(st.sampled_from([None, True, False])),
        vcek=draw(st.sampled_from([None, True, False])),
    )


_fw_cfg = st.builds(
    FwCfgEntry,
    name=_names.map(lambda s: "opt/" + s),
    value=_safe_text.filter(lambda s: s.strip() == s),
) | st.builds(FwCfgEntry, name=_names.map(lambda s: "opt/" + s), file=_path)

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
    boot_devs=st.lists(st.sampled_from(["hd", "cdrom", "network", "fd"]), max_size=3).map(tuple),
)
_pci = st.builds(
    PciAddress,
    bus=st.integers(0, 0xFF),
    slot=st.integers(0, 0x1F),
    function=st.integers(0, 7),
    multifunction=st.sampled_from([None, True, False]),
)
_addresses = (
    st.none()
    | _pci
    | st.builds(
        DriveAddress, controller=st.integers(0, 3), bus=st.integers(0, 1), unit=st.integers(0, 5)
    )
)

_disks = st.builds(
    DiskConfig,
    source=_path,
    target_dev=st.sampled_from(["vda", "vdb", "sda", "hdc"]),
    target_bus=st.sampled_from([None, "virtio", "sata"]),
    driver_type=st.sampled_from([None, "raw", "qcow2"]),
    readonly=st.booleans(),
    boot_order=st.none() | st.integers(1, 9),
    address=_addresses,
)
_controllers = st.one_of(
    st.builds(ControllerConfig, type=st.just("usb"), model=st.sampled_from(["qemu-xhci", "none"])),
    st.builds(ControllerConfig, type=st.just("sata"), address=st.none() | _pci),
    st.builds(
        ControllerConfig,
        type=st.just("pci"),
        index=st.integers(1, 16),
        model=st.just("pcie-root-port"),
        address=st.none() | _pci,
        chassis=st.none() | st.integers(1, 16),
        port=st.none() | st.integers(8, 64),
    ),
)
_serials = st.one_of(
    st.builds(SerialConfig, type=st.just("file"), path=_path),
    st.builds(SerialConfig, type=st.just("pty"), port=st.none() | st.integers(0, 3)),
    st.builds(
        SerialConfig,
        type=st.just("pty"),
        log_file=_path,
        log_append=st.none() | st.booleans(),
    ),
)

domains_any = st.builds(
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
    fw_cfg=st.lists(_fw_cfg, max_size=2).map(tuple),
    emulator=st.none() | _path,
    disks=st.lists(_disks, max_size=3).map(tuple),
    serials=st.lists(_serials, max_size=2).map(tuple),
    controllers=st.lists(_controllers, max_size=3).map(tuple),
    memballoon=st.none()
    | st.builds(BalloonConfig, model=st.sampled_from(["virtio", "none"]), address=st.none() | _pci),
    acpi=st.booleans(),
    clock_offset=st.sampled_from([None, "utc", "localtime"]),
    current_memory_kib=st.none(),
)
domains = st.one_of(
    domains_any,
    st.builds(
        lambda d, current: dataclasses.replace(d, current_memory_kib=min(current, d.memory_kib)),
        domains_any,
        st.integers(1, 2**20),
    ),
)
