"""The sans-IO server connection: negotiation gate, request checks, id echo."""

from __future__ import annotations

import json

import pytest

from sevlaunch.qmp import (
    NEED_DATA,
    NO_ID,
    Command,
    ErrorResponse,
    Event,
    InboundEvent,
    Negotiated,
    Rejected,
    ServerConnection,
    VersionInfo,
)

VERSION = VersionInfo(9, 2, 0)


def events(conn: ServerConnection, data: bytes) -> list[InboundEvent]:
    conn.receive_data(data)
    out: list[InboundEvent] = []
    while (ev := conn.next_event()) is not NEED_DATA:
        out.append(ev)
    return out


def one(conn: ServerConnection, request: object) -> InboundEvent:
    (ev,) = events(conn, json.dumps(request).encode())
    return ev


def negotiated(**kw: object) -> ServerConnection:
    conn = ServerConnection(VERSION, **kw)  # type: ignore[arg-type]
    assert isinstance(one(conn, {"execute": "qmp_capabilities"}), Negotiated)
    return conn


def test_greeting() -> None:
    conn = ServerConnection(VERSION, capabilities=("oob",))
    greeting = json.loads(conn.greeting())
    assert greeting == {
        "QMP": {
            "version": {"qemu": {"micro": 0, "minor": 2, "major": 9}, "package": ""},
            "capabilities": ["oob"],
        }
    }


def test_commands_before_negotiation_are_refused_with_qemus_text() -> None:
    conn = ServerConnection(VERSION)
    assert one(conn, {"execute": "query-sev", "id": 7}) == Rejected(
        "CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'", 7
    )
    assert not conn.negotiated


def test_negotiation_without_id_answers_without_id() -> None:
    conn = ServerConnection(VERSION)
    ev = one(conn, {"execute": "qmp_capabilities", "arguments": {}})
    assert ev == Negotiated((), NO_ID)
    assert isinstance(ev, Negotiated)
    assert conn.send(ev.response()) == b'{"return": {}}\r\n'


def test_second_negotiation_is_ignored_with_qemus_text() -> None:
    conn = negotiated()
    assert one(conn, {"execute": "qmp_capabilities", "id": "x"}) == Rejected(
        "CommandNotFound", "Capabilities negotiation is already complete, command ignored", "x"
    )


@pytest.mark.parametrize(
    ("arguments", "desc"),
    [
        ({"enable": ["oob"]}, "Capability 'oob' not available"),
        ({"enable": ["foo"]}, "Parameter 'enable[0]' does not accept value 'foo'"),
        ({"enable": "oob"}, "Invalid parameter type for 'enable', expected: array"),
        ({"enable": [1]}, "Invalid parameter type for 'enable[0]', expected: string"),
        ({"x": 1}, "Parameter 'x' is unexpected"),
    ],
)
def test_bad_negotiation_keeps_negotiation_mode(arguments: dict[str, object], desc: str) -> None:
    conn = ServerConnection(VERSION)
    assert one(conn, {"execute": "qmp_capabilities", "arguments": arguments}) == Rejected(
        "GenericError", desc
    )
    assert not conn.negotiated


def test_oob_enabled_when_offered() -> None:
    conn = ServerConnection(VERSION, capabilities=("oob",))
    assert one(
        conn, {"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}
    ) == Negotiated(("oob",))
    assert one(conn, {"exec-oob": "x", "id": 1}) == Command("x", {}, 1, oob=True)


@pytest.mark.parametrize("rid", ["__qmp#00000", 0, None, [1, {"a": 2}], {"x": None}, 1.5])
def test_id_is_any_json_and_echoed(rid: object) -> None:
    conn = negotiated()
    ev = one(conn, {"execute": "stop", "id": rid})
    assert ev == Command("stop", {}, rid)
    assert isinstance(ev, Command)
    reply = json.loads(conn.send(ErrorResponse("GenericError", "e", ev.id)))
    assert reply["id"] == rid


@pytest.mark.parametrize(
    ("request_", "desc"),
    [
        ([1], "QMP input must be a JSON object"),
        ({"execute": 1}, "QMP input member 'execute' must be a string"),
        ({"execute": "a", "arguments": []}, "QMP input member 'arguments' must be an object"),
        ({"execute": "a", "foo": 1}, "QMP input member 'foo' is unexpected"),
        ({"exec-oob": "a"}, "QMP input member 'exec-oob' is unexpected"),
        ({"id": 1}, "QMP input lacks member 'execute'"),
    ],
)
def test_request_object_checks(request_: object, desc: str) -> None:
    conn = negotiated()
    ev = one(conn, request_)
    assert isinstance(ev, Rejected)
    assert (ev.error_class, ev.desc) == ("GenericError", desc)
    if isinstance(request_, dict) and "id" in request_:
        assert ev.id == request_["id"]


def test_parse_error_has_no_id_and_connection_continues() -> None:
    conn = negotiated()
    evs = events(conn, b'{"execute": "a" "id": 1}{"execute":"b"}')
    assert evs == [Rejected("GenericError", "JSON parse error, expected separator"), Command("b")]
    assert conn.send(evs[0].response()) == (  # type: ignore[union-attr]
        b'{"error": {"class": "GenericError", "desc": "JSON parse error, expected separator"}}\r\n'
    )


def test_events_withheld_until_negotiated() -> None:
    conn = ServerConnection(VERSION)
    assert conn.send(Event("STOP", 1, 2)) == b""
    one(conn, {"execute": "qmp_capabilities"})
    assert conn.send(Event("STOP", 1, 2)).endswith(b'"event": "STOP"}\r\n')


def test_command_not_found_text_replaced_in_negotiation_mode() -> None:
    conn = ServerConnection(VERSION)
    wire = conn.send(ErrorResponse("CommandNotFound", "The command x has not been found"))
    assert b"Expecting capabilities negotiation with 'qmp_capabilities'" in wire


def test_unknown_capability_offer_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown QMP capabilities"):
        ServerConnection(VERSION, capabilities=("bogus",))
