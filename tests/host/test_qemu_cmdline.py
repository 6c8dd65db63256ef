"""The QEMU command line for a domain: libvirt's shape, exact argv, blob files planned 0600."""

from __future__ import annotations

import base64
import dataclasses
import importlib
import json
import uuid

import pytest

from sevlaunch.errors import DomainXMLError, SecretError
from sevlaunch.host.domxml import DiskConfig, Domain, LaunchSecurity, Loader, Nvram, SerialConfig
from sevlaunch.host.qemu_cmdline import (
    HostSevDefaults,
    LaunchPaths,
    LaunchPlan,
    PlannedFile,
    build_launch_plan,
)
from sevlaunch.host.secrets import Secret
from sevlaunch.host.secretstore import SecretStore
from tests.host.domxml.samples import PLAIN, SEV_DIRECT, SEV_ES, SEV_LOADER, SEV_SNP

LIBVIRT_DIR = "/var/lib/libvirt/qemu/domain--1-QEMUGuest1"
LIBVIRT_PATHS = LaunchPaths(lib_dir=LIBVIRT_DIR, monitor_socket=f"{LIBVIRT_DIR}/monitor.sock")
DIR = "/var/lib/sevlaunch/domains/sev-guest"
PATHS = LaunchPaths(lib_dir=DIR, monitor_socket=f"{DIR}/qmp.sock", pidfile=f"{DIR}/qemu.pid")
DH_REF = uuid.UUID("0a3e0a8c-2f54-4b5c-9d1e-6a7a2c1f0b11")
SESSION_REF = uuid.UUID("5b7f3c11-8d2e-4c19-a0d4-f1e2d3c4b5a6")


def monitor(path: str) -> list[str]:
    return [
        "-chardev",
        f"socket,id=charmonitor,path={path},server=on,wait=off",
        "-mon",
        "chardev=charmonitor,id=monitor,mode=control",
    ]


def test_sev_direct_kernel_boot_matches_libvirt() -> None:
    plan = build_launch_plan(Domain.from_xml(SEV_DIRECT), LIBVIRT_PATHS)
    # The -m, memory backend and sev-guest lines are character for character those of
    # libvirt's tests/qemuxmlconfdata/launch-security-sev-direct.x86_64-latest.args.
    assert plan.argv == (
        "/usr/bin/qemu-system-x86_64",
        "-name",
        "guest=QEMUGuest1,debug-threads=on",
        "-S",
        "-machine",
        "pc-q35-8.2,usb=off,dump-guest-core=off,memory-backend=pc.ram,"
        "confidential-guest-support=lsec0",
        "-accel",
        "kvm",
        "-cpu",
        "qemu64",
        "-m",
        "size=219136k",
        "-object",
        '{"qom-type":"memory-backend-ram","id":"pc.ram","size":224395264}',
        "-overcommit",
        "mem-lock=off",
        "-smp",
        "1,sockets=1,cores=1,threads=1",
        "-uuid",
        "c7a5fdbd-edaf-9455-926a-d65c16db1809",
        "-display",
        "none",
        "-no-user-config",
        "-nodefaults",
        *monitor(f"{LIBVIRT_DIR}/monitor.sock"),
        "-kernel",
        "/vmlinuz",
        "-initrd",
        "/initrd",
        "-append",
        "runme",
        "-object",
        '{"qom-type":"sev-guest","id":"lsec0","cbitpos":47,"reduced-phys-bits":1,"policy":1,'
        '"dh-cert-file":"/var/lib/libvirt/qemu/domain--1-QEMUGuest1/dh_cert.base64",'
        '"session-file":"/var/lib/libvirt/qemu/domain--1-QEMUGuest1/session.base64",'
        '"kernel-hashes":true}',
    )
    assert plan.files == (
        PlannedFile(
            f"{LIBVIRT_DIR}/dh_cert.base64",
            b"AQAAAAAOAAAAQAAAAAOAAAAQAAAAAOAAAAQAAAAAOAAAAQAAAAAOAAA",
            0o600,
        ),
        PlannedFile(f"{LIBVIRT_DIR}/session.base64", b"IHAVENOIDEABUTJUSTPROVIDINGASTRING", 0o600),
    )
    assert plan.pidfile is None
    assert plan.monitor_socket == f"{LIBVIRT_DIR}/monitor.sock"


def sev_loader_store() -> SecretStore:
    store = SecretStore()
    store.define(Secret(uuid=DH_REF, private=True))
    store.define(Secret(uuid=SESSION_REF, private=True))
    store.set_value(DH_REF, b"\x01godh-cert")
    store.set_value(SESSION_REF, b"\x02session")
    return store


def test_sev_with_stateless_loader_disk_serial_and_stored_secrets() -> None:
    store = sev_loader_store()
    plan = build_launch_plan(
        Domain.from_xml(SEV_LOADER), PATHS, resolve_secret=store.value, daemonize=True
    )
    assert plan.argv == (
        "/usr/bin/sevlaunch-vmm",
        "-name",
        "guest=sev-guest,debug-threads=on",
        "-S",
        "-machine",
        "q35,usb=off,dump-guest-core=off,memory-backend=pc.ram,confidential-guest-support=lsec0",
        "-accel",
        "kvm",
        "-drive",
        "file=/usr/share/edk2/ovmf/OVMF.amdsev.fd,if=pflash,format=raw,unit=0,readonly=on",
        "-cpu",
        "host",
        "-m",
        "size=4194304k",
        "-object",
        '{"qom-type":"memory-backend-ram","id":"pc.ram","size":4294967296}',
        "-overcommit",
        "mem-lock=off",
        "-smp",
        "4,sockets=4,cores=1,threads=1",
        "-uuid",
        "4dea22b3-1d52-d8f3-2516-782e98ab3fa0",
        "-display",
        "none",
        "-no-user-config",
        "-nodefaults",
        *monitor(f"{DIR}/qmp.sock"),
        "-drive",
        "file=/var/lib/sevlaunch/images/data.img,format=raw,if=virtio,id=drive-virtio-disk0",
        "-chardev",
        "file,id=charserial0,path=/var/log/sevlaunch/sev-guest.log",
        "-serial",
        "chardev:charserial0",
        "-object",
        '{"qom-type":"sev-guest","id":"lsec0","cbitpos":51,"reduced-phys-bits":1,"policy":51,'
        f'"dh-cert-file":"{DIR}/dh_cert.base64","session-file":"{DIR}/session.base64"}}',
        "-pidfile",
        f"{DIR}/qemu.pid",
        "-daemonize",
    )
    assert plan.files == (
        PlannedFile(f"{DIR}/dh_cert.base64", base64.b64encode(b"\x01godh-cert")),
        PlannedFile(f"{DIR}/session.base64", base64.b64encode(b"\x02session")),
    )
    assert all(f.mode == 0o600 and f.path.startswith(DIR + "/") for f in plan.files)


def test_sev_es_rom_firmware_pty_console_and_kernel_hashes_off() -> None:
    plan = build_launch_plan(
        Domain.from_xml(SEV_ES),
        PATHS,
        host_sev=HostSevDefaults(cbitpos=51, reduced_phys_bits=1),
        emulator="/opt/qemu/bin/qemu-system-x86_64",
    )
    argv = list(plan.argv)
    assert argv[0] == "/opt/qemu/bin/qemu-system-x86_64"
    assert argv[argv.index("-bios") + 1] == "/usr/share/edk2/ovmf/OVMF.amdsev.fd"
    assert "pty,id=charserial0" in argv
    assert argv[argv.index("-serial") + 1] == "chardev:charserial0"
    assert argv[argv.index("-append") + 1] == "console=ttyS0 root=/dev/vda1"
    sev = json.loads(argv[len(argv) - 1 - argv[::-1].index("-object") + 1])
    assert sev == {
        "qom-type": "sev-guest",
        "id": "lsec0",
        "cbitpos": 51,
        "reduced-phys-bits": 1,
        "policy": 7,
        "dh-cert-file": f"{DIR}/dh_cert.base64",
        "session-file": f"{DIR}/session.base64",
        "kernel-hashes": False,
    }
    assert [f.content for f in plan.files] == [b"Z29kaA==", b"c2Vzc2lvbg=="]


def test_plain_domain_has_no_sev_parts() -> None:
    plan = build_launch_plan(
        Domain.from_xml(PLAIN), LaunchPaths(lib_dir="/run/p", monitor_socket="/run/p/m.sock")
    )
    assert plan.argv[:8] == (
        "/usr/bin/qemu-system-x86_64",
        "-name",
        "guest=plain,debug-threads=on",
        "-S",
        "-machine",
        "pc,usb=off,dump-guest-core=off,memory-backend=pc.ram",
        "-accel",
        "tcg",
    )
    assert "sev-guest" not in " ".join(plan.argv)
    assert plan.files == ()


def test_commas_are_escaped_in_key_value_options() -> None:
    domain = dataclasses.replace(
        Domain.from_xml(SEV_LOADER),
        name="a,b",
        disks=(DiskConfig(source="/img/x,y.img", target_dev="vdb"),),
        serials=(SerialConfig(type="file", path="/log/a,b.log"),),
    )
    paths = LaunchPaths(lib_dir="/run/a,b", monitor_socket="/run/a,b/qmp.sock")
    argv = build_launch_plan(domain, paths, resolve_secret=sev_loader_store().value).argv
    assert "guest=a,,b,debug-threads=on" in argv
    assert "file=/img/x,,y.img,format=raw,if=virtio,id=drive-virtio-disk1" in argv
    assert "file,id=charserial0,path=/log/a,,b.log" in argv
    assert "socket,id=charmonitor,path=/run/a,,b/qmp.sock,server=on,wait=off" in argv
    assert '"dh-cert-file":"/run/a,b/dh_cert.base64"' in argv[-1]  # JSON needs no escaping


def test_pflash_nvram_is_a_second_drive_unless_stateless() -> None:
    base = Domain.from_xml(SEV_ES)
    loader = Loader(path="/fw/CODE.fd", readonly=True, type="pflash")
    domain = dataclasses.replace(
        base, os=dataclasses.replace(base.os, loader=loader, nvram=Nvram(path="/vars/g_VARS.fd"))
    )
    argv = build_launch_plan(
        domain, PATHS, host_sev=HostSevDefaults(cbitpos=47, reduced_phys_bits=1)
    ).argv
    drives = [argv[i + 1] for i, word in enumerate(argv) if word == "-drive"]
    assert drives == [
        "file=/fw/CODE.fd,if=pflash,format=raw,unit=0,readonly=on",
        "file=/vars/g_VARS.fd,if=pflash,format=raw,unit=1",
    ]
    stateless = dataclasses.replace(
        domain,
        os=dataclasses.replace(domain.os, loader=dataclasses.replace(loader, stateless=True)),
    )
    argv = build_launch_plan(
        stateless, PATHS, host_sev=HostSevDefaults(cbitpos=47, reduced_phys_bits=1)
    ).argv
    assert argv.count("-drive") == 1


def test_memory_is_aligned_up_to_a_mebibyte() -> None:
    domain = dataclasses.replace(Domain.from_xml(PLAIN), memory_kib=1025)
    argv = build_launch_plan(domain, PATHS).argv
    assert argv[argv.index("-m") + 1] == "size=2048k"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"launch_security": LaunchSecurity(type="sev-snp", policy=0x30000)},
            "launch security type 'sev-snp' is not supported",
        ),
        ({"type": "xen"}, "domain type 'xen' is not handled by the QEMU driver"),
        ({"emulator": None}, "has no <emulator> and no QEMU binary was given"),
        (
            {"disks": (DiskConfig(source="/a.img", target_dev="sda", target_bus="sata"),)},
            "disk 'sda' (type 'file', device 'disk', bus 'sata') is not supported",
        ),
        ({"serials": (SerialConfig(type="tcp"),)}, "serial type 'tcp' is not supported"),
        (
            {"launch_security": LaunchSecurity(policy=1)},
            "gives no <cbitpos>/<reducedPhysBits> and the host's SEV capabilities are unknown",
        ),
    ],
)
def test_unsupported_configurations(change: dict[str, object], message: str) -> None:
    domain = dataclasses.replace(Domain.from_xml(SEV_ES), **change)  # type: ignore[arg-type]
    with pytest.raises(DomainXMLError) as caught:
        build_launch_plan(domain, PATHS)
    assert str(caught.value).startswith("unsupported configuration: ")
    assert message in str(caught.value)


def test_snp_sample_is_refused_by_the_driver() -> None:
    with pytest.raises(DomainXMLError, match="'sev-snp' is not supported"):
        build_launch_plan(Domain.from_xml(SEV_SNP), PATHS)


def test_loader_without_path_and_foreign_arch_are_refused() -> None:
    base = Domain.from_xml(SEV_DIRECT)
    no_path = dataclasses.replace(base, os=dataclasses.replace(base.os, loader=Loader()))
    with pytest.raises(DomainXMLError, match="firmware autoselection is not supported"):
        build_launch_plan(no_path, PATHS)
    arm = dataclasses.replace(base, os=dataclasses.replace(base.os, arch="aarch64"))
    with pytest.raises(DomainXMLError, match="architecture 'aarch64' is not supported"):
        build_launch_plan(arm, PATHS)


def test_secret_references_need_a_resolver_and_a_value() -> None:
    domain = Domain.from_xml(SEV_LOADER)
    with pytest.raises(DomainXMLError, match=f"names secret {DH_REF} for its dh_cert"):
        build_launch_plan(domain, PATHS)
    store = SecretStore()
    store.define(Secret(uuid=DH_REF))
    with pytest.raises(SecretError, match="does not have a value"):
        build_launch_plan(domain, PATHS, resolve_secret=store.value)
    with pytest.raises(SecretError, match="no secret with matching uuid"):
        build_launch_plan(domain, PATHS, resolve_secret=SecretStore().value)


def test_relative_paths_are_refused() -> None:
    with pytest.raises(DomainXMLError, match="lib_dir must be an absolute path"):
        LaunchPaths(lib_dir="run/x", monitor_socket="/run/x/m.sock")


def _vmm_parser() -> object:
    try:
        module = importlib.import_module("sevlaunch.vmm.cmdline")
    except ImportError:
        pytest.skip("sevlaunch.vmm.cmdline is not available")
    parse = getattr(module, "parse_cmdline", None)
    if parse is None:
        pytest.skip("sevlaunch.vmm.cmdline has no parse_cmdline")
    return parse


def _plan_for_vmm() -> LaunchPlan:
    return build_launch_plan(
        Domain.from_xml(SEV_LOADER),
        PATHS,
        resolve_secret=sev_loader_store().value,
    )


def test_the_emulated_hypervisor_parses_our_command_line() -> None:
    parse = _vmm_parser()
    assert callable(parse)
    plan = _plan_for_vmm()
    config = parse(list(plan.argv[1:]))
    assert config.name == "sev-guest"
    assert config.start_paused
    assert config.machine_type == "q35"
    assert config.firmware == "/usr/share/edk2/ovmf/OVMF.amdsev.fd"
    assert config.memory == 4 << 30
    assert config.smp.cpus == 4
    assert config.cpu_model == "host"
    assert [q.path for q in config.qmp] == [f"{DIR}/qmp.sock"]
    assert [(p.index, p.chardev.backend, p.chardev.path) for p in config.serials] == [
        (0, "file", "/var/log/sevlaunch/sev-guest.log")
    ]
    assert [(d.interface, d.file) for d in config.drives] == [
        ("virtio", "/var/lib/sevlaunch/images/data.img")
    ]
    assert config.pidfile == f"{DIR}/qemu.pid"
    sev = config.sev_guest
    assert (sev.id, sev.cbitpos, sev.reduced_phys_bits, sev.policy) == ("lsec0", 51, 1, 0x33)
    assert (sev.dh_cert_file, sev.session_file) == (
        f"{DIR}/dh_cert.base64",
        f"{DIR}/session.base64",
    )


def test_the_emulated_hypervisor_parses_direct_kernel_boot() -> None:
    parse = _vmm_parser()
    assert callable(parse)
    plan = build_launch_plan(Domain.from_xml(SEV_DIRECT), LIBVIRT_PATHS)
    config = parse(list(plan.argv[1:]))
    assert (config.kernel, config.initrd, config.append) == ("/vmlinuz", "/initrd", "runme")
    assert config.sev_guest.kernel_hashes is True
    assert config.memory == 219136 * 1024
