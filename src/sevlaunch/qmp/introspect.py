"""``query-qmp-schema``: the QAPI introspection of the commands a server has registered.

QEMU answers ``query-qmp-schema`` with a list of ``SchemaInfo`` (qapi/introspect.json): one
entry per command, event and type, commands naming their ``arg-type`` and ``ret-type``,
object types listing ``members`` (and, for unions, ``tag`` and ``variants``). Management
layers walk it by name (libvirt's ``object-add/arg-type/+sev-guest/kernel-hashes``), so the
entries for the registered commands are generated from their argument schemas and can never
disagree with what the server accepts; types a server describes by hand (``object-add``'s
union of QOM types) come in as :class:`ObjectType` and :class:`EnumType`.

As in QEMU, every integer type introspects as ``int`` and type names other than commands'
and events' are free: these are written out readably rather than masked as numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sevlaunch.qmp._schema import Schema

BUILTINS: dict[str, str] = {
    "str": "string",
    "int": "int",
    "number": "number",
    "bool": "boolean",
    "null": "null",
    "any": "value",
}
#: Argument-schema types as introspection names them (QEMU collapses sized integers).
_WIRE_TYPE = {
    "str": "str",
    "int": "int",
    "uint8": "int",
    "uint16": "int",
    "uint32": "int",
    "uint64": "int",
    "bool": "bool",
    "number": "number",
    "object": "any",
    "array": "any",
    "any": "any",
}
EMPTY = "q_empty"


@dataclass(frozen=True)
class Member:
    name: str
    type: str
    optional: bool = False


@dataclass(frozen=True)
class ObjectType:
    """An object type; a union when ``tag`` names the member whose value picks a variant."""

    name: str
    members: tuple[Member, ...] = ()
    tag: str | None = None
    variants: tuple[tuple[str, str], ...] = ()  # (case, type name)


@dataclass(frozen=True)
class EnumType:
    name: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class CommandInfo:
    name: str
    args: Schema | str  # an argument schema, or the name of a described type
    ret_type: str = "any"
    allow_oob: bool = False


def member(name: str, type_: str) -> Member:
    """A member in QAPI notation: ``member("*gpa", "uint64")``."""
    return Member(name.removeprefix("*"), _WIRE_TYPE.get(type_, type_), name.startswith("*"))


def schema_info(
    commands: Iterable[CommandInfo],
    events: Sequence[str] = (),
    types: Iterable[ObjectType | EnumType] = (),
) -> list[dict[str, Any]]:
    """The ``query-qmp-schema`` reply: commands, events, then every type they use."""
    out: list[dict[str, Any]] = []
    described: dict[str, dict[str, Any]] = {EMPTY: _object(ObjectType(EMPTY))}
    for command in commands:
        if isinstance(command.args, str):
            arg_type = command.args
        elif command.args:
            arg_type = f"q_obj_{command.name}-arg"
            members = tuple(Member(a.name, _WIRE_TYPE[a.type], a.optional) for a in command.args)
            described[arg_type] = _object(ObjectType(arg_type, members))
        else:
            arg_type = EMPTY
        entry: dict[str, Any] = {
            "name": command.name,
            "meta-type": "command",
            "arg-type": arg_type,
            "ret-type": command.ret_type,
        }
        if command.allow_oob:
            entry["allow-oob"] = True
        out.append(entry)
    out.extend({"name": name, "meta-type": "event", "arg-type": EMPTY} for name in events)
    for type_ in types:
        described[type_.name] = _object(type_) if isinstance(type_, ObjectType) else _enum(type_)
    out.extend(described.values())
    out.extend(
        {"name": name, "meta-type": "builtin", "json-type": json} for name, json in BUILTINS.items()
    )
    _check_references(out)
    return out


def _object(type_: ObjectType) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": type_.name,
        "meta-type": "object",
        "members": [_member(m) for m in type_.members],
    }
    if type_.tag is not None:
        entry["tag"] = type_.tag
        entry["variants"] = [{"case": case, "type": name} for case, name in type_.variants]
    return entry


def _member(m: Member) -> dict[str, Any]:
    # QEMU marks an optional member by "default": null (introspect.json, SchemaInfoObjectMember)
    return {"name": m.name, "type": m.type, **({"default": None} if m.optional else {})}


def _enum(type_: EnumType) -> dict[str, Any]:
    return {
        "name": type_.name,
        "meta-type": "enum",
        "members": [{"name": v} for v in type_.values],
        "values": list(type_.values),
    }


def _check_references(entries: list[dict[str, Any]]) -> None:
    """Every type a command, member or variant names is described: a dangling name would
    make a client's walk stop short, which reads as a missing feature, not as a bug."""
    names = {e["name"] for e in entries if e["meta-type"] not in ("command", "event")}
    for entry in entries:
        used = [entry.get("arg-type"), entry.get("ret-type")]
        used += [m["type"] for m in entry.get("members", ()) if "type" in m]
        used += [v["type"] for v in entry.get("variants", ())]
        missing = [u for u in used if u is not None and u not in names]
        if missing:
            raise ValueError(f"schema entry {entry['name']!r} names undescribed {missing}")
