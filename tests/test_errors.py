"""The one error tree: every exception class sevlaunch defines is in it, causes are kept, and
a QMP failure keeps QEMU's class and the command across the host's HTTP API."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import httpx

from sevlaunch import errors
from sevlaunch.host.client import _error

SRC = Path(__file__).resolve().parent.parent / "src" / "sevlaunch"


def _python_files() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_every_public_exception_class_is_in_the_tree() -> None:
    """Module-private ones (``_Name``) never leave their module; the rest live in errors.py."""
    outside = []
    for path in _python_files():
        if path.name == "errors.py" and path.parent == SRC:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
                if bases & {"Exception", "BaseException"}:
                    outside.append(f"{path.relative_to(SRC)}:{node.name}")
    assert outside == []


def test_the_tree_has_one_root() -> None:
    for name in dir(errors):
        value = getattr(errors, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            assert issubclass(value, errors.SevlaunchError), name


def test_a_cause_is_cut_only_with_a_reason() -> None:
    """``raise ... from None`` hides the cause: allowed only with a comment saying why."""
    bare = []
    for path in _python_files():
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if "from None" in line and line.strip().startswith(("raise", ")")) and "#" not in line:
                bare.append(f"{path.relative_to(SRC)}:{number}")
    assert bare == []


def test_errors_imports_nothing_of_sevlaunch() -> None:
    tree = ast.parse((SRC / "errors.py").read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module] + [
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    ]
    assert not [m for m in imported if m.startswith("sevlaunch")]


def test_a_qmp_failure_keeps_its_class_and_command_over_http() -> None:
    raised = errors.QemuCommandError("query-sev-launch-measure", "GenericError", "not yet")
    body = {
        "error": {
            "code": raised.kind,
            "message": str(raised),
            "field": raised.field,
            "qmp": {"command": raised.command, "class": raised.error_class, "desc": raised.desc},
        }
    }
    again = _error(httpx.Response(502, content=json.dumps(body).encode()))
    assert isinstance(again, errors.QemuCommandError)
    assert (again.command, again.error_class, again.desc) == (
        "query-sev-launch-measure",
        "GenericError",
        "not yet",
    )
    assert str(again) == str(raised)


def test_a_malformed_error_answer_says_what_it_was() -> None:
    found = _error(httpx.Response(500, content=b"<html>oops</html>"))
    assert type(found) is errors.HostError
    assert "HTTP 500" in str(found)


def test_field_then_message_then_value() -> None:
    unsuitable = errors.UnsuitableFirmwareError("sev_hash_table", "no table", value=None)
    assert (unsuitable.field, str(unsuitable), unsuitable.value) == (
        "sev_hash_table",
        "no table",
        None,
    )
    fmt = errors.FormatError("session blob", "nonce", "too short", value=3)
    assert (fmt.field, fmt.value) == ("nonce", 3)
