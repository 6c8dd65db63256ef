"""Domain XMLs the command-line tests share: the device configurations an SEV guest uses, each
in the shape libvirt's own tests (tests/qemuxml2argvdata) and ``virsh dumpxml`` give them.

``LIBVIRT_CASES`` are domains libvirt itself can turn into a command line on this machine
(``type='qemu'``, no launch security); ``SEV_CASES`` are this project's equivalents of
libvirt's launch-security-sev*.xml test domains.
"""

from __future__ import annotations

UUID = "c7a5fdbd-edaf-9455-926a-d65c16db1809"
DH_CERT = "AQAAAAAOAAAAQAAAAAOAAAAQAAAAAOAAAAQAAAAAOAAAAQAAAAAOAAA"
SESSION = "IHAVENOIDEABUTJUSTPROVIDINGASTRING"


def domain(
    *,
    machine: str = "pc-q35-7.2",
    os: str = "",
    top: str = "",
    devices: str = "",
    tail: str = "",
    name: str = "QEMUGuest1",
    virt: str = "qemu",
    memory: str = "<memory unit='KiB'>219100</memory>",
    vcpus: int = 1,
) -> str:
    return (
        f"<domain type='{virt}'><name>{name}</name><uuid>{UUID}</uuid>{memory}"
        f"<vcpu placement='static'>{vcpus}</vcpu>"
        f"<os><type arch='x86_64' machine='{machine}'>hvm</type>{os}</os>{top}"
        "<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>"
        f"{devices}</devices>{tail}</domain>"
    )


def disk(
    dev: str, bus: str, path: str, *, kind: str = "file", device: str = "disk", extra: str = ""
) -> str:
    source = f"<source file='{path}'/>" if kind == "file" else f"<source dev='{path}'/>"
    return (
        f"<disk type='{kind}' device='{device}'><driver name='qemu' type='raw'/>{source}"
        f"<target dev='{dev}' bus='{bus}'/>{extra}</disk>"
    )


def pci(bus: int, slot: int, function: int = 0, multifunction: bool = False) -> str:
    multi = " multifunction='on'" if multifunction else ""
    return (
        f"<address type='pci' domain='0x0000' bus='0x{bus:02x}' slot='0x{slot:02x}' "
        f"function='0x{function:x}'{multi}/>"
    )


NO_DEFAULTS = "<controller type='usb' model='none'/><memballoon model='none'/>"
ACPI = "<features><acpi/></features>"
KERNEL = "<kernel>/vmlinuz</kernel><initrd>/initrd</initrd><cmdline>console=ttyS0</cmdline>"
OVMF = "<loader readonly='yes' type='rom'>/usr/share/OVMF/OVMF.amdsev.fd</loader>"
PFLASH = "<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>"

# libvirt's dumpxml of the "q35-sata-block-virtio-pty" domain below: every default device and
# address written out, as a user copies it from one host to another
DUMPED_DEVICES = (
    disk(
        "vda",
        "virtio",
        "/img/disk.img",
        extra=pci(2, 0),
    )
    + disk(
        "sda",
        "sata",
        "/dev/loop0",
        kind="block",
        extra="<address type='drive' controller='0' bus='0' target='0' unit='0'/>",
    )
    + f"<controller type='usb' index='0' model='qemu-xhci'>{pci(1, 0)}</controller>"
    f"<controller type='sata' index='0'>{pci(0, 0x1F, 2)}</controller>"
    "<controller type='pci' index='0' model='pcie-root'/>"
    + "".join(
        f"<controller type='pci' index='{n}' model='pcie-root-port'><model name='pcie-root-port'/>"
        f"<target chassis='{n}' port='0x{7 + n:x}'/>{pci(0, 1, n - 1, n == 1)}</controller>"
        for n in range(1, 5)
    )
    + "<serial type='pty'><target type='isa-serial' port='0'><model name='isa-serial'/></target></serial>"
    "<console type='pty'><target type='serial' port='0'/></console>"
    "<input type='mouse' bus='ps2'/><input type='keyboard' bus='ps2'/><audio id='1' type='none'/>"
    f"<memballoon model='virtio'>{pci(3, 0)}</memballoon>"
)

LIBVIRT_CASES = {
    "q35-sata-block-virtio-pty": domain(
        os=KERNEL + "<boot dev='hd'/>",
        top=ACPI + "<clock offset='utc'/>",
        devices=disk("sda", "sata", "/dev/loop0", kind="block")
        + disk("vda", "virtio", "/img/disk.img")
        + "<serial type='pty'/><serial type='file'><source path='/var/log/g.log'/></serial>"
        "<console type='pty'/>",
    ),
    "q35-dumped": domain(os=KERNEL, top=ACPI, devices=DUMPED_DEVICES),
    "pc-ide-sata-cdrom": domain(
        machine="pc-i440fx-7.2",
        devices=disk("hda", "ide", "/img/a.img")
        + disk("sda", "sata", "/img/b.img")
        + disk("hdc", "ide", "/img/c.iso", device="cdrom", extra="<readonly/>")
        + "<serial type='pty'/>",
    ),
    "pc-defaults": domain(
        machine="pc-i440fx-7.2",
        devices=disk("vda", "virtio", "/img/v.img")
        + disk("sda", "sata", "/img/s.img")
        + "<serial type='file'><source path='/var/log/s.log'/></serial><serial type='pty'/>",
    ),
    "q35-boot-cdrom-first": domain(
        os="<boot dev='cdrom'/><boot dev='hd'/>",
        devices=disk("vda", "virtio", "/img/v.img", extra="<readonly/>")
        + disk("sdc", "sata", "/img/c.iso", device="cdrom"),
    ),
    "q35-boot-per-device": domain(
        devices=disk("vda", "virtio", "/img/a.img", extra="<boot order='2'/>")
        + disk("sda", "sata", "/img/b.img", extra="<boot order='1'/>"),
    ),
    "q35-pflash-nvram": domain(
        top=ACPI,
        os=PFLASH + "<nvram>/var/lib/vars.fd</nvram>",
        devices=disk("vda", "virtio", "/img/v.img"),
    ),
    "q35-pflash-stateless": domain(
        top=ACPI, os=PFLASH.replace("type='pflash'", "type='pflash' stateless='yes'")
    ),
    "q35-nine-virtio-disks": domain(
        devices="".join(disk(f"vd{c}", "virtio", f"/img/{c}.img") for c in "abcdefghi")
        + NO_DEFAULTS
    ),
    "q35-no-devices": domain(devices=NO_DEFAULTS),
    "q35-disk-order": domain(
        devices=disk("vdb", "virtio", "/img/b.img")
        + disk("vda", "virtio", "/img/a.img")
        + disk("sdb", "sata", "/img/s.img")
    ),
    "q35-qcow2-block-cdrom": domain(
        devices=disk("vda", "virtio", "/img/a.qcow2").replace("type='raw'", "type='qcow2'")
        + disk("sda", "sata", "/dev/loop1", kind="block", device="cdrom")
    ),
    "q35-serial-forms": domain(
        top="<clock offset='localtime'/>",
        devices="<serial type='file'><source path='/var/log/a,b.log' append='on'/>"
        "<log file='/var/log/l,og' append='off'/><target port='1'/></serial>"
        "<serial type='null'/><serial type='pty'/>",
    ),
    "q35-cpu-smp-rom": domain(
        vcpus=4,
        memory="<memory unit='MiB'>2048</memory>",
        top="<cpu mode='custom' match='exact'><model fallback='forbid'>qemu64</model></cpu>",
        os=OVMF + "<kernel>/k</kernel><initrd>/i</initrd><cmdline>a b,c</cmdline>",
    ),
    "q35-console-only": domain(devices="<console type='pty'/>"),
}


def sev(policy: str = "0x0001", kernel_hashes: str = "") -> str:
    return (
        f"<launchSecurity type='sev'{kernel_hashes}><cbitpos>47</cbitpos>"
        f"<reducedPhysBits>1</reducedPhysBits><policy>{policy}</policy>"
        f"<dhCert>{DH_CERT}</dhCert><session>{SESSION}</session></launchSecurity>"
    )


SEV_CASES = {
    # launch-security-sev.xml: an i440fx guest with an IDE block disk at drive 0:0:0
    "sev-ide-block": domain(
        virt="kvm",
        machine="pc-i440fx-7.2",
        os="<boot dev='hd'/>",
        top="<clock offset='utc'/>",
        devices=disk(
            "hda",
            "ide",
            "/dev/HostVG/QEMUGuest1",
            kind="block",
            extra="<address type='drive' controller='0' bus='0' target='0' unit='0'/>",
        )
        + "<controller type='usb' index='0'/><controller type='ide' index='0'/>"
        "<controller type='pci' index='0' model='pci-root'/><input type='mouse' bus='ps2'/>"
        "<input type='keyboard' bus='ps2'/><memballoon model='none'/>",
        tail=sev(),
    ),
    # launch-security-sev-direct.xml: measured direct kernel boot, no USB, no balloon
    "sev-direct": domain(
        virt="kvm",
        machine="pc-i440fx-7.2",
        os=KERNEL,
        devices=NO_DEFAULTS,
        tail=sev(kernel_hashes=" kernelHashes='yes'"),
    ),
    # the common q35 SEV guest: OVMF, a SATA block disk, a virtio disk, a pty console
    "sev-q35-sata-virtio-pty": domain(
        virt="kvm",
        os=OVMF + KERNEL,
        top=ACPI,
        devices=disk("sda", "sata", "/dev/loop0", kind="block")
        + disk("vda", "virtio", "/img/disk.img")
        + "<serial type='pty'/>",
        tail=sev(policy="0x0003", kernel_hashes=" kernelHashes='yes'"),
    ),
    # SEV-ES, two vCPUs, an IDE CD-ROM on i440fx
    "sev-es-pc-cdrom": domain(
        virt="kvm",
        machine="pc-i440fx-7.2",
        vcpus=2,
        os=OVMF,
        devices=disk("hdc", "ide", "/img/boot.iso", device="cdrom")
        + disk("vda", "virtio", "/img/disk.img")
        + "<serial type='pty'/>",
        tail=sev(policy="0x0007"),
    ),
}


GVW = "AAAAAAAAAAAAAAAAAAAAAA=="  # 16 zero bytes
ID_BLOCK = "SUQ" + "A" * 125  # 96 bytes of base64, as <idBlock> takes it
HOST_DATA = "SE9TVERBVEE" + "A" * 32 + "="  # 32 bytes


def snp(policy: str = "<policy>0x00030000</policy>", attrs: str = "", extra: str = "") -> str:
    return (
        f"<launchSecurity type='sev-snp'{attrs}><cbitpos>47</cbitpos>"
        f"<reducedPhysBits>1</reducedPhysBits>{policy}{extra}</launchSecurity>"
    )


#: Equivalents of libvirt 10.5's launch-security-sev-snp*.xml (pflash OVMF.amdsev.fd, q35).
SNP_CASES = {
    # launch-security-sev-snp.xml's shape: every element and both attributes
    "snp-full": domain(
        virt="kvm",
        machine="pc-q35-7.2",
        top=ACPI,
        os=PFLASH.replace("type='pflash'", "type='pflash' stateless='yes'"),
        devices=disk("vda", "virtio", "/img/disk.img"),
        tail=snp(
            attrs=" authorKey='yes' vcek='no'",
            extra=f"<guestVisibleWorkarounds>{GVW}</guestVisibleWorkarounds>"
            f"<idBlock>{ID_BLOCK}</idBlock><idAuth>QVVUSA==</idAuth>"
            f"<hostData>{HOST_DATA}</hostData>",
        ),
    ),
    # the sevlaunch SNP guest: measured direct kernel boot, QEMU's default policy
    "snp-direct-default-policy": domain(
        virt="kvm",
        os=OVMF + KERNEL,
        top=ACPI,
        devices=disk("vda", "virtio", "/img/disk.img") + "<serial type='pty'/>",
        tail=snp(policy="", attrs=" kernelHashes='yes'"),
    ),
}
