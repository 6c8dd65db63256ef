"""``sevlaunch platform``: run the emulated SEV platform and administer it as sevctl would.

``serve`` owns a state directory and a socket; every other command is a client of that
socket (``--platform ADDRESS`` or ``$SEVLAUNCH_PLATFORM``, as ``serve --listen``) and is named
after its sevctl counterpart. The admin commands INIT an UNINIT platform first where Linux's ``/dev/sev``
does (pek-gen, pdh-gen, pek-csr, pek-cert-import, export).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sevlaunch.cli._conn import alias, apply_aliases, default_platform, platform_option
from sevlaunch.cli._util import (
    EXIT_USAGE,
    emit_json,
    errors_to_exit,
    fail,
    json_option,
    read_file,
)
from sevlaunch.errors import UsageError

if TYPE_CHECKING:
    from sevlaunch.platform.client import PlatformClient

SOCKET_ENV = "SEVLAUNCH_PLATFORM"


_socket_option = platform_option(dest="socket_path")


def _write(path: str, data: bytes, what: str) -> None:
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        raise click.UsageError(f"cannot write {what} {path}: {exc.strerror}") from exc


@click.group()
def platform() -> None:
    """Run and administer the emulated SEV platform (the emulated /dev/sev)."""


@platform.command()
@click.option(
    "--state",
    "state_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Directory holding the platform's persistent state (created mode 0700).",
)
@click.option(
    "--listen",
    "socket_path",
    envvar=SOCKET_ENV,
    show_envvar=True,
    default=default_platform,
    metavar="ADDRESS",
    show_default="unix:RUNDIR/platform.sock",
    help="Unix socket to listen on: unix:PATH or a bare path; a stale one is replaced.",
)
@alias("--socket", "socket_path", "--listen")
@apply_aliases
@click.option(
    "--profile",
    default=None,
    help="EPYC generation: naples, rome, milan, genoa, turin (default: the state's, else milan).",
)
@click.option(
    "--latency",
    type=click.Choice(["none", "real"]),
    default="none",
    show_default=True,
    help="'real' adds real-hardware PSP costs (LAUNCH_START ~4 ms, LAUNCH_UPDATE_DATA 6 MiB/s).",
)
@click.option(
    "--socket-mode",
    type=click.Choice(["0600", "0660"]),
    default="0600",
    show_default=True,
    help="Permissions of the socket file; 0660 lets the socket's group in.",
)
@click.option(
    "--socket-group",
    default=None,
    metavar="GROUP",
    help="Group of the socket file (with --socket-mode 0660: libvirt's qemu group, e.g. "
    "libvirt-qemu, as install-libvirt sets it).",
)
@click.option(
    "--fresh-roots",
    is_flag=True,
    help="A new state gets emulated ARK/ASK keys of its own instead of the profile's, made "
    "once and kept in the user's cache directory ($SEVLAUNCH_CACHE_DIR, else "
    "$XDG_CACHE_HOME/sevlaunch); costs about 2 s.",
)
def serve(
    state_dir: str,
    socket_path: str,
    profile: str | None,
    latency: str,
    socket_mode: str,
    socket_group: str | None,
    fresh_roots: bool,
) -> None:
    """Serve one emulated platform on a Unix socket until SIGTERM or SIGINT.

    A new state is a new chip (its own chip id, CEK, PEK, PDH) certified by its profile's
    emulated ARK and ASK, as AMD certifies every chip of a generation with the same two: they
    are made the first time (about 2 s) and kept in the user's cache directory.
    """
    import os

    from sevlaunch._files import socket_directory
    from sevlaunch._http import platform_socket
    from sevlaunch._storage import require_writable
    from sevlaunch.platform.latency import MODELS
    from sevlaunch.platform.service import open_service, real_firmware, run

    gid = _group_id(socket_group) if socket_group is not None else None
    logging.basicConfig(level=logging.INFO, format="sevlaunch platform: %(message)s")
    os.umask(0o077)  # state and socket are the service's alone, whatever the caller's umask
    with errors_to_exit(code=EXIT_USAGE):
        socket_path = platform_socket(socket_path)
        socket_directory(Path(socket_path))
    with errors_to_exit():
        require_writable(state_dir, "state directory")
    with errors_to_exit(code=EXIT_USAGE):
        factory = functools.partial(real_firmware, fresh_roots=fresh_roots)
        service = open_service(state_dir, profile, latency=MODELS[latency], factory=factory)
    store = service.store
    if store is None:
        fail(f"the platform service at {state_dir} has no state store", code=EXIT_USAGE)
    held = store

    def ready() -> None:
        if gid is not None:
            os.chown(socket_path, -1, gid)
        click.echo(
            f"sevlaunch platform: {service.profile.name} platform (state {state_dir}) "
            f"listening on {socket_path}",
            err=True,
        )

    try:
        with errors_to_exit():
            run(service, socket_path, mode=int(socket_mode, 8), ready=ready)
    finally:
        held.unlock()


def _group_id(name: str) -> int:
    import grp

    try:
        return grp.getgrnam(name).gr_gid
    except KeyError as exc:
        raise click.BadParameter(f"no group {name!r}", param_hint="--socket-group") from exc


def _client(socket_path: str) -> PlatformClient:
    from sevlaunch.platform.client import PlatformClient

    return PlatformClient(socket_path)


def _status_fields(socket_path: str) -> dict[str, Any]:
    from sevlaunch.formats.states import PlatformState

    with _client(socket_path) as client:
        s = client.platform_status()
    try:
        state = PlatformState(s.state).name
    except ValueError:
        state = f"unknown ({s.state})"
    return {
        "api_major": s.api_major,
        "api_minor": s.api_minor,
        "build_id": s.build_id,
        "state": state,
        "owner": "external" if s.externally_owned else "self",
        "es_configured": s.es_initialized,
        "guest_count": s.guest_count,
    }


@platform.command()
@_socket_option
@json_option
def status(socket_path: str, as_json: bool) -> None:
    """Show API version, build, state, owner, SEV-ES and guest count (PLATFORM_STATUS)."""
    with errors_to_exit(as_json=as_json):
        info = _status_fields(socket_path)
    if as_json:
        emit_json(info)
        return
    click.echo(f"API version: {info['api_major']}.{info['api_minor']}")
    click.echo(f"build: {info['build_id']}")
    click.echo(f"state: {info['state']}")
    click.echo(f"owner: {info['owner']}-owned")
    click.echo(f"SEV-ES: {'configured' if info['es_configured'] else 'not configured'}")
    click.echo(f"guests: {info['guest_count']}")


@platform.command()
@_socket_option
@click.option(
    "--es/--no-es",
    default=None,
    help="Enable SEV-ES (default: when the part has SEV-ES ASIDs, as Linux does).",
)
@click.option(
    "--snp",
    is_flag=True,
    help="Bring SEV-SNP up first (SNP_INIT, then SEV's INIT), as Linux's ccp driver does at "
    "load; needed before SNP guests once SEV guests run. Idempotent.",
)
def init(socket_path: str, es: bool | None, snp: bool) -> None:
    """INIT the platform (UNINIT -> INIT)."""
    with errors_to_exit(), _client(socket_path) as client:
        if snp:
            from sevlaunch.formats.states import PlatformState
            from sevlaunch.platform import snp_calls

            client.run(snp_calls.ensure_snp_init())
            if client.platform_status().state == PlatformState.UNINIT:  # then SEV, as Linux
                client.init(es)
            return
        client.init(es)


def _simple(name: str, method: str, doc: str) -> click.Command:
    @_socket_option
    def command(socket_path: str) -> None:
        with errors_to_exit(), _client(socket_path) as client:
            getattr(client, method)()

    command.__doc__ = doc
    return platform.command(name)(command)


_simple("shutdown", "shutdown", "SHUTDOWN the platform (-> UNINIT); guests are lost.")
_simple(
    "reset",
    "platform_reset",
    "Reset to factory state: new PEK, OCA and PDH, self-owned (SHUTDOWN first if INIT).",
)
_simple(
    "pek-gen", "pek_gen", "Generate a new PEK (and OCA and PDH); the platform becomes self-owned."
)
_simple("pdh-gen", "pdh_gen", "Generate a new PDH, signed by the current PEK.")


@platform.command("get-id")
@_socket_option
def get_id(socket_path: str) -> None:
    """Print the chip ID (GET_ID) in hex, as AMD's key server names the CEK."""
    with errors_to_exit(), _client(socket_path) as client:
        chip_id = client.get_id()
    click.echo(chip_id.hex().upper())


@platform.command("pek-csr")
@_socket_option
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="CSR file to write.")
def pek_csr(socket_path: str, out: str) -> None:
    """Write the PEK certificate signing request (0x824 bytes) for an owner to sign."""
    with errors_to_exit(), _client(socket_path) as client:
        csr = client.pek_csr()
    _write(out, csr, "CSR file")


@platform.command("pek-cert-import")
@_socket_option
@click.option(
    "--pek",
    "pek_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The PEK certificate signed by the owner (from pek-csr).",
)
@click.option(
    "--oca",
    "oca_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The owner's OCA certificate.",
)
def pek_cert_import(socket_path: str, pek_path: str, oca_path: str) -> None:
    """Take ownership: import the owner-signed PEK and the owner's OCA certificate."""
    pek = read_file(pek_path, "PEK certificate")
    oca = read_file(oca_path, "OCA certificate")
    with errors_to_exit(), _client(socket_path) as client:
        client.pek_cert_import(pek, oca)


@platform.command()
@_socket_option
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Chain file to write.")
@click.option(
    "--full",
    is_flag=True,
    help="Use the ASK-signed CEK and append the emulated ASK ‖ ARK.",
)
def export(socket_path: str, out: str, full: bool) -> None:
    """Export the chain: PDH ‖ PEK ‖ OCA ‖ CEK (sevctl export), with --full ‖ ASK ‖ ARK."""
    from dataclasses import replace

    from sevlaunch.formats.chain import CaChain
    from sevlaunch.formats.sevcert import SevCert

    with errors_to_exit(), _client(socket_path) as client:
        chain = client.pdh_cert_export()
        if full:
            chain = replace(
                chain,
                cek=SevCert.from_bytes(client.signed_cek()),
                ca=CaChain.from_bytes(client.ca_chain()),
            )
    _write(out, chain.to_bytes(), "chain file")


@platform.command("export-root")
@_socket_option
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False),
    help="CA file to write (e.g. ask_ark_emulated.cert).",
)
@click.option("--ark-only", is_flag=True, help="Write the ARK alone, without the ASK.")
def export_root(socket_path: str, out: str, ark_only: bool) -> None:
    """Write the emulated CA file ASK ‖ ARK, as AMD publishes ask_ark_<gen>.cert: the root to
    trust (broker trust add FILE, owner verify --trust-root FILE) and the CA of a chain
    without one (owner verify --ca FILE)."""
    with errors_to_exit(), _client(socket_path) as client:
        data = client.ark() if ark_only else client.ca_chain()
    _write(out, data, "CA file")
    click.echo(f"wrote {out}: the emulated {'ARK' if ark_only else 'ASK ‖ ARK'}")


@platform.command()
@_socket_option
@click.option(
    "--listen",
    envvar="SEVLAUNCH_KDS_LISTEN",
    show_envvar=True,
    default="tcp:127.0.0.1:0",
    show_default=True,
    metavar="ADDRESS",
    help="tcp:HOST:PORT (or http://HOST:PORT) to serve on; port 0 picks a free one.",
)
def kds(socket_path: str, listen: str) -> None:
    """Serve this platform's AMD-key-server counterpart over HTTP: its ASK-signed CEK at
    /cek/id/<chip id> and its emulated CA at /ask_ark_emulated.cert. Prints its URL on stdout
    once it listens (use it as --kds-url or SEVLAUNCH_KDS_URL). It serves public
    certificates only, so plain HTTP needs no token."""
    from sevlaunch import _http
    from sevlaunch.cli._conn import deprecated
    from sevlaunch.platform.kds_server import KdsServer

    if _http.HOST_PORT.match(listen):
        deprecated(f"--listen {listen}", f"--listen tcp:{listen}")
        listen = f"tcp:{listen}"
    with errors_to_exit(code=EXIT_USAGE):
        address = _http.parse(listen, what="key server listener")
        path = _http.platform_socket(socket_path)
        if address.scheme != "http" or address.prefix:
            raise UsageError(f"--listen takes tcp:HOST:PORT or http://HOST:PORT, got {listen!r}")
        try:
            server = KdsServer((address.host, address.port), path)
        except OSError as exc:
            raise UsageError(f"cannot listen on {address}: {exc.strerror or exc}") from exc
    click.echo(server.url)  # alone on stdout, for $(...) or a file: before the ready line
    click.echo(f"sevlaunch kds: key server of {path} listening on {server.url}", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _libvirt_commands() -> None:
    from sevlaunch.cli.platform_libvirt import install_libvirt, uninstall_libvirt

    platform.add_command(install_libvirt)
    platform.add_command(uninstall_libvirt)


_libvirt_commands()
