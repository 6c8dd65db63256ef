"""The head of the command line as libvirt 9.0 writes it."""

from __future__ import annotations

import pytest

from sevlaunch.errors import DomainXMLError
from sevlaunch.host.domxml import Domain
from sevlaunch.host.qemu.machine import cpu_option, head_args, machine_opts
from tests.host.qemu.cases import ACPI, OVMF, PFLASH, domain


def args(xml: str) -> list[str]:
    return head_args(Domain.from_xml(xml), "/lib", "/lib/monitor.sock")


def value(argv: list[str], option: str) -> str:
    return argv[argv.index(option) + 1]


def test_memory_rounds_up_to_a_mebibyte_and_names_its_backend() -> None:
    argv = args(domain(memory="<memory unit='KiB'>219100</memory>"))
    assert value(argv, "-m") == "214"
    assert value(argv, "-overcommit") == "mem-lock=off"
    backend = argv[argv.index("-m") + 3]
    assert backend == '{"qom-type":"memory-backend-ram","id":"pc.ram","size":224395264}'


@pytest.mark.parametrize(
    ("cpu", "option"),
    [
        ("", "qemu64"),
        ("<cpu mode='host-passthrough'/>", "host,migratable=on"),
        ("<cpu mode='maximum'/>", "max"),
        ("<cpu mode='custom' match='exact'><model>EPYC-Rome</model></cpu>", "EPYC-Rome"),
    ],
)
def test_cpu_options(cpu: str, option: str) -> None:
    assert cpu_option(Domain.from_xml(domain(top=cpu, virt="kvm"))) == option


def test_host_model_is_refused_with_the_reason() -> None:
    with pytest.raises(DomainXMLError, match="host-model"):
        cpu_option(Domain.from_xml(domain(top="<cpu mode='host-model'/>")))


def test_acpi_rtc_boot_and_the_rom_loader() -> None:
    argv = args(domain(os=OVMF, top="<clock offset='localtime'/>"))
    assert value(argv, "-bios") == "/usr/share/OVMF/OVMF.amdsev.fd"
    assert value(argv, "-rtc") == "base=localtime"
    assert "-no-acpi" in argv
    assert argv[argv.index("-no-shutdown") :][:4] == [
        "-no-shutdown",
        "-no-acpi",
        "-boot",
        "strict=on",
    ]
    assert "-no-acpi" not in args(domain(top=ACPI))


def test_pflash_loader_and_nvram_are_blockdev_nodes_the_machine_names() -> None:
    d = Domain.from_xml(
        domain(
            top=ACPI,
            os=PFLASH + "<nvram>/v.fd</nvram>",
            tail="<launchSecurity type='sev'><policy>0x1</policy></launchSecurity>",
        )
    )
    assert machine_opts(d) == (
        "pc-q35-7.2,usb=off,dump-guest-core=off,memory-backend=pc.ram,"
        "confidential-guest-support=lsec0,pflash0=libvirt-pflash0-format,pflash1=libvirt-pflash1-format"
    )
    argv = head_args(d, "/lib", "/lib/m.sock")
    assert argv.count("-blockdev") == 4
    assert argv.index("-blockdev") < argv.index("-machine")


def test_the_name_escapes_commas_and_the_master_key_lives_in_the_domain_directory() -> None:
    argv = args(domain(name="a,b"))
    assert value(argv, "-name") == "guest=a,,b,debug-threads=on"
    master = argv[argv.index("-S") + 2]
    assert '"file":"/lib/master-key.aes"' in master
