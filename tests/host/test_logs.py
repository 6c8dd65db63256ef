"""A domain's guest output stays in its own log directory: the define-time rule, the default
logs of pty ports, and where the console is read."""

from __future__ import annotations

from pathlib import Path

import pytest

from sevlaunch.errors import DomainXMLError
from sevlaunch.host.domxml import Domain, SerialConfig
from sevlaunch.host.logs import (
    SerialOutput,
    check_log_paths,
    console_path,
    log_dir,
    serial_outputs,
)

LOGS = Path("/state/log/vm")


def domain(*serials: SerialConfig) -> Domain:
    return Domain(name="vm", memory_kib=1024, serials=serials)


def test_the_log_directory_is_named_after_the_domain() -> None:
    assert log_dir(Path("/state"), "vm") == LOGS


def test_pty_ports_get_default_logs_and_files_keep_theirs() -> None:
    d = domain(
        SerialConfig(type="pty"),
        SerialConfig(type="file", path=f"{LOGS}/s1.log"),
        SerialConfig(type="pty", log_file=f"{LOGS}/two.log", log_append=False),
        SerialConfig(type="null"),
    )
    assert serial_outputs(d, LOGS) == [
        SerialOutput(0, None, f"{LOGS}/console.log", True),
        SerialOutput(1, f"{LOGS}/s1.log", None, False),
        SerialOutput(2, None, f"{LOGS}/two.log", False),
        SerialOutput(3, None, f"{LOGS}/serial3.log", True),
    ]
    check_log_paths(d, LOGS)


@pytest.mark.parametrize(
    "serial",
    [
        SerialConfig(type="file", path="/etc/shadow"),
        SerialConfig(type="file", path=f"{LOGS}/../other/console.log"),
        SerialConfig(type="file", path=f"{LOGS}/sub/x.log"),
        SerialConfig(type="file", path=f"{LOGS}/./x.log"),
        SerialConfig(type="file", path=str(LOGS)),
        SerialConfig(type="pty", log_file="/var/lib/platform/state"),
    ],
)
def test_files_outside_the_log_directory_are_refused(serial: SerialConfig) -> None:
    with pytest.raises(DomainXMLError) as caught:
        check_log_paths(domain(serial), LOGS)
    assert caught.value.kind == "unsupported configuration"
    assert "outside the domain's log directory '/state/log/vm'" in caught.value.detail


def test_two_ports_never_write_one_file() -> None:
    clash = domain(SerialConfig(type="pty"), SerialConfig(type="file", path=f"{LOGS}/console.log"))
    with pytest.raises(DomainXMLError, match="serial1 and serial0 would both write"):
        check_log_paths(clash, LOGS)


def test_the_console_is_serial_zero_or_the_implicit_port() -> None:
    assert console_path(domain(), LOGS) == LOGS / "console.log"
    own = domain(SerialConfig(type="file", path=f"{LOGS}/mine.log"))
    assert console_path(own, LOGS) == LOGS / "mine.log"
    stored_before_the_rule = domain(SerialConfig(type="file", path="/etc/passwd"))
    assert console_path(stored_before_the_rule, LOGS) == LOGS / "console.log"
