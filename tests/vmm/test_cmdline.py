"""The QEMU command-line subset libvirt emits for SEV guests, and QEMU's refusals."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sevlaunch.errors import CommandLineError
from sevlaunch.vmm.cmdline import (
    ChardevConfig,
    DiskImage,
    DriveConfig,
    ObjectConfig,
    QmpEndpoint,
    SerialPort,
    SevGuestConfig,
    SmpConfig,
    check_cbitpos,
    parse_cmdline,
    split_opts,
)

LIBVIRT_JSON_SEV = json.dumps(
    {
        "qom-type": "sev-guest",
        "id": "lsec0",
        "cbitpos": 47,
        "reduced-phys-bits": 1,
        "policy": 1,
        "dh-cert-file": "/var/lib/libvirt/qemu/domain--1-QEMUGuest1/dh_cert.base64",
        "session-file": "/var/lib/libvirt/qemu/domain--1-QEMUGuest1/session.base64",
        "kernel-hashes": True,
    }
)


def read_args(name: str) -> list[str]:
    """A command line kept as libvirt's test data keeps one: an option and its argument a line."""
    argv: list[str] = []
    for line in (Path(__file__).parent / "data" / name).read_text().splitlines():
        option, _, argument = line.partition(" ")
        argv += [option, argument] if argument else [option]
    return argv


# What libvirt 9.0 (Debian 12) builds for a q35 SEV guest with a SATA block disk, a virtio file
# disk and a pty serial logged to a file: `virsh domxml-to-native qemu-argv` of such a domain,
# with the sev-guest object where libvirt's tests/qemuxml2argvdata/launch-security-sev*.args
# place it.
LIBVIRT_ARGV = read_args("libvirt-9.0-q35-sev.args")


def test_libvirt_command_line() -> None:
    cfg = parse_cmdline(LIBVIRT_ARGV)
    assert cfg.name == "QEMUGuest1"
    assert (cfg.start_paused, cfg.nodefaults, cfg.no_user_config, cfg.no_shutdown) == (True,) * 4
    assert cfg.machine_type == "pc-q35-7.2"
    assert ("memory-backend", "pc.ram") in cfg.machine_props
    assert cfg.sev_guest == SevGuestConfig(
        id="lsec0",
        cbitpos=47,
        reduced_phys_bits=1,
        policy=1,
        dh_cert_file="/var/lib/libvirt/qemu/domain--1-QEMUGuest1/dh_cert.base64",
        session_file="/var/lib/libvirt/qemu/domain--1-QEMUGuest1/session.base64",
        kernel_hashes=True,
    )
    assert cfg.firmware == "/usr/share/OVMF/OVMF.amdsev.fd"
    assert (cfg.kernel, cfg.initrd) == ("/boot/vmlinuz", "/boot/initrd.img")
    assert cfg.append == "console=ttyS0 root=/dev/vda,,x"  # -append is not QemuOpts syntax
    assert cfg.memory == 4 << 30
    assert cfg.smp == SmpConfig(4, 4, 1, 1, 4)
    assert cfg.cpu_model == "EPYC-Rome,x2apic=on"
    assert cfg.qmp == (QmpEndpoint(path="/run/qemu/g.monitor", server=True, wait=False),)
    assert cfg.serials == (
        SerialPort(
            0, ChardevConfig("charserial0", "pty", logfile="/var/log/g.console", logappend=True)
        ),
    )
    assert cfg.disks == (
        DiskImage("/dev/loop0", "ide-hd", "raw", False, "sata0-0-0", 1),
        DiskImage("/img/disk.img", "virtio-blk-pci", "raw", False, "virtio-disk0"),
    )
    assert (cfg.uuid, cfg.rtc_base, cfg.boot_strict, cfg.acpi) == (
        "c7a5fdbd-edaf-9455-926a-d65c16db1809", "utc", True, True,
    )  # fmt: skip
    assert cfg.display == "none"
    assert {o.id for o in cfg.objects} == {"masterKey0", "pc.ram"}
    assert {"-overcommit mem-lock=off", "-accel kvm", "-msg timestamp=on"} <= set(cfg.ignored)


def test_historic_key_value_syntax() -> None:
    cfg = parse_cmdline(
        [
            "-machine", "pc-1.0,accel=kvm,memory-encryption=sev0",
            "-object", "sev-guest,id=sev0,cbitpos=47,reduced-phys-bits=1,policy=0x1,"
            "dh-cert-file=/a/dh_cert.base64,session-file=/a/session.base64,kernel-hashes=on,"
            "handle=010,legacy-vm-type=on,sev-device=/run/sev.sock",
            "-qmp", "unix:/run/q,,1.sock,server,nowait",
            "-drive", "if=pflash,format=raw,unit=0,file=/fw/OVMF.fd,readonly=on",
            "-drive", "if=pflash,format=raw,unit=1,file=/fw/VARS.fd",
            "-drive", "file=/img/disk.sev,if=virtio,format=raw",
            "-m", "1.5G",
            "-smp", "cpus=2,maxcpus=4",
            "-pidfile", "/run/g.pid",
            "-daemonize",
        ]
    )  # fmt: skip
    sev = cfg.sev_guest
    assert sev is not None
    assert (sev.id, sev.cbitpos, sev.reduced_phys_bits, sev.policy, sev.handle) == (
        "sev0",
        47,
        1,
        1,
        8,
    )
    assert (sev.kernel_hashes, sev.legacy_vm_type, sev.sev_device) == (True, "on", "/run/sev.sock")
    assert cfg.qmp == (QmpEndpoint(path="/run/q,1.sock", server=True, wait=False),)
    assert (cfg.firmware, cfg.nvram) == ("/fw/OVMF.fd", "/fw/VARS.fd")
    assert cfg.drives == (DriveConfig("virtio", "/img/disk.sev", "raw"),)
    assert cfg.disks == (DiskImage("/img/disk.sev", "virtio-blk-pci", "raw"),)
    assert cfg.memory == 3 << 29
    assert cfg.smp == SmpConfig(2, 1, 1, 1, 4)
    assert (cfg.pidfile, cfg.daemonize) == ("/run/g.pid", True)


def test_defaults_without_sev() -> None:
    cfg = parse_cmdline([])
    assert (cfg.sev_guest, cfg.memory, cfg.start_paused, cfg.qmp) == (None, 128 << 20, False, ())


def test_monitor_on_an_inherited_fd() -> None:
    cfg = parse_cmdline(
        ["-chardev", "socket,id=m,fd=3,server=on,wait=off", "-mon", "chardev=m,mode=control"]
    )
    assert cfg.qmp == (QmpEndpoint(fd=3, server=True, wait=False),)


def test_sev_guest_not_referenced_by_the_machine_is_not_used() -> None:
    cfg = parse_cmdline(["-object", "sev-guest,id=s,cbitpos=47,reduced-phys-bits=1"])
    assert cfg.sev_guest is None


def error(argv: list[str]) -> CommandLineError:
    with pytest.raises(CommandLineError) as info:
        parse_cmdline(argv)
    return info.value


SEV = "sev-guest,id=s,cbitpos=47,reduced-phys-bits=1"
CGS = ["-machine", "q35,confidential-guest-support=s"]
RAM_OBJECT = '{"qom-type":"memory-backend-ram","id":"s","size":1}'
SEV_JSON = '{"qom-type":"sev-guest","id":"s",'
CGS_TYPE = (
    "Invalid parameter type for 'confidential-guest-support', expected: confidential-guest-support"
)
RPB = "sev_common_kvm_init: reduced_phys_bits check failed, it should be in the range of 1 to 63"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-foo"], "-foo: invalid option"),
        (["-m"], "-m: requires an argument"),
        (["-object", "sev-guest,id=s,cbitpos=x"], "Parameter 'cbitpos' expects integer"),
        (["-object", "sev-guest,id=s,policy=0x100000000"], "Parameter 'policy' expects uint32_t"),
        (["-object", "sev-guest,id=s,kernel-hashes=1"], "Parameter 'kernel-hashes' expects 'on' or 'off'"),
        (["-object", "sev-guest,id=s,legacy-vm-type=x"], "Parameter 'legacy-vm-type' does not accept value 'x'"),
        (["-object", "sev-guest,id=s,foo=1"], "Property 'sev-guest.foo' not found"),
        (["-object", "sev-guest,cbitpos=1"], "Parameter 'id' is missing"),
        (["-object", "bogus,id=b"], "invalid object type: bogus"),
        (["-object", SEV_JSON + '"cbitpos":"47"}'], "Parameter 'cbitpos' expects uint64"),
        (["-object", SEV_JSON + '"kernel-hashes":"on"}'], "for 'kernel-hashes', expected: boolean"),
        (["-object", SEV_JSON + '"session-file":1}'], "Invalid parameter type for 'session-file', expected: string"),
        (CGS, "Device 's' not found"),
        (["-object", RAM_OBJECT, *CGS], CGS_TYPE),
        (["-object", "sev-guest,id=s,cbitpos=47", *CGS], RPB + ", requested '0'"),
        (["-object", "sev-guest,id=s,reduced-phys-bits=64", *CGS], RPB + ", requested '64'"),
        (["-object", SEV, "-object", SEV], "attempt to add duplicate property 's' to object (type 'container')"),
        (["-m", "1X"], "-m 1X: Parameter 'size' expects a non-negative number below 2^64"),
        (["-display", "gtk"], "-display gtk: Display 'gtk' is not available."),
        (["-mon", "chardev=x,mode=control"], 'chardev "x" not found'),
        (["-device", "virtio-net"], "-device virtio-net: 'virtio-net' is not a valid device model name"),
        (["-smp", "2,maxcpus=1"], "Invalid CPU topology: maxcpus must be equal to or greater than smp"),
        (["-qmp", "tcp:localhost:4444"], "only unix:PATH monitors are emulated"),
    ],
)  # fmt: skip
def test_refusals_use_qemus_words(argv: list[str], message: str) -> None:
    assert message in str(error(argv))


def test_errors_name_the_option_as_qemus_location_does() -> None:
    err = error(["-object", "sev-guest,id=s,cbitpos=x"])
    assert str(err) == "-object sev-guest,id=s,cbitpos=x: Parameter 'cbitpos' expects integer"
    assert (err.option, err.value) == (
        "-object sev-guest,id=s,cbitpos=x",
        "sev-guest,id=s,cbitpos=x",
    )


def test_report_adds_the_program_name() -> None:
    assert error(["-foo"]).report() == "qemu-system-x86_64: -foo: invalid option"


def test_check_cbitpos_against_the_host() -> None:
    cfg = parse_cmdline(["-object", SEV, "-machine", "q35,confidential-guest-support=s"])
    check_cbitpos(cfg, 47)
    with pytest.raises(
        CommandLineError, match="cbitpos check failed, host '51' requested '47'"
    ) as info:
        check_cbitpos(cfg, 51)
    assert info.value.value == 47


def test_double_dash_options_are_accepted() -> None:
    assert parse_cmdline(["--name", "g", "--S"]).name == "g"


def test_objects_keep_their_properties() -> None:
    cfg = parse_cmdline(["-object", "memory-backend-memfd,id=m,size=1G,share=on"])
    assert cfg.objects == (
        ObjectConfig("memory-backend-memfd", "m", (("size", "1G"), ("share", "on"))),
    )


@given(st.lists(st.text(alphabet="ab=,", max_size=6), min_size=1, max_size=5))
def test_split_opts_round_trips_escaped_commas(values: list[str]) -> None:
    escaped = ",".join(f"k{i}=" + v.replace(",", ",,") for i, v in enumerate(values))
    assert split_opts(escaped) == [(f"k{i}", v) for i, v in enumerate(values)]


@given(st.lists(st.text(max_size=12), max_size=8))
def test_hostile_argv_only_raises_command_line_errors(argv: list[str]) -> None:
    with contextlib.suppress(CommandLineError):
        parse_cmdline(argv)
