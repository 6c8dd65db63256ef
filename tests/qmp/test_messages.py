"""Wire form of outbound messages: QEMU's separators, member order, escapes and CRLF."""

from __future__ import annotations

import pytest

from sevlaunch.qmp import NO_ID, ErrorResponse, Event, Greeting, Return, VersionInfo, encode


@pytest.mark.parametrize(
    ("message", "wire"),
    [
        (
            Greeting(VersionInfo(8, 2, 0), ("oob",)),
            b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 8}, "package": ""},'
            b' "capabilities": ["oob"]}}\r\n',
        ),
        (Return({}, NO_ID), b'{"return": {}}\r\n'),
        (Return({}, "libvirt-1"), b'{"return": {}, "id": "libvirt-1"}\r\n'),
        (Return([1], None), b'{"return": [1], "id": null}\r\n'),
        (
            ErrorResponse("GenericError", "boom", {"a": 1}),
            b'{"id": {"a": 1}, "error": {"class": "GenericError", "desc": "boom"}}\r\n',
        ),
        (
            Event("STOP", 1267020223, 435656),
            b'{"timestamp": {"seconds": 1267020223, "microseconds": 435656}, "event": "STOP"}\r\n',
        ),
        (
            Event("X", 1, 2, {"k": "v"}),
            b'{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "X", "data": {"k": "v"}}\r\n',
        ),
    ],
)
def test_wire_form(message: Greeting | Return | ErrorResponse | Event, wire: bytes) -> None:
    assert encode(message) == wire


def test_strings_are_ascii_with_upper_case_escapes() -> None:
    assert encode(Return("é\x7f\\u00e9")) == b'{"return": "\\u00E9\\u007F\\\\u00e9"}\r\n'


def test_event_at_splits_the_clock() -> None:
    assert Event.at("STOP", 12.5) == Event("STOP", 12, 500000)
