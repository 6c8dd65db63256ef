"""query-qmp-schema generated from registered commands, walked as libvirt walks it."""

from __future__ import annotations

import pytest

from sevlaunch.qmp import schema
from sevlaunch.qmp.introspect import (
    EMPTY,
    CommandInfo,
    EnumType,
    Member,
    ObjectType,
    member,
    schema_info,
)
from tests.qmp.schema_walk import resolves


def _union() -> tuple[ObjectType | EnumType, ...]:
    return (
        ObjectType(
            "Options",
            (Member("kind", "Kind"), Member("id", "str")),
            tag="kind",
            variants=(("sev", "SevProps"),),
        ),
        EnumType("Kind", ("sev", "other")),
        ObjectType("SevProps", (member("*kernel-hashes", "bool"), member("policy", "uint32"))),
    )


def test_commands_get_their_argument_objects() -> None:
    info = schema_info(
        [CommandInfo("inject", schema({"packet-header": "str", "*gpa": "uint64"}))],
        events=["STOP"],
    )
    by_name = {e["name"]: e for e in info}
    command = by_name["inject"]
    assert command["meta-type"] == "command"
    members = by_name[command["arg-type"]]["members"]
    # sized integers introspect as int; optional members carry "default": null, as QEMU's do
    assert members == [
        {"name": "packet-header", "type": "str"},
        {"name": "gpa", "type": "int", "default": None},
    ]
    assert by_name["STOP"] == {"name": "STOP", "meta-type": "event", "arg-type": EMPTY}
    assert by_name["int"] == {"name": "int", "meta-type": "builtin", "json-type": "int"}


def test_commands_without_arguments_share_the_empty_object() -> None:
    info = schema_info([CommandInfo("a", ()), CommandInfo("b", ())])
    assert [e["arg-type"] for e in info if e["meta-type"] == "command"] == [EMPTY, EMPTY]
    assert sum(e["name"] == EMPTY for e in info) == 1


def test_libvirts_queries_resolve_through_a_described_union() -> None:
    info = schema_info(
        [CommandInfo("object-add", "Options"), CommandInfo("q", schema({"*flat": "bool"}))],
        types=_union(),
    )
    assert resolves(info, "object-add/arg-type/+sev/kernel-hashes")
    assert resolves(info, "object-add/arg-type/kind/^sev")
    assert resolves(info, "object-add/arg-type/+sev/*kernel-hashes")
    assert resolves(info, "q/arg-type/flat")
    # what is not there does not resolve: the capability stays off
    assert not resolves(info, "object-add/arg-type/+sev/debug-swap")
    assert not resolves(info, "object-add/arg-type/+tdx")
    assert not resolves(info, "object-add/arg-type/kind/^tdx")
    assert not resolves(info, "object-add/arg-type/+sev/*policy")  # mandatory, no default
    assert not resolves(info, "device_add/$json-cli-hotplug")


@pytest.mark.parametrize(
    "broken",
    [
        ObjectType("Options", (Member("kind", "Missing"),)),
        ObjectType("Options", (), tag="kind", variants=(("x", "Nowhere"),)),
    ],
)
def test_a_dangling_type_name_is_a_bug_not_a_missing_feature(broken: ObjectType) -> None:
    with pytest.raises(ValueError, match="undescribed"):
        schema_info([CommandInfo("object-add", "Options")], types=[broken])


def test_a_command_naming_an_undescribed_type_is_refused() -> None:
    with pytest.raises(ValueError, match="undescribed"):
        schema_info([CommandInfo("object-add", "Nothing")])


def test_oob_commands_say_so() -> None:
    info = schema_info([CommandInfo("x", (), allow_oob=True), CommandInfo("y", ())])
    commands = {e["name"]: e for e in info if e["meta-type"] == "command"}
    assert commands["x"]["allow-oob"] is True
    assert "allow-oob" not in commands["y"]


def test_enums_list_members_and_values() -> None:
    info = schema_info([], types=[EnumType("OnOffAuto", ("auto", "on", "off"))])
    entry = next(e for e in info if e["name"] == "OnOffAuto")
    assert entry["members"] == [{"name": "auto"}, {"name": "on"}, {"name": "off"}]
    assert entry["values"] == ["auto", "on", "off"]
