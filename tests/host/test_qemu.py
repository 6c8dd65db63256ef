"""The host's QEMU command line is libvirt 9.0's for the same XML.

Against Debian's libvirt itself (``virsh domxml-to-native qemu-argv``, skipped where it cannot
run): every device configuration an SEV guest uses gives the same argv, character for
character. SEV domains (libvirt refuses SEV without the hardware) add exactly what libvirt's
qemuBuildSEVCommandLine adds, as its tests/qemuxml2argvdata/launch-security-sev*.args show:
``confidential-guest-support=lsec0`` after the memory backend and the ``sev-guest`` object
before ``-sandbox``. And ``sevlaunch-vmm`` accepts every one of these command lines.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from sevlaunch.host.domxml import Domain
from sevlaunch.host.qemu import LaunchPaths, PlannedFile, build_launch_plan
from sevlaunch.host.secrets import Secret
from sevlaunch.host.secretstore import SecretStore
from sevlaunch.vmm.cmdline import parse_cmdline
from tests.host import libvirt
from tests.host.qemu.cases import (
    DH_CERT,
    GVW,
    HOST_DATA,
    ID_BLOCK,
    LIBVIRT_CASES,
    SESSION,
    SEV_CASES,
    SNP_CASES,
)

DIR = "/var/lib/sevlaunch/run/c7a5fdbd"
PATHS = LaunchPaths(lib_dir=DIR, monitor_socket=f"{DIR}/qmp.sock")


@pytest.fixture(scope="module")
def reference() -> Iterator[libvirt.LibvirtReference]:
    reason = libvirt.unavailable()
    if reason is not None:
        pytest.skip(reason)
    ref = libvirt.LibvirtReference()
    yield ref
    ref.close()


def ours(xml: str, lib_dir: str = DIR) -> list[str]:
    paths = LaunchPaths(lib_dir=lib_dir, monitor_socket=f"{lib_dir}/monitor.sock")
    return list(build_launch_plan(Domain.from_xml(xml), paths).argv)


@pytest.mark.parametrize("case", sorted(LIBVIRT_CASES))
def test_the_argv_is_libvirts(reference: libvirt.LibvirtReference, case: str) -> None:
    expected = reference.argv(LIBVIRT_CASES[case])
    assert ours(LIBVIRT_CASES[case], libvirt.lib_dir(expected)) == expected


def without_sev(xml: str) -> str:
    return re.sub(r"<launchSecurity.*</launchSecurity>", "", xml).replace(
        "type='kvm'", "type='qemu'"
    )


@pytest.mark.parametrize("case", sorted(SEV_CASES))
def test_an_sev_domain_adds_what_libvirts_sev_command_line_adds(
    reference: libvirt.LibvirtReference, case: str
) -> None:
    xml = SEV_CASES[case]
    plain = reference.argv(without_sev(xml))
    lib_dir = libvirt.lib_dir(plain)
    argv = ours(xml, lib_dir)
    sev = json.loads(argv[argv.index("-sandbox") - 1])
    expected = list(plain)
    machine = expected.index("-machine") + 1
    expected[machine] = expected[machine].replace(
        "memory-backend=pc.ram", "memory-backend=pc.ram,confidential-guest-support=lsec0"
    )
    expected[expected.index("-accel") + 1] = "kvm"
    expected[expected.index("-sandbox") : expected.index("-sandbox")] = [
        "-object",
        argv[argv.index("-sandbox") - 1],
    ]
    assert argv == expected
    assert sev["qom-type"] == "sev-guest"
    assert sev["dh-cert-file"] == f"{lib_dir}/dh_cert.base64"


def test_the_sev_object_is_libvirts_to_the_character() -> None:
    """launch-security-sev-direct.x86_64-latest.args: keys, order, types, the blob paths."""
    argv = ours(SEV_CASES["sev-direct"], "/var/lib/libvirt/qemu/domain--1-QEMUGuest1")
    assert argv[argv.index("-sandbox") - 2 : argv.index("-sandbox")] == [
        "-object",
        '{"qom-type":"sev-guest","id":"lsec0","cbitpos":47,"reduced-phys-bits":1,"policy":1,'
        '"dh-cert-file":"/var/lib/libvirt/qemu/domain--1-QEMUGuest1/dh_cert.base64",'
        '"session-file":"/var/lib/libvirt/qemu/domain--1-QEMUGuest1/session.base64",'
        '"kernel-hashes":true}',
    ]
    machine = argv[argv.index("-machine") + 1]
    assert (
        machine
        == "pc-i440fx-7.2,usb=off,dump-guest-core=off,memory-backend=pc.ram,confidential-guest-support=lsec0"
    )


@pytest.mark.parametrize("case", sorted(SNP_CASES))
def test_an_snp_domain_adds_what_libvirts_snp_command_line_adds(
    reference: libvirt.LibvirtReference, case: str
) -> None:
    """libvirt 10.5's qemuBuildSEVSNPCommandLine adds what its SEV one adds (its
    launch-security-sev-snp.x86_64-latest.args): the machine's confidential-guest-support, KVM,
    the ``sev-snp-guest`` object before ``-sandbox``; the rest is libvirt 9.0's own argv."""
    xml = SNP_CASES[case]
    plain = reference.argv(without_sev(xml))
    lib_dir = libvirt.lib_dir(plain)
    argv = ours(xml, lib_dir)
    expected = list(plain)
    machine = expected.index("-machine") + 1
    expected[machine] = expected[machine].replace(
        "memory-backend=pc.ram", "memory-backend=pc.ram,confidential-guest-support=lsec0"
    )
    expected[expected.index("-accel") + 1] = "kvm"
    obj = argv[argv.index("-sandbox") - 1]
    expected[expected.index("-sandbox") : expected.index("-sandbox")] = ["-object", obj]
    assert argv == expected
    assert json.loads(obj)["qom-type"] == "sev-snp-guest"


@pytest.fixture(scope="module")
def snp_reference() -> Iterator[libvirt.LibvirtReference]:
    reason = libvirt.unavailable() or libvirt.older_than((10, 5), "defines no sev-snp")
    if reason is not None:
        pytest.skip(reason)
    ref = libvirt.LibvirtReference()
    yield ref
    ref.close()


@pytest.mark.parametrize("case", sorted(SNP_CASES))
def test_an_snp_domain_is_libvirts_own_command_line(
    snp_reference: libvirt.LibvirtReference, case: str
) -> None:
    """Where libvirt 10.5+ is installed, its own argv for the SNP domain, whole."""
    expected = snp_reference.argv(SNP_CASES[case])
    assert ours(SNP_CASES[case], libvirt.lib_dir(expected)) == expected


def test_the_snp_object_is_libvirts_to_the_character() -> None:
    """launch-security-sev-snp.x86_64-latest.args: keys, order, types (policy in decimal, the
    base64 text as given, two true booleans), and -machine's confidential-guest-support."""
    argv = ours(SNP_CASES["snp-full"], "/var/lib/libvirt/qemu/domain--1-QEMUGuest1")
    assert argv[argv.index("-sandbox") - 2 : argv.index("-sandbox")] == [
        "-object",
        '{"qom-type":"sev-snp-guest","id":"lsec0","cbitpos":47,"reduced-phys-bits":1,'
        f'"policy":196608,"guest-visible-workarounds":"{GVW}","id-block":"{ID_BLOCK}",'
        f'"id-auth":"QVVUSA==","host-data":"{HOST_DATA}",'
        '"author-key-enabled":true,"vcek-disabled":true}',
    ]
    machine = argv[argv.index("-machine") + 1]
    assert machine == (
        "pc-q35-7.2,usb=off,dump-guest-core=off,memory-backend=pc.ram,"
        "confidential-guest-support=lsec0,pflash0=libvirt-pflash0-format"
    )


def test_the_plan_writes_the_blobs_and_libvirts_master_key_private() -> None:
    plan = build_launch_plan(Domain.from_xml(SEV_CASES["sev-direct"]), PATHS, master_key=b"k" * 32)
    assert plan.files == (
        PlannedFile(f"{DIR}/master-key.aes", b"k" * 32),
        PlannedFile(f"{DIR}/dh_cert.base64", DH_CERT.encode()),
        PlannedFile(f"{DIR}/session.base64", SESSION.encode()),
    )
    assert all(f.mode == 0o600 for f in plan.files)
    master = json.loads(plan.argv[plan.argv.index("-S") + 2])
    assert master == {
        "qom-type": "secret",
        "id": "masterKey0",
        "format": "raw",
        "file": f"{DIR}/master-key.aes",
    }


def test_stored_secrets_are_the_blobs_in_base64() -> None:
    xml = SEV_CASES["sev-direct"].replace(
        f"<dhCert>{DH_CERT}</dhCert><session>{SESSION}</session>", ""
    )
    ref = "0a3e0a8c-2f54-4b5c-9d1e-6a7a2c1f0b11"
    xml = xml.replace(
        "<devices>",
        "<metadata><sevlaunch:launchSecurity xmlns:sevlaunch='https://sevlaunch.dev/xmlns/domain/1'>"
        f"<sevlaunch:dhCertSecret uuid='{ref}'/><sevlaunch:sessionSecret uuid='{ref}'/>"
        "</sevlaunch:launchSecurity></metadata><devices>",
    )
    secrets = SecretStore()
    secret = secrets.define(Secret(private=True))
    assert secret.uuid is not None
    secrets.set_value(secret.uuid, b"\x01blob")
    domain = Domain.from_xml(xml.replace(ref, str(secret.uuid)))
    plan = build_launch_plan(domain, PATHS, resolve_secret=secrets.value)
    assert [f.content for f in plan.files[1:]] == [b"AWJsb2I=", b"AWJsb2I="]


@pytest.mark.parametrize("case", sorted(LIBVIRT_CASES | SEV_CASES | SNP_CASES))
def test_sevlaunch_vmm_takes_every_command_line(case: str) -> None:
    xml = {**LIBVIRT_CASES, **SEV_CASES, **SNP_CASES}[case]
    config = parse_cmdline(ours(xml)[1:])
    assert config.start_paused
    assert config.no_shutdown
    assert [q.path for q in config.qmp] == [f"{DIR}/monitor.sock"]
    assert len(config.disks) == xml.count("<disk ")
    assert len(config.serials) == max(xml.count("<serial "), xml.count("<console "))
    assert (config.sev_guest is not None) == ("<launchSecurity type='sev'" in xml)
    assert (config.snp_guest is not None) == ("<launchSecurity type='sev-snp'" in xml)


def test_a_domain_without_a_serial_port_gets_a_logged_console() -> None:
    """libvirt gives such a domain no serial port; the host logs one, as <log file> would."""
    xml = LIBVIRT_CASES["q35-no-devices"]
    paths = LaunchPaths(
        lib_dir=DIR, monitor_socket=f"{DIR}/qmp.sock", log_dir="/state/log/QEMUGuest1"
    )
    argv = list(build_launch_plan(Domain.from_xml(xml), paths).argv)
    assert argv[argv.index("-audiodev") - 4 : argv.index("-audiodev")] == [
        "-chardev",
        "null,id=charserial0,logfile=/state/log/QEMUGuest1/console.log,logappend=on",
        "-device",
        '{"driver":"isa-serial","chardev":"charserial0","id":"serial0","index":0}',
    ]
    assert ours(xml).count("-chardev") == 1  # the monitor only: libvirt's argv


def test_pidfile_and_daemonize_come_last() -> None:
    paths = LaunchPaths(lib_dir=DIR, monitor_socket=f"{DIR}/qmp.sock", pidfile=f"{DIR}/qemu.pid")
    argv = build_launch_plan(
        Domain.from_xml(LIBVIRT_CASES["q35-no-devices"]), paths, daemonize=True
    ).argv
    assert argv[-3:] == ("-pidfile", f"{DIR}/qemu.pid", "-daemonize")
    assert Path(argv[0]).name == "qemu-system-x86_64"
