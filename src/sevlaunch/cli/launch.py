"""``sevlaunch launch``: the VM tool; one attested launch (or N) from a domain XML."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from sevlaunch.cli._conn import ALIASES, LAUNCHER_TOKEN_ENV, Conn, launch_connections, token_file
from sevlaunch.cli._util import EXIT_USAGE, fail, read_file
from sevlaunch.errors import SevlaunchError
from sevlaunch.orchestrate.launch import LAUNCHERS, PARALLEL_STARTS

if TYPE_CHECKING:
    from sevlaunch.orchestrate.host_port import HostPort
    from sevlaunch.orchestrate.owner_port import GuestOwner
    from sevlaunch.protocol.snp import GuestAttestationConfig


@click.command()
@click.argument("domain_xml", type=click.Path(dir_okay=False))
@launch_connections
@click.option(
    "--workload",
    envvar="SEVLAUNCH_WORKLOAD",
    show_envvar=True,
    default=None,
    help="The broker workload to launch.",
)
@click.option(
    "--owner-dir",
    envvar="SEVLAUNCH_OWNER_DIR",
    show_envvar=True,
    type=click.Path(file_okay=False),
    help="Run the owner toolkit locally on DIR/owner.json instead of asking a broker.",
)
@click.option(
    "--kds-url",
    envvar="SEVLAUNCH_KDS_URL",
    show_envvar=True,
    default=None,
    help="Key server for the signed CEK (default AMD's; for an emulated platform the URL "
    "`sevlaunch platform kds` prints).",
)
@click.option(
    "--cek",
    "cek_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="The AMD-signed CEK of the host's chip (sevlaunch owner fetch-cek --out FILE), "
    "instead of downloading it at step 3.",
)
@click.option(
    "--count",
    default=1,
    show_default=True,
    type=click.IntRange(1, 1000),
    help=f"Launch N guests together: at most {LAUNCHERS} in flight, the rest in turn.",
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
    host: Conn,
    broker: Conn,
    workload: str | None,
    owner_dir: str | None,
    kds_url: str | None,
    cek_file: str | None,
    count: int,
    parallel_starts: int,
    boot_timeout: float,
    as_json: bool,
) -> None:
    """Run an attested SEV launch: node SEV info, session, start paused, measurement check,
    secret injection, resume, boot. On any failure the domain is destroyed and the failing
    step is named. Exit 0 when every guest booted, 1 otherwise, 2 on usage errors.

    An SEV-SNP domain (launchSecurity type='sev-snp') needs no owner before it runs: it is
    given --broker and --workload, and attests to the broker after boot."""
    from sevlaunch.host.client import read_token
    from sevlaunch.orchestrate.host_port import is_libvirt_uri
    from sevlaunch.orchestrate.launch import Launcher
    from sevlaunch.orchestrate.progress import Progress

    xml = read_file(domain_xml, "domain XML").decode()
    cek = read_file(cek_file, "CEK file") if cek_file else None
    try:
        from sevlaunch import _http
        from sevlaunch.host.domxml import Domain

        checked = [(broker, "broker")]
        if not is_libvirt_uri(host.address):  # libvirt's URIs are libvirt's business
            checked.append((host, "host manager"))
        for conn, what in checked:
            _http.require_private(
                _http.parse(conn.address, what=what),
                what=what,
                insecure_plain_http=conn.insecure_plain_http,
            )
        token = read_token(host.token_file)
        parsed = Domain.from_xml(xml)
        snp = parsed.launch_security is not None and parsed.launch_security.is_snp
        owner = None if snp else _owner(broker, workload, owner_dir)
        attestation = _snp_config(broker, workload, owner_dir) if snp else None
        base = parsed.name
    except SevlaunchError as exc:
        fail(str(exc), code=EXIT_USAGE)
    names = [base] if count == 1 else [f"{base}-{i}" for i in range(1, count + 1)]
    if attestation is not None or owner is None:
        _launch_snp(host, token, attestation, xml, names, boot_timeout, as_json)
        return
    progress = Progress(names)
    gate = threading.Semaphore(parallel_starts)

    def one(name: str) -> dict[str, object]:
        client = _connect(host, token)
        try:
            launcher = Launcher(
                client,
                owner,
                xml,
                name=name,
                observer=progress,
                boot_timeout=boot_timeout,
                kds_url=kds_url,
                cek=cek,
                start_gate=gate,
            )
            return launcher.run().as_dict()
        finally:
            client.close()

    with (
        progress.live(enabled=not as_json),
        ThreadPoolExecutor(max_workers=min(count, LAUNCHERS)) as pool,
    ):
        results = list(pool.map(one, names))
    if as_json:
        click.echo(json.dumps(results if count > 1 else results[0], indent=2))
    else:
        console = "virsh console" if is_libvirt_uri(host.address) else "sevlaunch host console"
        for result in results:
            if result["ok"]:
                click.echo(f"{result['message']}; its console: {console} {result['domain']}")
            else:
                click.echo(str(result["message"]), err=True)
    raise SystemExit(0 if all(r["ok"] for r in results) else 1)


def _connect(host: Conn, token: str | None) -> HostPort:
    from sevlaunch.orchestrate.host_port import connect

    return connect(
        host.address,
        token=token,
        ca_file=host.ca_file,
        insecure_plain_http=host.insecure_plain_http,
    )


def _snp_config(
    broker: Conn, workload: str | None, owner_dir: str | None
) -> GuestAttestationConfig:
    """Where an SNP guest attests after boot: the broker's address and the workload."""
    from sevlaunch.protocol.snp import GuestAttestationConfig

    if owner_dir is not None or not workload:
        raise _usage(
            "an SEV-SNP domain attests after boot to a broker: give --broker ADDRESS "
            "--workload NAME (--owner-dir is for SEV launches)"
        )
    return GuestAttestationConfig(broker.address, workload)


def _launch_snp(
    host: Conn,
    token: str | None,
    config: GuestAttestationConfig | None,
    xml: str,
    names: list[str],
    boot_timeout: float,
    as_json: bool,
) -> None:
    """SNP launches, one after another (each guest's attestation is its own)."""
    from sevlaunch.orchestrate.snp_launch import SnpLauncher

    if config is None:  # the SEV path has an owner; only SNP domains come here
        fail("an SNP launch needs --broker ADDRESS --workload NAME", code=EXIT_USAGE)
    results = []
    for name in names:
        client = _connect(host, token)
        try:
            launcher = SnpLauncher(client, config, xml, name=name, boot_timeout=boot_timeout)
            results.append(launcher.run().as_dict())
        finally:
            client.close()
        if not as_json:
            click.echo(str(results[-1]["message"]), err=not results[-1]["ok"])
    if as_json:
        click.echo(json.dumps(results if len(names) > 1 else results[0], indent=2))
    raise SystemExit(0 if all(r["ok"] for r in results) else 1)


def _owner(broker: Conn, workload: str | None, owner_dir: str | None) -> GuestOwner:
    from sevlaunch.orchestrate.owner_config import OwnerConfig
    from sevlaunch.orchestrate.owner_port import BrokerOwner, LocalOwner

    ctx = click.get_current_context()
    broker_given = ctx.get_parameter_source("broker_url") is ParameterSource.COMMANDLINE
    if owner_dir is not None:
        if broker_given or "broker_url" in ctx.meta.get(ALIASES, {}):
            raise _usage("give either --broker ADDRESS --workload NAME or --owner-dir DIR")
        return LocalOwner(OwnerConfig.load(Path(owner_dir)))
    if not workload:
        raise _usage(
            "give either --broker ADDRESS --workload NAME or --owner-dir DIR "
            "(--broker needs --workload NAME)"
        )
    try:
        path = token_file(broker.token_file, "--launcher-token-file", LAUNCHER_TOKEN_ENV)
    except click.UsageError as exc:
        raise _usage(f"--broker needs the launcher token: {exc.message}") from exc
    return BrokerOwner(
        broker.address,
        read_file(path, "token file").strip(),
        workload,
        ca_file=broker.ca_file,
        insecure_plain_http=broker.insecure_plain_http,
    )


def _usage(message: str) -> SevlaunchError:
    from sevlaunch.errors import UsageError

    return UsageError(message)
