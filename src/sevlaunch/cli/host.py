"""``sevlaunch host``: the host manager daemon and a virsh-like client, with virsh's names."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sevlaunch.cli._conn import (
    ADDRESS_FORMS,
    HOST_ENV,
    HOST_TOKEN_ENV,
    Conn,
    alias,
    apply_aliases,
    default_host,
    host_connection,
    limits_of,
    platform_option,
    server_options,
)
from sevlaunch.cli._util import EXIT_USAGE, emit_json, errors_to_exit, fail, read_file
from sevlaunch.errors import SevlaunchError, UsageError

if TYPE_CHECKING:
    from sevlaunch.protocol import HostEvent


@click.group()
def host() -> None:
    """The host manager (libvirt's role): domains, node SEV info, launch security, events."""


@host.command()
@click.option(
    "--state",
    "state_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="State directory (SQLite, run files), created mode 0700.",
)
@click.option(
    "--listen",
    envvar=HOST_ENV,
    show_envvar=True,
    default=default_host,
    show_default="unix:RUNDIR/host.sock",
    help=f"Where to listen: {ADDRESS_FORMS}.",
)
@click.option(
    "--qemu",
    default="sevlaunch-vmm",
    show_default=True,
    help="Hypervisor binary: sevlaunch-vmm or qemu-system-x86_64.",
)
@platform_option(
    default=False,
    help_text="The emulated platform's socket, given to the hypervisor as its SEV device "
    "(default: none, the hypervisor's own).",
)
@click.option(
    "--host-token-file",
    envvar=HOST_TOKEN_ENV,
    show_envvar=True,
    type=click.Path(dir_okay=False),
    help="File holding the bearer token TCP clients must present (mode 0600).",
)
@alias("--token-file", "host_token_file", "--host-token-file")
@server_options
@apply_aliases
def serve(
    state_dir: str,
    listen: str,
    qemu: str,
    platform: str | None,
    host_token_file: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    insecure_plain_http: bool,
    **limits: Any,
) -> None:
    """Run the host manager daemon (until SIGTERM); prints one line when it is ready."""
    from sevlaunch import _http
    from sevlaunch._files import read_private
    from sevlaunch._listen import Tls, check
    from sevlaunch.host.serve import serve_forever

    with errors_to_exit(code=EXIT_USAGE):
        address = _http.parse(listen, what="host manager listener")
        socket_path = _http.platform_socket(platform) if platform else None
        token = (
            read_private(host_token_file, "host token file").decode().strip()
            if host_token_file
            else None
        )
        tls = Tls.of(tls_cert, tls_key)
        check(address, tls, insecure_plain_http=insecure_plain_http)
    _check_state_path(Path(state_dir))
    if address.scheme != "unix" and not token:
        fail(
            "a TCP listener needs --host-token-file (the Unix socket is protected by its "
            "file mode)",
            code=EXIT_USAGE,
        )

    def ready() -> None:
        click.echo(f"sevlaunch host: listening on {address}", err=True)

    with errors_to_exit():
        serve_forever(
            Path(state_dir),
            listen,
            qemu=qemu,
            platform=socket_path,
            token=token,
            tls=tls,
            limits=limits_of(limits),
            insecure_plain_http=insecure_plain_http,
            ready=ready,
        )


#: The longest Unix socket path (sun_path is 108 bytes with its NUL).
UNIX_PATH_MAX = 107


def _check_state_path(state_dir: Path) -> None:
    """Each hypervisor's monitor socket lives at STATE/run/UUID/qmp.sock: a state directory
    too deep for that is said at start (every guest start would fail with QEMU's words)."""
    longest = state_dir.absolute() / "run" / ("0" * 36) / "qmp.sock"
    size = len(bytes(longest))
    if size > UNIX_PATH_MAX:
        click.echo(
            f"warning: --state {state_dir} is too deep for guests: their monitor sockets "
            f"(STATE/run/UUID/qmp.sock) would be {size} bytes long, more than the "
            f"{UNIX_PATH_MAX} a Unix socket path can have, so no guest can start; use a "
            "shorter path",
            err=True,
        )


@contextmanager
def _client(conn: Conn) -> Iterator[Any]:
    from sevlaunch.host.client import HostClient, read_token

    try:
        with HostClient(
            conn.address,
            token=read_token(conn.token_file),
            ca_file=conn.ca_file,
            insecure_plain_http=conn.insecure_plain_http,
        ) as client:
            yield client
    except UsageError as exc:  # the address or token file as given
        fail(str(exc), code=EXIT_USAGE)
    except SevlaunchError as exc:
        fail(str(exc))


def _print_params(params: Mapping[str, object], width: int) -> None:
    for key, value in params.items():
        click.echo(f"{key:<{width}}: {value}")


@host.command()
@host_connection
@click.option(
    "--refresh", is_flag=True, help="Probe the hypervisor again instead of using the cache."
)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def nodesevinfo(host: Conn, refresh: bool, as_json: bool) -> None:
    """Node SEV info: pdh, cert-chain, cpu0-id, cbitpos, reduced-phys-bits, max-guests, max-es-guests."""
    with _client(host) as c:
        params = c.node_sev_info(refresh=refresh).to_wire()
    if as_json:
        emit_json(params)
    else:
        _print_params(params, 18)


@host.command()
@host_connection
@click.option(
    "--refresh", is_flag=True, help="Probe the hypervisor again instead of using the cache."
)
def nodesnpinfo(host: Conn, refresh: bool) -> None:
    """Node SEV-SNP info: launch-security-types, and the platform's SNP state, version, TCBs."""
    with _client(host) as c:
        params = c.node_snp_info(refresh=refresh).to_wire()
    for key in ("snp-current-tcb", "snp-reported-tcb"):
        if key in params:
            params[key] = f"{params[key]:#018x}"
    params["launch-security-types"] = " ".join(params["launch-security-types"]) or "-"
    _print_params(params, 21)


@host.command()
@host_connection
@click.argument("file", type=click.Path(dir_okay=False))
def define(host: Conn, file: str) -> None:
    """Define a domain from an XML file."""
    xml = read_file(file, "domain XML").decode()
    with _client(host) as c:
        info = c.define(xml)
    click.echo(f"Domain '{info.name}' defined from {file}")


@host.command()
@host_connection
@click.argument("domain")
def undefine(host: Conn, domain: str) -> None:
    """Undefine an inactive domain."""
    with _client(host) as c:
        c.undefine(domain)
    click.echo(f"Domain '{domain}' has been undefined")


@host.command(name="list")
@host_connection
@click.option("--all", "all_domains", is_flag=True, help="Include inactive domains.")
@click.option("--name", "names_only", is_flag=True, help="Print only the names, one a line.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def list_domains(host: Conn, all_domains: bool, names_only: bool, as_json: bool) -> None:
    """List domains (running and paused; --all for every one)."""
    with _client(host) as c:
        rows = c.list_domains(all_domains=all_domains)
    if as_json:
        emit_json([r.to_wire() for r in rows])
        return
    if names_only:
        for row in rows:
            click.echo(row.name)
        return
    click.echo(f" {'Id':<4}{'Name':<30}State")
    click.echo("-" * 50)
    for index, row in enumerate(rows, start=1):
        ident = str(index) if row.active else "-"
        click.echo(f" {ident:<4}{row.name:<30}{row.state}")


@host.command()
@host_connection
@click.argument("domain")
def dumpxml(host: Conn, domain: str) -> None:
    """Print a domain's XML."""
    with _client(host) as c:
        click.echo(c.dumpxml(domain), nl=False)


def _simple(name: str, verb: str, help_text: str) -> None:
    @host.command(name=name, help=help_text)
    @host_connection
    @click.argument("domain")
    def command(host: Conn, domain: str) -> None:
        with _client(host) as c:
            getattr(c, name)(domain)
        click.echo(f"Domain '{domain}' {verb}")


_simple("resume", "resumed", "Resume a paused domain (LAUNCH_FINISH on its first resume).")
_simple("suspend", "suspended", "Pause a running domain.")
_simple("shutdown", "is being shutdown", "Ask the guest to power down.")
_simple("destroy", "destroyed", "Stop a domain at once.")


@host.command()
@host_connection
@click.argument("domain")
@click.option(
    "--paused", is_flag=True, help="Leave the vCPUs paused (needed to inject a launch secret)."
)
def start(host: Conn, domain: str, paused: bool) -> None:
    """Start a defined domain."""
    with _client(host) as c:
        c.start(domain, paused=paused)
    click.echo(f"Domain '{domain}' started")


@host.command()
@host_connection
@click.argument("domain")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def domlaunchsecinfo(host: Conn, domain: str, as_json: bool) -> None:
    """Launch security info: sev-measurement, sev-api-major/minor, sev-build-id, sev-policy
    (SEV-SNP: sev-api-major/minor, sev-build-id, sev-snp-policy)."""
    with _client(host) as c:
        info = c.launch_security(domain)
    params = {} if info is None else info.to_wire()
    if as_json:
        emit_json(params)
    else:
        _print_params(params, 15)


@host.command()
@host_connection
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
    host: Conn,
    domain: str,
    secrethdr: str,
    secret_file: str,
    set_address: int | None,
) -> None:
    """Inject a launch secret into a paused SEV domain."""
    header = read_file(secrethdr, "secret header").decode().strip()
    secret = read_file(secret_file, "secret").decode().strip()
    from sevlaunch.protocol import SecretRelease

    with _client(host) as c:
        release = SecretRelease.from_wire({"sev-secret-header": header, "sev-secret": secret})
        c.set_launch_security_state(domain, release, set_address)


def _address(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        value = int(text, 0)
    except ValueError as exc:
        raise click.BadParameter(f"expected a number such as 0x80c000, got {text!r}") from exc
    if not 0 <= value < 1 << 64:
        raise click.BadParameter(f"a guest physical address is 0 .. 2^64-1, got {text}")
    return value


@host.command()
@host_connection
@click.option("--loop", is_flag=True, help="Keep printing events until interrupted.")
@click.option("--domain", default=None, help="Only this domain's events.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def event(host: Conn, loop: bool, domain: str | None, as_json: bool) -> None:
    """Print lifecycle events and launch steps as they happen (one unless --loop)."""
    with _client(host) as c:
        for item in c.events(domain):  # the host filters by domain
            if item.kind == "subscribed":
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
@host_connection
@click.argument("domain")
def console(host: Conn, domain: str) -> None:
    """Print the domain's serial console log."""
    with _client(host) as c:
        click.echo(c.console(domain), nl=False)


@host.command()
@host_connection
@click.argument("domain")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def timeline(host: Conn, domain: str, as_json: bool) -> None:
    """Every launch step of the domain's last launch, with party, duration and outcome."""
    with _client(host) as c:
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
@host_connection
@click.argument("file", type=click.Path(dir_okay=False))
def secret_define(host: Conn, file: str) -> None:
    """Define a secret from libvirt's secret XML."""
    with _client(host) as c:
        uid = c.secret_define(read_file(file, "secret XML").decode())
    click.echo(f"Secret {uid} created")


@host.command(name="secret-set-value")
@host_connection
@click.argument("uuid")
@click.option(
    "--file", "value_file", type=click.Path(dir_okay=False), help="Read the value from a file."
)
@click.option(
    "--base64", "value_b64", default=None, help="The value, base64-encoded (as virsh takes it)."
)
def secret_set_value(
    host: Conn,
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
    with _client(host) as c:
        c.secret_set_value(uuid, value)
    click.echo("Secret value set")


@host.command(name="secret-list")
@host_connection
def secret_list(host: Conn) -> None:
    """List secrets (UUIDs and whether a value is set; never values)."""
    with _client(host) as c:
        rows = c.secret_list()
    click.echo(f" {'UUID':<38}Value")
    click.echo("-" * 50)
    for row in rows:
        click.echo(f" {row.uuid:<38}{'set' if row.has_value else 'none'}")


@host.command(name="secret-undefine")
@host_connection
@click.argument("uuid")
def secret_undefine(host: Conn, uuid: str) -> None:
    """Delete a secret and its value."""
    with _client(host) as c:
        c.secret_undefine(uuid)
    click.echo(f"Secret {uuid} deleted")
