"""libvirt's walk over a ``query-qmp-schema`` reply (qemu_qapi.c, virQEMUQAPISchemaPathGet),
restated for the tests so that a served schema is checked by its consumer's rules.

Every entry is looked up by name in one table (commands, events and types alike). A query is
steps joined by ``/``, the first a command or event. From a command or event a step names
``arg-type`` or ``ret-type``; in an object a plain step enters a member, ``+case`` a union
variant, ``*name`` an optional member; in an enum ``^value`` matches a value; ``$feature``
asks for a feature of the current entry and must come last; arrays are looked through.
"""

from __future__ import annotations

from typing import Any


def resolves(schema: list[dict[str, Any]], query: str) -> bool:
    table = {e["name"]: e for e in schema}
    first, *steps = query.split("/")
    return _walk(table, first, steps)


def _walk(table: dict[str, dict[str, Any]], name: str, steps: list[str]) -> bool:
    entry = table.get(name)
    if entry is None:
        return False
    if not steps:
        return True
    step, rest = steps[0], steps[1:]
    kind = entry["meta-type"]
    if kind == "array":
        return _walk(table, entry["element-type"], steps)
    if step.startswith("$"):
        return not rest and step[1:] in entry.get("features", ())
    if kind in ("command", "event"):
        return step[0].isalpha() and _walk(table, entry.get(step, ""), rest)
    if kind == "enum":
        names = [m["name"] for m in entry.get("members", ())]
        return step.startswith("^") and not rest and step[1:] in names
    if kind == "object":
        if step.startswith("+"):
            found = [v["type"] for v in entry.get("variants", ()) if v["case"] == step[1:]]
        else:
            wanted = step.lstrip("*")
            found = [
                m["type"]
                for m in entry["members"]
                if m["name"] == wanted and (not step.startswith("*") or "default" in m)
            ]
        return bool(found) and _walk(table, found[0], rest)
    if kind == "alternate":
        return any(_walk(table, m["type"], steps) for m in entry["members"])
    return False
