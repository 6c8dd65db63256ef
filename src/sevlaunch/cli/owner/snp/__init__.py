"""``sevlaunch owner snp``: the guest owner's SEV-SNP tools."""

from __future__ import annotations

import click

from sevlaunch.cli._lazy import LazyGroup

COMMANDS = {
    "digest": "sevlaunch.cli.owner.snp.digest:digest",
    "id-block": "sevlaunch.cli.owner.snp.idblock:id_block",
    "report": "sevlaunch.cli.owner.snp.report:report",
    "verify": "sevlaunch.cli.owner.snp.verify:verify",
    "fetch": "sevlaunch.cli.owner.snp.fetch:fetch",
    "validate": "sevlaunch.cli.owner.snp.validate:validate",
}


@click.group(cls=LazyGroup, lazy=COMMANDS)
def snp() -> None:
    """SEV-SNP: launch digests, ID blocks, and attestation reports checked end to end."""
