"""One line per error, whatever went wrong: ``error: WHAT`` on stderr, exit 2 for a usage
error and 1 for anything else, never a Python traceback for a user's mistake.

click prints a usage error on three lines (usage, a hint, the message) and lets an
``OSError`` or a :class:`~sevlaunch.errors.SevlaunchError` that a command did not catch reach
the user as a traceback. :func:`one_line_errors` turns each into one line that names what
was wrong; a bug (any other exception) keeps its traceback, because that is what a bug
report needs. ``SEVLAUNCH_DEBUG=1`` keeps the traceback of the handled ones too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from sevlaunch.errors import SevlaunchError, UsageError

EXIT_FAILURE = 1
EXIT_USAGE = 2
DEBUG_ENV = "SEVLAUNCH_DEBUG"


def line(message: str) -> str:
    """A message on one line: its lines joined, as a log line or a terminal shows it."""
    return "; ".join(part.strip() for part in message.strip().splitlines() if part.strip())


def _usage_hint(exc: click.UsageError) -> str:
    """Where the options are explained, for click's own refusals of the command line (a plain
    UsageError is a command's own words about an input, which --help would not explain)."""
    if exc.ctx is None or type(exc) is click.UsageError:
        return ""
    return f" (see '{exc.ctx.command_path} --help')"


def _say(message: str) -> None:
    click.echo(f"error: {line(message)}", err=True)


@contextmanager
def one_line_errors() -> Iterator[None]:
    """Report what escapes a command as one line and the exit status it deserves."""
    if os.environ.get(DEBUG_ENV):
        yield
        return
    try:
        yield
    except click.UsageError as exc:
        _say(exc.format_message() + _usage_hint(exc))
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        _say(exc.format_message())
        sys.exit(exc.exit_code)
    except click.Abort:
        _say("interrupted")
        sys.exit(EXIT_FAILURE)
    except UsageError as exc:  # a bad option value or input: the caller's to fix
        _say(str(exc))
        sys.exit(EXIT_USAGE)
    except SevlaunchError as exc:
        _say(str(exc))
        sys.exit(EXIT_FAILURE)
    except OSError as exc:  # the machine said no (permissions, a full disk, a closed pipe)
        reason = exc.strerror or str(exc)
        _say(f"{exc.filename}: {reason}" if exc.filename else reason)
        sys.exit(EXIT_FAILURE)
