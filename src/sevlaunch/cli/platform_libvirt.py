"""``sevlaunch platform install-libvirt`` / ``uninstall-libvirt``: let Debian's libvirtd drive
``sevlaunch-vmm`` on this host's emulated platform (:mod:`sevlaunch.platform.libvirt_setup`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from sevlaunch.cli._conn import platform_option
from sevlaunch.cli._util import EXIT_USAGE, errors_to_exit


def _vmm() -> str:
    return str(Path(sys.executable).parent / "sevlaunch-vmm")


@click.command("install-libvirt")
@platform_option(dest="socket_path")
@click.option(
    "--emulator",
    type=click.Path(dir_okay=False, exists=True),
    default=_vmm,
    show_default="sevlaunch-vmm beside this sevlaunch",
    help="The VMM libvirt domains name as their <emulator>.",
)
@click.option(
    "--qemu-user",
    default=None,
    help='Set qemu.conf user and group (root: "+0", for a VMM only root can run).',
)
@click.option(
    "--no-virtlogd",
    is_flag=True,
    help='Set qemu.conf stdio_handler = "file": this host runs libvirtd without virtlogd.',
)
@click.option(
    "--default-emulator-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Link DIR/qemu-system-x86_64 to the VMM; a libvirtd with DIR first on its PATH "
    "answers virsh nodesevinfo (virNodeGetSEVInfo) from the emulated platform.",
)
def install_libvirt(
    socket_path: str,
    emulator: str,
    qemu_user: str | None,
    no_virtlogd: bool,
    default_emulator_dir: str | None,
) -> None:
    """Link /dev/sev to the platform socket, open the socket to libvirt's qemu user, check
    that user can run the VMM, set qemu.conf and drop libvirt's cached capabilities of the
    VMM. Every change is recorded; uninstall-libvirt reverts them. Needs root."""
    from sevlaunch._http import platform_socket
    from sevlaunch.platform.libvirt_setup import Request, install

    with errors_to_exit(code=EXIT_USAGE):
        request = Request(
            socket=Path(platform_socket(socket_path)),
            emulator=Path(emulator).absolute(),
            qemu_user=qemu_user,
            stdio_file=no_virtlogd,
            default_emulator_dir=Path(default_emulator_dir).absolute()
            if default_emulator_dir
            else None,
        )
        install(request, log=lambda line: click.echo(line, err=True))
    click.echo(f"libvirt domains can now use <emulator>{request.emulator}</emulator>")


@click.command("uninstall-libvirt")
def uninstall_libvirt() -> None:
    """Revert what install-libvirt changed (what was changed since is left alone)."""
    from sevlaunch.platform.libvirt_setup import uninstall

    with errors_to_exit(code=EXIT_USAGE):
        uninstall(log=lambda line: click.echo(line, err=True))
