"""``sevlaunch broker``: run the attestation broker and administer it as the guest owner."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from sevlaunch.cli._conn import (
    ADDRESS_FORMS,
    BROKER_DEFAULT,
    BROKER_ENV,
    LAUNCHER_TOKEN_ENV,
    OWNER_TOKEN_ENV,
    Conn,
    limits_of,
    server_options,
)
from sevlaunch.cli._util import EXIT_USAGE, emit_json, errors_to_exit, fail, json_option, read_file
from sevlaunch.cli.broker_admin import audit, client_options, launch, launcher, owner_client
from sevlaunch.cli.broker_snp import snp, snp_serve_options
from sevlaunch.cli.owner.digest import EsOptions, es_options

if TYPE_CHECKING:
    from sevlaunch.protocol.admin import Workload


@click.group()
def broker() -> None:
    """The guest owner's attestation service and its administration."""


@broker.command()
@click.option(
    "--db",
    "db_url",
    default="sqlite:///sevlaunch-broker.db",
    show_default=True,
    help="SQLAlchemy URL: sqlite:///FILE or postgresql+psycopg://USER@HOST/DB.",
)
@click.option(
    "--kek-file",
    required=True,
    type=click.Path(dir_okay=False),
    help="32 random bytes that seal launch keys and secrets at rest.",
)
@click.option(
    "--listen",
    envvar=BROKER_ENV,
    show_envvar=True,
    default=BROKER_DEFAULT,
    show_default=True,
    help=f"Where to listen: {ADDRESS_FORMS}.",
)
@click.option(
    "--owner-token-file",
    required=True,
    envvar=OWNER_TOKEN_ENV,
    show_envvar=True,
    type=click.Path(dir_okay=False),
    help="File holding the owner's token (mode 0600): trust roots, workloads, secrets, audit.",
)
@click.option(
    "--launcher-token-file",
    envvar=LAUNCHER_TOKEN_ENV,
    show_envvar=True,
    type=click.Path(dir_okay=False),
    help="File holding the token (mode 0600) of the launcher named 'default'; other "
    "launchers get theirs from 'broker launcher add'.",
)
@click.option(
    "--launch-ttl",
    default=600.0,
    show_default=True,
    help="Seconds a launch may wait for its measurement; then it expires, keys erased.",
)
@click.option(
    "--sweep-interval",
    default=5.0,
    show_default=True,
    help="Seconds between this instance's sweeps for expired launches (0: never).",
)
@click.option(
    "--launcher-max-open",
    default=500,
    show_default=True,
    help="Default limit of a launcher's launches awaiting a measurement.",
)
@click.option(
    "--launcher-rate",
    default=600.0,
    show_default=True,
    help="Default limit of a launcher's new launches a minute.",
)
@click.option(
    "--launcher-burst",
    default=200,
    show_default=True,
    help="Default number of launches a launcher may start at once within its rate.",
)
@click.option("--instance", default=None, help="Name of this instance in launches and audit.")
@click.option("--no-chain-cache", is_flag=True, help="Verify every chain, even a known one.")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Least severe log messages printed.",
)
@snp_serve_options
@server_options
def serve(
    db_url: str,
    kek_file: str,
    listen: str,
    owner_token_file: str,
    launcher_token_file: str | None,
    launch_ttl: float,
    sweep_interval: float,
    launcher_max_open: int,
    launcher_rate: float,
    launcher_burst: int,
    instance: str | None,
    no_chain_cache: bool,
    log_level: str,
    tls_cert: str | None,
    tls_key: str | None,
    insecure_plain_http: bool,
    snp: Any,
    **limits: Any,
) -> None:
    """Run the broker; the database is upgraded to the newest schema first.

    Every instance sweeps expired launches; several may share one PostgreSQL database.
    """
    import logging
    import os
    import socket

    from sevlaunch import _http, _listen
    from sevlaunch.broker.server import build_app
    from sevlaunch.broker.server import serve as run
    from sevlaunch.broker.service import LauncherLimits, Settings

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    bounds = limits_of(limits)
    with errors_to_exit(code=EXIT_USAGE):
        settings = Settings(
            launch_ttl=launch_ttl,
            use_chain_cache=not no_chain_cache,
            instance=instance or f"{socket.gethostname()}:{os.getpid()}",
            launcher_limits=LauncherLimits(launcher_max_open, launcher_rate, launcher_burst),
            sweep_interval=sweep_interval,
            snp=snp,
        )
        address = _http.parse(listen, what="broker listener")
        tls = _listen.Tls.of(tls_cert, tls_key)
        _listen.check(address, tls, insecure_plain_http=insecure_plain_http)
    with errors_to_exit():
        app = build_app(db_url, kek_file, owner_token_file, launcher_token_file, settings, bounds)

    def ready() -> None:
        click.echo(f"sevlaunch broker: listening on {address}", err=True)

    with errors_to_exit(code=EXIT_USAGE):
        run(
            app,
            listen,
            limits=bounds,
            tls=tls,
            insecure_plain_http=insecure_plain_http,
            log_level=log_level,
            ready=ready,
        )


# -- workloads ---------------------------------------------------------------------------------


@broker.group()
def workload() -> None:
    """Workloads: allowed policies, expected launch digests, minimum firmware, secrets."""


def _parse_secret(text: str) -> tuple[str, bytes]:
    guid, sep, path = text.partition(":")
    if not sep or not path:
        fail(
            f"--secret takes GUID_OR_ALIAS:FILE (e.g. luks-key:passphrase.txt), got {text!r}",
            code=EXIT_USAGE,
        )
    return guid, read_file(path, f"secret {guid}")


def _parse_api(text: str) -> tuple[int, int]:
    try:
        major, minor = (int(p) for p in text.split("."))
    except ValueError:
        fail(f"--min-api takes MAJOR.MINOR (e.g. 0.24), got {text!r}", code=EXIT_USAGE)
    return major, minor


def _digests(
    digests: tuple[str, ...],
    firmware: str | None,
    kernel: str | None,
    initrd: str | None,
    append: str | None,
    es: EsOptions | None = None,
) -> list[bytes]:
    """Digests given as hex, or computed here from the reference artifacts (for SEV-ES
    with the VMSAs built as QEMU/KVM build them, see ``sevlaunch owner digest --es``)."""
    from sevlaunch.owner.launch_digest import launch_digest

    if es is not None and es.es:
        if firmware is None:
            fail("--es and the vCPU options need --firmware", code=EXIT_USAGE)
        return [_es_digest(es, firmware, kernel, initrd, append)]
    if es is not None:
        es.spec(es=False)  # vCPU options without --es are a usage error
    if bool(digests) == bool(firmware):
        fail("give either --digest HEX (repeatable) or --firmware FILE", code=EXIT_USAGE)
    if firmware is None and (kernel or initrd or append is not None):
        fail("--kernel, --initrd and --append need --firmware", code=EXIT_USAGE)
    if firmware is None:
        try:
            out = [bytes.fromhex(d) for d in digests]
        except ValueError:
            fail("--digest takes 64 hex digits (a SHA-256 launch digest)", code=EXIT_USAGE)
        return out
    with open(firmware, "rb") as fw:
        if kernel is None:
            return [launch_digest(fw)]
        with open(kernel, "rb") as k:
            if initrd is None:
                return [launch_digest(fw, k, None, append)]
            with open(initrd, "rb") as i:
                return [launch_digest(fw, k, i, append)]


def _es_digest(
    es: EsOptions, firmware: str, kernel: str | None, initrd: str | None, append: str | None
) -> bytes:
    from sevlaunch.cli.owner.digest import measure_inputs, vmsa_pages

    spec = es.spec(es=True)
    firmwares, boot = measure_inputs([firmware], kernel, initrd, append)
    pages = vmsa_pages(firmwares[0], spec, es.dump_vmsa)
    return firmwares[0].digest(boot.hashes() if boot else None, pages)


@workload.command("add")
@click.argument("name")
@click.option(
    "--policy",
    "policies",
    multiple=True,
    required=True,
    help="Allowed guest policy (0x3, or flags like nodbg,noks); repeatable, first is default.",
)
@click.option("--digest", "digests", multiple=True, help="Expected launch digest, hex; repeatable.")
@click.option(
    "--firmware",
    type=click.Path(exists=True, dir_okay=False),
    help="OVMF image to compute the digest from.",
)
@click.option(
    "--kernel",
    type=click.Path(exists=True, dir_okay=False),
    help="Kernel for measured direct boot (with --firmware).",
)
@click.option(
    "--initrd",
    type=click.Path(exists=True, dir_okay=False),
    help="Initrd for measured direct boot (with --kernel).",
)
@click.option("--append", default=None, help="Kernel command line, exactly as passed to -append.")
@click.option("--secret", "secrets", multiple=True, help="GUID_OR_ALIAS:FILE; repeatable.")
@click.option(
    "--min-api", default="0.0", show_default=True, help="Minimum firmware API MAJOR.MINOR."
)
@click.option("--min-build", default=0, show_default=True, help="Minimum firmware build id.")
@client_options
@json_option
@es_options
def workload_add(
    name: str,
    policies: tuple[str, ...],
    digests: tuple[str, ...],
    firmware: str | None,
    kernel: str | None,
    initrd: str | None,
    append: str | None,
    secrets: tuple[str, ...],
    min_api: str,
    min_build: int,
    broker: Conn,
    as_json: bool,
    es_options: EsOptions,
) -> None:
    """Register workload NAME; secret values are sealed by the broker and never shown again.

    For an SEV-ES workload, compute the digest here with --es --vcpus N and the vCPU type
    (--vcpu-type, --vcpu-sig or --vcpu-family/--vcpu-model/--vcpu-stepping), as
    ``sevlaunch owner digest`` does; give a policy with the ES bit (0x4).
    """
    from sevlaunch.formats.policy import Policy

    with errors_to_exit(code=EXIT_USAGE, as_json=as_json):  # a --policy that is not one
        parsed = [Policy.parse(p).to_int() for p in policies]
    with errors_to_exit(as_json=as_json):
        if es_options.es and not all(p & 0x4 for p in parsed):
            fail(
                "--es computes an SEV-ES digest, but a --policy lacks the ES bit (0x4): give "
                "SEV-ES policies only (e.g. 0x5), or drop --es",
                code=EXIT_USAGE,
            )
        values = dict(_parse_secret(s) for s in secrets)
        found = _digests(digests, firmware, kernel, initrd, append, es_options)
        with owner_client(broker) as client:
            out = client.add_workload(
                name,
                parsed,
                found,
                min_api=_parse_api(min_api),
                min_build=min_build,
                secrets=values,
            )
    _print_workload(out, as_json)


def _print_workload(w: Workload, as_json: bool) -> None:
    if as_json:
        emit_json(w.to_wire())
        return
    click.echo(f"workload {w.name}")
    click.echo("  policies: " + ", ".join(f"{p:#06x}" for p in w.policies))
    for d in w.digests:
        click.echo(f"  digest:   {d.hex()}")
    click.echo(f"  minimum firmware: API {w.min_api[0]}.{w.min_api[1]} build {w.min_build}")
    click.echo("  secrets:  " + (", ".join(w.secrets) or "none"))


@workload.command("list")
@client_options
@json_option
def workload_list(broker: Conn, as_json: bool) -> None:
    """List workloads."""
    with errors_to_exit(as_json=as_json), owner_client(broker) as client:
        rows = client.workloads()
    if as_json:
        emit_json([w.to_wire() for w in rows])
        return
    for w in rows:
        click.echo(
            f"{w.name}\tpolicies={','.join(hex(p) for p in w.policies)}"
            f"\tdigests={len(w.digests)}\tsecrets={len(w.secrets)}"
        )


@workload.command("show")
@click.argument("name")
@client_options
@json_option
def workload_show(name: str, broker: Conn, as_json: bool) -> None:
    """Show one workload (secret GUIDs, never their values)."""
    with errors_to_exit(as_json=as_json), owner_client(broker) as client:
        out = client.workload(name)
    _print_workload(out, as_json)


@workload.command("remove")
@click.argument("name")
@client_options
def workload_remove(name: str, broker: Conn) -> None:
    """Remove a workload, its secrets and its pending launches."""
    with errors_to_exit(), owner_client(broker) as client:
        client.remove_workload(name)
    click.echo(f"removed workload {name}")


# -- secrets and trust roots -------------------------------------------------------------------


@broker.group()
def secret() -> None:
    """Secrets released to a workload's guests on a matching measurement."""


@secret.command("set")
@click.argument("workload_name", metavar="WORKLOAD")
@click.argument("guid")
@click.argument("file", type=click.Path(dir_okay=False))
@client_options
def secret_set(workload_name: str, guid: str, file: str, broker: Conn) -> None:
    """Set secret GUID (or alias such as luks-key) of WORKLOAD to the bytes of FILE."""
    value = read_file(file, "secret")
    with errors_to_exit(), owner_client(broker) as client:
        client.set_secret(workload_name, guid, value)
    click.echo(f"secret {guid} of {workload_name} set ({len(value)} bytes, sealed)")


@broker.group()
def trust() -> None:
    """Trust roots: AMD CA files (ASK ‖ ARK) or other ARKs, such as an emulated platform's."""


@trust.command("add")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--name", default=None, help="Name for a non-AMD root (AMD's are named by generation)."
)
@client_options
@json_option
def trust_add(file: str, name: str | None, broker: Conn, as_json: bool) -> None:
    """Trust the ARK in FILE (an ARK alone, or ASK ‖ ARK as AMD publishes it)."""
    from sevlaunch.errors import BrokerError

    data = read_file(file, "trust root")
    with errors_to_exit(as_json=as_json), owner_client(broker) as client:
        try:
            out = client.add_root(data, name)
        except BrokerError as exc:
            if exc.reason != "FormatError":
                raise
            fail(f"{file}: {exc}", as_json=as_json)  # the broker could not read this file
    if as_json:
        emit_json(out.to_wire())
    else:
        kind = "AMD root" if out.amd else "root"
        click.echo(f"trusted {kind} {out.name} (key fingerprint {out.fingerprint})")


@trust.command("list")
@client_options
@json_option
def trust_list(broker: Conn, as_json: bool) -> None:
    """List trust roots."""
    with errors_to_exit(as_json=as_json), owner_client(broker) as client:
        rows = client.roots()
    if as_json:
        emit_json([r.to_wire() for r in rows])
        return
    for r in rows:
        click.echo(
            f"{r.name}\t{'amd' if r.amd else 'user'}\t"
            f"{'ask+ark' if r.has_ask else 'ark'}\t{r.fingerprint}"
        )


@trust.command("remove")
@click.argument("name")
@client_options
def trust_remove(name: str, broker: Conn) -> None:
    """Stop trusting a root (cached chain verifications are dropped too)."""
    with errors_to_exit(), owner_client(broker) as client:
        client.remove_root(name)
    click.echo(f"removed trust root {name}")


broker.add_command(audit)
broker.add_command(launcher)
broker.add_command(launch)
broker.add_command(snp)
