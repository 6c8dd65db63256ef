"""The click group behind ``sevlaunch``; its subcommands load when they run."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from sevlaunch import __version__
from sevlaunch.cli._commands import COMMANDS, PROG, ROOT_HELP
from sevlaunch.cli._errors import one_line_errors
from sevlaunch.cli._lazy import LazyGroup


class Root(LazyGroup):
    """The top of the tree: every error that reaches it is one line (:mod:`._errors`)."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        with one_line_errors():
            status = super().main(args, prog_name, complete_var, False, **extra)
        sys.exit(status if isinstance(status, int) else 0)


@click.group(
    cls=Root,
    lazy={name: target for name, (target, _) in COMMANDS.items()},
    short_help_of={name: text for name, (_, text) in COMMANDS.items()},
    context_settings={"help_option_names": ["-h", "--help"]},
    help=ROOT_HELP,
)
@click.version_option(__version__, prog_name=PROG)
def cli() -> None:
    """The root of the tree (its help is :data:`ROOT_HELP`, shared with cli._fast)."""
