"""``sevlaunch owner fetch-ca`` and ``fetch-cek``: download AMD's certificates into the cache.

These are the only commands (with ``owner verify --fetch``) that touch the network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from sevlaunch.cli._util import EXIT_USAGE, emit_json, fail, json_option, read_file
from sevlaunch.crypto.truststore import GENERATIONS
from sevlaunch.errors import SevlaunchError
from sevlaunch.kds import (
    DEFAULT_TIMEOUT,
    KDS_URL_ENV,
    CachedCa,
    CachedCek,
    KdsClient,
    parse_chip_id,
    write_atomic,
)


def kds_url_option(func: Any) -> Any:
    return click.option(
        "--kds-url",
        metavar="URL",
        help=f"A mirror of AMD's key server instead of AMD's own (also ${KDS_URL_ENV}).",
    )(func)


def _timeout_option(func: Any) -> Any:
    return click.option(
        "--timeout",
        type=click.FloatRange(min=0.1),
        default=DEFAULT_TIMEOUT,
        show_default=True,
        help="Give up on a download after this many seconds.",
    )(func)


def _out_option(func: Any) -> Any:
    return click.option(
        "--out",
        "out_path",
        type=click.Path(dir_okay=False),
        help="Also write the file here (besides the cache).",
    )(func)


def _report(
    kind: str, cached: Path, out: Path | None, extra: dict[str, Any], as_json: bool
) -> None:
    if as_json:
        emit_json(
            {"ok": True, "kind": kind, "cached": str(cached), **extra}
            | ({"written": str(out)} if out else {})
        )
        return
    click.echo(f"cached: {cached}")
    if out is not None:
        click.echo(f"written: {out}")


def _write_out(out_path: str | None, data: bytes) -> Path | None:
    return write_atomic(Path(out_path), data) if out_path else None


@click.command("fetch-ca")
@click.option(
    "--gen",
    "generation",
    required=True,
    type=click.Choice(GENERATIONS),
    help="The platform's EPYC generation.",
)
@_out_option
@kds_url_option
@_timeout_option
@json_option
def fetch_ca(
    *, generation: str, out_path: str | None, kds_url: str | None, timeout: float, as_json: bool
) -> None:
    """Download AMD's CA file (ASK ‖ ARK) of a generation, verify it, and cache it.

    The file is cached only when its ARK is AMD's pinned root of that generation and the
    ARK signed the ASK. Exit 0 on success, 2 when it could not be obtained.
    """
    try:
        ca = KdsClient(kds_url, timeout=timeout).fetch_ca(generation)
        out = _write_out(out_path, ca.data)
    except SevlaunchError as exc:
        fail(str(exc), code=EXIT_USAGE, as_json=as_json)
    if not as_json:
        _print_ca(ca)
    _report("ca", ca.path, out, _ca_fields(ca), as_json)


def _ca_fields(ca: CachedCa) -> dict[str, Any]:
    return {
        "generation": ca.generation,
        "ark_key_id": ca.verified.ark.key_id.hex(),
        "ask_key_id": ca.verified.ask.key_id.hex(),
        "ark_fingerprint": ca.verified.root.fingerprint,
    }


def _print_ca(ca: CachedCa) -> None:
    for link in ca.verified.links:
        click.echo(f"  ok  {link}")
    v = ca.verified
    click.echo(
        f"root: AMD {ca.generation} (ARK key id {v.ark.key_id.hex()}, "
        f"ASK key id {v.ask.key_id.hex()})"
    )


@click.command("fetch-cek")
@click.option("--chip-id", "chip_id_text", metavar="HEX", help="GET_ID output, 128 hex digits.")
@click.option(
    "--id-file",
    "id_path",
    type=click.Path(dir_okay=False),
    help="A file with the chip id: GET_ID's raw bytes, hex, or base64 (libvirt's cpu0-id).",
)
@_out_option
@kds_url_option
@_timeout_option
@json_option
def fetch_cek(
    *,
    chip_id_text: str | None,
    id_path: str | None,
    out_path: str | None,
    kds_url: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Download the AMD-signed CEK of a chip from AMD's key server and cache it.

    Pass it to ``sevlaunch owner verify --cek FILE`` when a chain's CEK is unsigned (as the
    firmware exports it). Exit 0 on success, 2 when it could not be obtained.
    """
    if (chip_id_text is None) == (id_path is None):
        fail(
            "give exactly one of --chip-id HEX or --id-file FILE", code=EXIT_USAGE, as_json=as_json
        )
    try:
        if id_path is not None:
            chip_id = parse_chip_id(read_file(id_path, "chip id file"))
        else:
            chip_id = parse_chip_id((chip_id_text or "").encode())
        cek = KdsClient(kds_url, timeout=timeout).fetch_cek(chip_id)
        out = _write_out(out_path, cek.data)
    except (SevlaunchError, click.UsageError) as exc:
        message = exc.format_message() if isinstance(exc, click.UsageError) else str(exc)
        fail(message, code=EXIT_USAGE, as_json=as_json)
    _report("cek", cek.path, out, _cek_fields(cek), as_json)


def _cek_fields(cek: CachedCek) -> dict[str, Any]:
    return {"chip_id": cek.chip_id, "api_major": cek.cek.api_major, "api_minor": cek.cek.api_minor}
