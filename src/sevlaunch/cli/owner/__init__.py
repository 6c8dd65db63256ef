"""``sevlaunch owner``: the guest owner's tools (verify, session, digest, validate, secret)."""

from __future__ import annotations

import click

from sevlaunch.cli._lazy import LazyGroup

COMMANDS = {
    "verify": "sevlaunch.cli.owner.verify:verify",
    "session": "sevlaunch.cli.owner.session:session",
    "digest": "sevlaunch.cli.owner.digest:digest",
    "validate": "sevlaunch.cli.owner.validate:validate",
    "secret": "sevlaunch.cli.owner.secret:secret",
    "fetch-ca": "sevlaunch.cli.owner.fetch:fetch_ca",
    "fetch-cek": "sevlaunch.cli.owner.fetch:fetch_cek",
    "snp": "sevlaunch.cli.owner.snp:snp",
}


@click.group(cls=LazyGroup, lazy=COMMANDS)
def owner() -> None:
    """The guest owner's side: verify a platform, make a launch session, check a measurement."""
