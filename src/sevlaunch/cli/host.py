"""``sevlaunch host``: the host manager daemon and a virsh-like client, with virsh's names."""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sevlaunch.cli._util import EXIT_USAGE, emit_json, fail, read_file
from sevlaunch.errors import SevlaunchError

if TYPE_CHECKING:
    from sevlaunch.protocol import HostEvent

CONNECT_HELP = "Host manager: unix:PATH or tcp:HOST:PORT (default: $SEVLAUNCH_HOST)."


@click.group()
def host() -> None:
    """The host manager (libvirt's role): domains, node SEV info, launch security, events."""


@host.command()
@click.option(
    "--state",
    "state_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="State directory (SQLite, run files).",
)
@click.option(
    "--listen", default=None, help="unix:PATH (default STATE/host.sock) or tcp:HOST:PORT."
)
@click.option(
    "--qemu",
    default="sevlaunch-vmm",
    show_default=True,
    help="Hypervisor binary: sevlaunch-vmm or qemu-system-x86_64.",
)
@click.option(
    "--platform",
    "platform",
    default=None,
    help="Emulated platform socket, given to the hypervisor as its SEV device.",
)
@click.option("--token-file", type=click.Path(dir_okay=False), help="Bearer token required on TCP.")
def serve(
    state_dir: str, listen: str | None, qemu: str, platform: str | None, token_file: str | None
) -> None:
    """Run the host manager daemon."""
    from sevlaunch.host.serve import serve_forever

    listen = listen or f"unix:{Path(state_dir) / 'host.sock'}"
    token = read_file(token_file, "token file").decode().strip() if token_file else None
    if listen.startswith("tcp:") and not token:
        fail(
            "a TCP listener needs --token-file (the Unix socket is protected by its file mode)",
            code=EXIT_USAGE,
        )
    try:
        serve_forever(Path(state_dir), listen, qemu=qemu, platform=platform, token=token)
    except SevlaunchError as exc:
        fail(str(exc))


def _connect_option(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--token-file", type=click.Path(dir_okay=False), help="Bearer token for TCP."
    )(func)
    return click.option("--connect", "-c", "uri", default=None, help=CONNECT_HELP)(func)


@contextmanager
def _client(uri: str | None, token_file: str | None) -> Iterator[Any]:
    from sevlaunch.host.client import HostClient, read_token

    uri = uri or os.environ.get("SEVLAUNCH_HOST")
    if not uri:
        fail("no host manager given: use --connect URI or set SEVLAUNCH_HOST", code=EXIT_USAGE)
    try:
        with HostClient(uri, token=read_token(token_file)) as client:
            yield client
    except SevlaunchError as exc:
        fail(str(exc))


def _print_params(params: Mapping[str, object], width: int) -> None:
    for key, value in params.items():
        click.echo(f"{key:<{width}}: {value}")


@host.command()
@_connect_option
@click.option(
    "--refresh", is_flag=True, help="Probe the hypervisor again instead of using the cache."
)
def nodesevinfo(uri: str | None, token_file: str | None, refresh: bool) -> None:
    """Node SEV info: pdh, cert-chain, cpu0-id, cbitpos, reduced-phys-bits, max-guests, max-es-guests."""
    with _client(uri, token_file) as c:
        _print_params(c.node_sev_info(refresh=refresh).to_wire(), 18)


@host.command()
@_connect_option
@click.argument("file", type=click.Path(dir_okay=False))
def define(uri: str | None, token_file: str | None, file: str) -> None:
    """Define a domain from an XML file."""
    xml = read_file(file, "domain XML").decode()
    with _client(uri, token_file) as c:
        info = c.define(xml)
    click.echo(f"Domain '{info.name}' defined from {file}")


@host.command()
@_connect_option
@click.argument("domain")
def undefine(uri: str | None, token_file: str | None, domain: str) -> None:
    """Undefine an inactive domain."""
    with _client(uri, token_file) as c:
        c.undefine(domain)
    click.echo(f"Domain '{domain}' has been undefined")


@host.command(name="list")
@_connect_option
@click.option("--all", "all_domains", is_flag=True, help="Include inactive domains.")
@click.option("--json", "as_json", is_flag=True)
def list_domains(uri: str | None, token_file: str | None, all_domains: bool, as_json: bool) -> None:
    """List domains (running and paused; --all for every one)."""
    with _client(uri, token_file) as c:
        rows = c.list_domains(all_domains=all_domains)
    if as_json:
        emit_json([r.to_wire() for r in rows])
        return
    click.echo(f" {'Id':<4}{'Name':<30}State")
    click.echo("-" * 50)
    for index, row in enumerate(rows, start=1):
        ident = str(index) if row.active else "-"
        click.echo(f" {ident:<4}{row.name:<30}{row.state}")


@host.command()
@_connect_option
@click.argument("domain")
def dumpxml(uri: str | None, token_file: str | None, domain: str) -> None:
    """Print a domain's XML."""
    with _client(uri, token_file) as c:
        click.echo(c.dumpxml(domain), nl=False)


def _simple(name: str, verb: str, help_text: str) -> None:
    @host.command(name=name, help=help_text)
    @_connect_option
    @click.argument("domain")
    def command(uri: str | None, token_file: str | None, domain: str) -> None:
        with _client(uri, token_file) as c:
            getattr(c, name)(domain)
        click.echo(f"Domain '{domain}' {verb}")


_simple("resume", "resumed", "Resume a paused domain (LAUNCH_FINISH on its first resume).")
_simple("suspend", "suspended", "Pause a running domain.")
_simple("shutdown", "is being shutdown", "Ask the guest to power down.")
_simple("destroy", "destroyed", "Stop a domain at once.")


@host.command()
@_connect_option
@click.argument("domain")
@click.option(
    "--paused", is_flag=True, help="Leave the vCPUs paused (needed to inject a launch secret)."
)
def start(uri: str | None, token_file: str | None, domain: str, paused: bool) -> None:
    """Start a defined domain."""
    with _client(uri, token_file) as c:
        c.start(domain, paused=paused)
    click.echo(f"Domain '{domain}' started")


@host.command()
@_connect_option
@click.argument("domain")
@click.option("--json", "as_json", is_flag=True)
def domlaunchsecinfo(uri: str | None, token_file: str | None, domain: str, as_json: bool) -> None:
    """Launch security info: sev-measurement, sev-api-major/minor, sev-build-id, sev-policy."""
    with _client(uri, token_file) as c:
        info = c.launch_security_info(domain)
    params = {} if info is None else info.to_wire()
    if as_json:
        emit_json(params)
    else:
        _print_params(params, 15)


@host.command()
@_connect_option
@click.argument("domain")
@click.option(
    "--secrethdr",
    required=True,
    type=click.Path(dir_okay=False),
    help="File with the base64 packet header.",
)
@click.option(
    "--secret",
    "secret_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="File with the base64 secret.",
)
@click.option(
    "--set-address",
    callback=lambda _ctx, _param, value: _address(value),
    default=None,
    help="Guest physical address, decimal or 0x hex (default: the firmware's secret area).",
)
def domsetlaunchsecstate(
    uri: str | None,
    token_file: str | None,
    domain: str,
    secrethdr: str,
    secret_file: str,
    set_address: int | None,
) -> None:
    """Inject a launch secret into a paused SEV domain."""
    header = read_file(secrethdr, "secret header").decode().strip()
    secret = read_file(secret_file, "secret").decode().strip()
    from sevlaunch.protocol import SecretRelease

    with _client(uri, token_file) as c:
        release = SecretRelease.from_wire({"sev-secret-header": header, "sev-secret": secret})
        c.set_launch_security_state(domain, release, set_address)


def _address(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = int(text, 0)
    except ValueError:
        raise click.BadParameter(f"expected a number such as 0x80c000, got {text!r}") from None
    if not 0 <= value < 1 << 64:
        raise click.BadParameter(f"a guest physical address is 0 .. 2^64-1, got {text}")
    return value


@host.command()
@_connect_option
@click.option("--loop", is_flag=True, help="Keep printing events until interrupted.")
@click.option("--domain", default=None, help="Only this domain's events.")
@click.option("--json", "as_json", is_flag=True)
def event(
    uri: str | None, token_file: str | None, loop: bool, domain: str | None, as_json: bool
) -> None:
    """Print lifecycle events and launch steps as they happen (one unless --loop)."""
    with _client(uri, token_file) as c:
        for item in c.events():
            if item.kind == "subscribed" or (domain and item.domain != domain):
                continue
            if as_json:
                click.echo(json.dumps(item.to_wire()))
            else:
                click.echo(_describe_event(item))
            if not loop:
                break


def _describe_event(item: HostEvent) -> str:
    where = f"for domain '{item.domain}'"
    fields = item.fields
    if item.kind == "lifecycle":
        return f"event 'lifecycle' {where}: {fields.get('type')} {fields.get('detail')}"
    step = item.step()
    if step is not None:
        return (
            f"event 'launch-step' {where}: step {int(step.step)} {step.step.title}: {step.outcome}"
        )
    return f"event '{item.kind}' {where}"


@host.command()
@_connect_option
@click.argument("domain")
def console(uri: str | None, token_file: str | None, domain: str) -> None:
    """Print the domain's serial console log."""
    with _client(uri, token_file) as c:
        click.echo(c.console(domain), nl=False)


@host.command()
@_connect_option
@click.argument("domain")
@click.option("--json", "as_json", is_flag=True)
def timeline(uri: str | None, token_file: str | None, domain: str, as_json: bool) -> None:
    """Every launch step of the domain's last launch, with party, duration and outcome."""
    with _client(uri, token_file) as c:
        info = c.domain(domain)
        steps = c.timeline(domain, info.launch)
    if as_json:
        emit_json([s.to_wire() for s in steps])
        return
    for s in steps:
        took = f"{s.duration * 1000:8.1f} ms" if s.duration is not None else " " * 11
        click.echo(
            f"{int(s.step):>3}  {s.outcome:<7}{took}  {s.step.party:<28}{s.step.title}  {s.detail}"
        )


@host.command(name="secret-define")
@_connect_option
@click.argument("file", type=click.Path(dir_okay=False))
def secret_define(uri: str | None, token_file: str | None, file: str) -> None:
    """Define a secret from libvirt's secret XML."""
    with _client(uri, token_file) as c:
        uid = c.secret_define(read_file(file, "secret XML").decode())
    click.echo(f"Secret {uid} created")


@host.command(name="secret-set-value")
@_connect_option
@click.argument("uuid")
@click.option(
    "--file", "value_file", type=click.Path(dir_okay=False), help="Read the value from a file."
)
@click.option(
    "--base64", "value_b64", default=None, help="The value, base64-encoded (as virsh takes it)."
)
def secret_set_value(
    uri: str | None,
    token_file: str | None,
    uuid: str,
    value_file: str | None,
    value_b64: str | None,
) -> None:
    """Set a secret's value (it is never returned by any read API)."""
    if (value_file is None) == (value_b64 is None):
        fail("give exactly one of --file FILE or --base64 VALUE", code=EXIT_USAGE)
    try:
        value = (
            read_file(value_file, "secret value")
            if value_file
            else base64.b64decode(value_b64 or "", validate=True)
        )
    except (binascii.Error, ValueError):
        fail("--base64 takes the value base64-encoded (as virsh secret-set-value)", code=EXIT_USAGE)
    with _client(uri, token_file) as c:
        c.secret_set_value(uuid, value)
    click.echo("Secret value set")


@host.command(name="secret-list")
@_connect_option
def secret_list(uri: str | None, token_file: str | None) -> None:
    """List secrets (UUIDs and whether a value is set; never values)."""
    with _client(uri, token_file) as c:
        rows = c.secret_list()
    click.echo(f" {'UUID':<38}Value")
    click.echo("-" * 50)
    for row in rows:
        click.echo(f" {row.uuid:<38}{'set' if row.has_value else 'none'}")


@host.command(name="secret-undefine")
@_connect_option
@click.argument("uuid")
def secret_undefine(uri: str | None, token_file: str | None, uuid: str) -> None:
    """Delete a secret and its value."""
    with _client(uri, token_file) as c:
        c.secret_undefine(uuid)
    click.echo(f"Secret {uuid} deleted")
