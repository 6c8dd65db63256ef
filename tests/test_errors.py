"""The one error tree: every exception class sevlaunch defines is in it, causes are kept, and
a QMP failure keeps QEMU's class and the command across the host's HTTP API."""

from __future__ import annotations

import ast
import builtins
import json
from collections.abc import Callable
from pathlib import Path

import httpx

from sevlaunch import errors
from sevlaunch.host.client import _error

SRC = Path(__file__).resolve().parent.parent / "src" / "sevlaunch"


def _python_files() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


_BUILTIN_EXCEPTIONS = {
    name for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException)
}  # fmt: skip


def exceptions_outside_the_tree(sources: dict[str, str]) -> list[str]:
    """Every exception class (private ones too) the sources define that does not derive,
    through classes they define, from SevlaunchError; a base defined elsewhere counts as an
    exception when it is a builtin one or is named like one (``httpx.HTTPError``)."""
    bases: dict[str, set[str]] = {}
    where: dict[str, str] = {}
    for source_name, text in sources.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                names = {ast.unparse(b).rpartition(".")[2] for b in node.bases}
                bases.setdefault(node.name, set()).update(names)
                where[node.name] = f"{source_name}:{node.name}"

    def reaches(name: str, goal: Callable[[str], bool], seen: frozenset[str]) -> bool:
        if goal(name):
            return True
        return any(reaches(b, goal, seen | {name}) for b in bases.get(name, set()) - seen)

    def foreign_exception(name: str) -> bool:
        return name not in bases and (
            name in _BUILTIN_EXCEPTIONS or name.endswith(("Error", "Exception"))
        )

    return sorted(
        where[name]
        for name in bases
        if reaches(name, foreign_exception, frozenset())
        and not reaches(name, lambda n: n == "SevlaunchError", frozenset())
    )


def _sources() -> dict[str, str]:
    return {str(path.relative_to(SRC)): path.read_text() for path in _python_files()}


def test_every_exception_class_is_in_the_tree() -> None:
    """Private ones too: an exception that escapes its module by a bug is still ours."""
    assert exceptions_outside_the_tree(_sources()) == []


def test_an_exception_outside_the_tree_is_found() -> None:
    planted = {
        "a.py": "class _Local(Exception): ...\nclass Kept(errors.HostError): ...\n",
        "b.py": "class Deep(_Local): ...\nclass Wrapped(httpx.HTTPError): ...\nclass Plain: ...",
        "errors.py": "class SevlaunchError(Exception): ...\nclass HostError(SevlaunchError): ...",
    }
    assert exceptions_outside_the_tree(planted) == ["a.py:_Local", "b.py:Deep", "b.py:Wrapped"]


def asserts_in(sources: dict[str, str]) -> list[str]:
    """``assert`` statements: python -O strips them, so none may guard a path."""
    return [
        f"{name}:{node.lineno}"
        for name, text in sources.items()
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.Assert)
    ]


def test_no_assert_in_the_package() -> None:
    assert asserts_in(_sources()) == []
    assert asserts_in({"m.py": "def f(x):\n    assert x is not None\n"}) == ["m.py:2"]


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
