"""The ``sevlaunch`` command tree. Nothing imports this package; it imports the rest lazily."""

from __future__ import annotations

import click

from sevlaunch import __version__
from sevlaunch.cli._lazy import LazyGroup

COMMANDS = {
    "owner": "sevlaunch.cli.owner:owner",
    "platform": "sevlaunch.cli.platform:platform",
    "demo": "sevlaunch.cli.demo:demo",
    "host": "sevlaunch.cli.host:host",
    "broker": "sevlaunch.cli.broker:broker",
    "launch": "sevlaunch.cli.launch:launch",
    "image": "sevlaunch.cli.image:image",
}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sevlaunch")
def cli() -> None:
    """Launch AMD SEV confidential VMs with remote attestation."""


def main() -> None:
    cli()
