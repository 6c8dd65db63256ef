"""Helpers shared by CLI commands: reading inputs, printing results, mapping errors to exits."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click

from sevlaunch.errors import SevlaunchError

EXIT_FAILURE = 1
EXIT_USAGE = 2


def read_file(path: str | Path, what: str) -> bytes:
    """Read an input file, turning OS errors into a click error that names the input."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise click.UsageError(f"cannot read {what} {path}: {exc.strerror}") from exc


def emit_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, sort_keys=True))


def fail(message: str, *, code: int = EXIT_FAILURE, as_json: bool = False) -> NoReturn:
    if as_json:
        emit_json({"ok": False, "error": message})
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(code)


@contextmanager
def errors_to_exit(*, as_json: bool = False, code: int = EXIT_FAILURE) -> Iterator[None]:
    """Report any SevlaunchError as one clear line and a non-zero exit."""
    try:
        yield
    except SevlaunchError as exc:
        fail(str(exc), code=code, as_json=as_json)


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(
        func
    )
