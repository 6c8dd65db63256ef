"""The option table's simple options: what is modelled and what is only recorded."""

from __future__ import annotations

import pytest

from sevlaunch.errors import CommandLineError
from sevlaunch.vmm.cmdline import parse_cmdline
from sevlaunch.vmm.cmdline.options import OPTIONS


def test_libvirts_always_there_options() -> None:
    cfg = parse_cmdline(
        [
            "-rtc", "base=localtime,driftfix=slew", "-no-shutdown", "-no-acpi",
            "-boot", "strict=on", "-uuid", "C7A5FDBD-EDAF-9455-926A-D65C16DB1809",
            "-audiodev", '{"id":"audio1","driver":"none"}', "-msg", "timestamp=on",
        ]
    )  # fmt: skip
    assert (cfg.rtc_base, cfg.no_shutdown, cfg.acpi, cfg.boot_strict) == (
        "localtime", True, False, True,
    )  # fmt: skip
    assert cfg.uuid == "c7a5fdbd-edaf-9455-926a-d65c16db1809"
    assert '-audiodev {"id":"audio1","driver":"none"}' in cfg.ignored


def test_machine_acpi_off_is_no_acpi() -> None:
    assert not parse_cmdline(["-machine", "q35,acpi=off"]).acpi
    assert parse_cmdline(["-machine", "q35"]).acpi


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-uuid", "not-a-uuid"], "Fail to parse UUID string."),
        (["-rtc", "base=yesterday"], "invalid datetime format"),
        (["-rtc", "speed=2"], "Invalid parameter 'speed'"),
        (["-boot", "strict=on,colour=red"], "Invalid parameter 'colour'"),
        (["-boot", "strict=maybe"], "expects 'on' or 'off'"),
    ],
)
def test_refusals(argv: list[str], message: str) -> None:
    with pytest.raises(CommandLineError, match=message):
        parse_cmdline(argv)


def test_every_option_says_whether_it_takes_an_argument() -> None:
    for name, (takes_arg, action) in OPTIONS.items():
        assert isinstance(takes_arg, bool), name
        assert callable(action), name


def test_accelerator_and_nographic_are_kept() -> None:
    assert parse_cmdline(["-accel", "kvm"]).accel == "kvm"
    assert parse_cmdline(["-enable-kvm"]).accel == "kvm"
    assert parse_cmdline([]).accel is None
    assert parse_cmdline(["-nographic"]).display == "none"  # libvirt's probe passes it
