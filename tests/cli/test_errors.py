"""``cli._errors``: whatever escapes a command is one ``error:`` line with the exit status it
deserves (2 for the command line, 1 otherwise); a bug keeps its traceback; the debug variable
keeps every traceback."""

from __future__ import annotations

import errno

import click
import pytest
from click.testing import CliRunner

from sevlaunch.cli._errors import DEBUG_ENV, line
from sevlaunch.cli._root import Root
from sevlaunch.errors import FormatError, UsageError

RAISED: dict[str, BaseException] = {
    "usage": UsageError("--x 'y' is not a size"),
    "format": FormatError("chain", "length", "expected 8 bytes, got 3"),
    "os": PermissionError(errno.EACCES, "Permission denied", "/etc/shadow"),
    "abort": click.Abort(),
    "bug": KeyError("a bug"),
}


@click.group(cls=Root, lazy={})
def root() -> None:
    """A root like sevlaunch's."""


@root.command()
@click.argument("what")
@click.option("--count", type=int, default=1)
def fail(what: str, count: int) -> None:
    del count
    raise RAISED[what]


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(root, list(args), env=env)
    return result.exit_code, result.stderr, result.exception


@pytest.mark.parametrize(
    ("what", "status", "words"),
    [
        ("usage", 2, "error: --x 'y' is not a size"),
        ("format", 1, "expected 8 bytes, got 3"),
        ("os", 1, "error: /etc/shadow: Permission denied"),
        ("abort", 1, "error: interrupted"),
    ],
)
def test_an_error_is_one_line_and_its_status(what: str, status: int, words: str) -> None:
    code, err, _ = invoke("fail", what)
    assert code == status
    assert err.count("\n") == 1, err
    assert words in err
    assert "Traceback" not in err


def test_clicks_own_refusals_are_one_line_with_where_help_is() -> None:
    code, err, _ = invoke("fail", "usage", "--count", "many")
    assert code == 2
    assert err.count("\n") == 1, err
    assert "'many' is not a valid integer" in err
    assert "(see 'root fail --help')" in err
    code, err, _ = invoke("fial")
    assert (code, err.count("\n")) == (2, 1)
    assert "fial" in err


def test_a_bug_keeps_its_exception() -> None:
    code, _, exc = invoke("fail", "bug")
    assert code == 1
    assert isinstance(exc, KeyError)


def test_the_debug_variable_keeps_the_traceback_of_a_handled_error() -> None:
    code, _, exc = invoke("fail", "usage", env={DEBUG_ENV: "1"})
    assert code == 1
    assert isinstance(exc, UsageError)


def test_a_message_of_several_lines_becomes_one() -> None:
    assert line("first\n\n  second  \nthird\n") == "first; second; third"
