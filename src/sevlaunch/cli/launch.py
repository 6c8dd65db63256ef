"""``sevlaunch launch``: the VM tool; one attested launch (or N) from a domain XML."""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import click

from sevlaunch.cli._util import EXIT_USAGE, fail, read_file
from sevlaunch.errors import SevlaunchError
from sevlaunch.orchestrate.launch import PARALLEL_STARTS

if TYPE_CHECKING:
    from sevlaunch.orchestrate.owner_port import GuestOwner


@click.command()
@click.argument("domain_xml", type=click.Path(dir_okay=False))
@click.option(
    "--host",
    "host_uri",
    default=None,
    help="Host manager: unix:PATH or tcp:HOST:PORT (default $SEVLAUNCH_HOST).",
)
@click.option(
    "--host-token-file",
    type=click.Path(dir_okay=False),
    help="Bearer token for a TCP host manager.",
)
@click.option(
    "--broker", "broker_url", default=None, help="Attestation broker URL (http://… or unix:PATH)."
)
@click.option("--workload", default=None, help="The broker workload to launch.")
@click.option(
    "--token-file", type=click.Path(dir_okay=False), help="Launcher token for the broker."
)
@click.option(
    "--owner-dir",
    type=click.Path(file_okay=False),
    help="Run the owner toolkit locally on DIR/owner.json.",
)
@click.option(
    "--kds-url",
    default=None,
    help="Key server for the signed CEK (default AMD's; for an emulated platform the URL "
    "`sevlaunch platform kds` prints).",
)
@click.option(
    "--count",
    default=1,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Launch N guests at once.",
)
@click.option(
    "--parallel-starts",
    default=PARALLEL_STARTS,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="With --count: guests started at once (the host's PSP measures one at a time; the "
    "rest wait their turn here instead of timing out at the host).",
)
@click.option(
    "--boot-timeout",
    default=60.0,
    show_default=True,
    help="Seconds to wait for the guest to report its boot.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print machine-readable results instead of the live view.",
)
def launch(
    domain_xml: str,
    host_uri: str | None,
    host_token_file: str | None,
    broker_url: str | None,
    workload: str | None,
    token_file: str | None,
    owner_dir: str | None,
    kds_url: str | None,
    count: int,
    parallel_starts: int,
    boot_timeout: float,
    as_json: bool,
) -> None:
    """Run an attested SEV launch: node SEV info, session, start paused, measurement check,
    secret injection, resume, boot. On any failure the domain is destroyed and the failing
    step is named. Exit 0 when every guest booted, 1 otherwise, 2 on usage errors."""
    from sevlaunch.host.client import HostClient, read_token
    from sevlaunch.orchestrate.launch import Launcher
    from sevlaunch.orchestrate.progress import Progress

    host_uri = host_uri or os.environ.get("SEVLAUNCH_HOST")
    if not host_uri:
        fail("no host manager given: use --host URI or set SEVLAUNCH_HOST", code=EXIT_USAGE)
    xml = read_file(domain_xml, "domain XML").decode()
    try:
        from sevlaunch.host.client import transport_for
        from sevlaunch.host.domxml import Domain

        transport_for(host_uri)
        token = read_token(host_token_file)
        owner = _owner(broker_url, workload, token_file, owner_dir)
        base = Domain.from_xml(xml).name
    except SevlaunchError as exc:
        fail(str(exc), code=EXIT_USAGE)
    names = [base] if count == 1 else [f"{base}-{i}" for i in range(1, count + 1)]
    progress = Progress(names)
    gate = threading.Semaphore(parallel_starts)

    def one(name: str) -> dict[str, object]:
        with HostClient(host_uri, token=token) as host:
            launcher = Launcher(
                host,
                owner,
                xml,
                name=name,
                observer=progress,
                boot_timeout=boot_timeout,
                kds_url=kds_url,
                start_gate=gate,
            )
            return launcher.run().as_dict()

    with progress.live(enabled=not as_json), ThreadPoolExecutor(max_workers=min(count, 32)) as pool:
        results = list(pool.map(one, names))
    if as_json:
        click.echo(json.dumps(results if count > 1 else results[0], indent=2))
    else:
        for result in results:
            if not result["ok"]:
                click.echo(str(result["message"]), err=True)
    raise SystemExit(0 if all(r["ok"] for r in results) else 1)


def _owner(
    broker_url: str | None, workload: str | None, token_file: str | None, owner_dir: str | None
) -> GuestOwner:
    from sevlaunch.orchestrate.owner_port import BrokerOwner, LocalOwner, OwnerConfig

    if (broker_url is None) == (owner_dir is None):
        raise _usage("give either --broker URL --workload NAME or --owner-dir DIR")
    if owner_dir is not None:
        return LocalOwner(OwnerConfig.load(Path(owner_dir)))
    if not workload:
        raise _usage("--broker needs --workload NAME")
    token_path = token_file or os.environ.get("SEVLAUNCH_BROKER_TOKEN_FILE")
    if not token_path:
        raise _usage("--broker needs --token-file FILE (the launcher token)")
    assert broker_url is not None
    return BrokerOwner(broker_url, read_file(token_path, "token file").strip(), workload)


def _usage(message: str) -> SevlaunchError:
    from sevlaunch.errors import UsageError

    return UsageError(message)
