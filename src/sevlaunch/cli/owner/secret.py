"""``sevlaunch owner secret``: build the LAUNCH_SECRET packet for a validated launch.

Prints (or writes) the base64 header and payload that ``virsh domsetlaunchsecstate
--secrethdr/--secret`` and QMP ``sev-inject-launch-secret`` take.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

import click

from sevlaunch.cli._util import EXIT_USAGE, errors_to_exit, read_file
from sevlaunch.cli.owner.validate import read_keys
from sevlaunch.crypto.launch import TransportKeys
from sevlaunch.formats.ovmf import OvmfFooterTable
from sevlaunch.owner.measurement import decode_measurement
from sevlaunch.owner.secret import build_packet, secret_table


def _parse_secret(spec: str) -> tuple[str, bytes]:
    guid, sep, path = spec.partition(":")
    if not sep or not guid or not path:
        raise click.UsageError(
            f"--secret {spec!r}: expected GUID:FILE or luks-key:FILE (e.g. luks-key:passphrase.txt)"
        )
    return guid, read_file(path, f"secret {guid}")


def _parse_iv(text: str) -> bytes:
    try:
        iv = base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        iv = b""
    if len(iv) != 16:
        raise click.UsageError(f"--iv {text!r}: expected 16 bytes in base64 (24 characters)")
    return iv


def _secret_area_size(firmware: str) -> int:
    area = OvmfFooterTable.from_image(read_file(firmware, "firmware")[-4096:]).secret_area
    if area is None or area.size == 0:
        raise click.UsageError(
            f"firmware {firmware} names no SEV secret area in its footer table (found "
            f"{area}); the guest could not receive a secret: use an AmdSev build of OVMF "
            "(OvmfPkg/AmdSev/AmdSevX64.dsc)"
        )
    return area.size


def _write(path: str, text: str) -> None:
    try:
        Path(path).write_text(text)
    except OSError as exc:
        raise click.UsageError(f"cannot write {path}: {exc.strerror}") from exc


@click.command()
@click.option("--tek", "tek_path", type=click.Path(dir_okay=False), help="TEK file (16 bytes).")
@click.option("--tik", "tik_path", type=click.Path(dir_okay=False), help="TIK file (16 bytes).")
@click.option("--tk", "tk_path", type=click.Path(dir_okay=False), help="TEK ‖ TIK file (32 bytes).")
@click.option(
    "--measurement", required=True, help="sev-measurement of the validated launch (base64)."
)
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    required=True,
    metavar="GUID:FILE",
    help="A secret for the guest under GUID (or the alias luks-key). Repeatable.",
)
@click.option(
    "--firmware",
    type=click.Path(dir_okay=False),
    help="OVMF image: refuse a table larger than its secret area.",
)
@click.option("--header-out", type=click.Path(dir_okay=False), help="Write the header here.")
@click.option("--payload-out", type=click.Path(dir_okay=False), help="Write the payload here.")
@click.option("--iv", "iv_text", hidden=True, help="Fixed IV (base64), for reproducible tests.")
def secret(
    tek_path: str | None,
    tik_path: str | None,
    tk_path: str | None,
    measurement: str,
    secrets: tuple[str, ...],
    firmware: str | None,
    header_out: str | None,
    payload_out: str | None,
    iv_text: str | None,
) -> None:
    """Encrypt secrets for a guest whose measurement you validated.

    Builds OVMF's secret table, encrypts it with the TEK and MACs it with the TIK over the
    measurement. Prints sev-secret-header=... and sev-secret=... (base64) unless written to
    --header-out/--payload-out. Exit 0 on success, 2 on bad input.
    """
    tik, tek = read_keys(tik_path, tek_path, tk_path)
    if tek is None:
        raise click.UsageError("the TEK encrypts the secret: give --tek FILE with --tik, or --tk")
    parsed = [_parse_secret(spec) for spec in secrets]
    iv = _parse_iv(iv_text) if iv_text is not None else None
    with errors_to_exit(code=EXIT_USAGE):
        area_size = _secret_area_size(firmware) if firmware else None
        packet = build_packet(
            secret_table(parsed),
            TransportKeys(tek, tik),
            decode_measurement(measurement),
            iv=iv,
            rng=os.urandom,
            area_size=area_size,
        )
    if header_out:
        _write(header_out, packet.header_b64)
    if payload_out:
        _write(payload_out, packet.payload_b64)
    if not header_out:
        click.echo(f"sev-secret-header={packet.header_b64}")
    if not payload_out:
        click.echo(f"sev-secret={packet.payload_b64}")
