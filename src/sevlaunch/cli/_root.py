"""The click group behind ``sevlaunch``; its subcommands load when they run."""

from __future__ import annotations

import click

from sevlaunch import __version__
from sevlaunch.cli._commands import COMMANDS, PROG, ROOT_HELP
from sevlaunch.cli._lazy import LazyGroup


@click.group(
    cls=LazyGroup,
    lazy={name: target for name, (target, _) in COMMANDS.items()},
    short_help_of={name: text for name, (_, text) in COMMANDS.items()},
    context_settings={"help_option_names": ["-h", "--help"]},
    help=ROOT_HELP,
)
@click.version_option(__version__, prog_name=PROG)
def cli() -> None:
    """The root of the tree (its help is :data:`ROOT_HELP`, shared with cli._fast)."""
