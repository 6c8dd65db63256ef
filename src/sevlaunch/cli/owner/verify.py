"""``sevlaunch owner verify``: prove a platform chain or an AMD CA file to a trusted root."""

from __future__ import annotations

from typing import Any

import click

from sevlaunch.cli._util import EXIT_USAGE, emit_json, errors_to_exit, fail, json_option, read_file
from sevlaunch.crypto.chain import Link, VerifiedCa, VerifiedPlatform
from sevlaunch.errors import ChainError, SevlaunchError
from sevlaunch.owner.verify import trust_store, verify_ca_file, verify_chain_file


def _ca_summary(ca: VerifiedCa) -> dict[str, Any]:
    return {
        "generation": ca.root.name,
        "amd_root": ca.root.amd,
        "ark_key_id": ca.ark.key_id.hex(),
        "ask_key_id": ca.ask.key_id.hex(),
        "ark_fingerprint": ca.root.fingerprint,
    }


def _links(links: tuple[Link, ...]) -> list[dict[str, str]]:
    return [{"signer": k.signer, "subject": k.subject, "method": k.method} for k in links]


def _print_human(
    ca: VerifiedCa, links: tuple[Link, ...], platform: VerifiedPlatform | None
) -> None:
    root = f"AMD {ca.root.name}" if ca.root.amd else f"user-trusted root {ca.root.name}"
    for link in links:
        click.echo(f"  ok  {link}")
    click.echo(f"root: {root} (ARK key id {ca.ark.key_id.hex()}, ASK key id {ca.ask.key_id.hex()})")
    if platform is not None:
        pdh = platform.pdh
        click.echo(f"platform firmware API {pdh.api_major}.{pdh.api_minor}; PDH verified")


@click.command()
@click.option(
    "--chain",
    "chain_path",
    type=click.Path(dir_okay=False),
    help="Platform chain: PDH ‖ PEK ‖ OCA ‖ CEK [‖ ASK ‖ ARK].",
)
@click.option(
    "--ca",
    "ca_path",
    type=click.Path(dir_okay=False),
    help="AMD CA file: ASK ‖ ARK (ask_ark_<gen>.cert).",
)
@click.option(
    "--cek",
    "cek_path",
    type=click.Path(dir_okay=False),
    help="AMD-signed CEK from AMD's key server, replacing the chain's CEK.",
)
@click.option(
    "--trust-root",
    "trust_roots",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Also trust this ARK (AMD format), e.g. an emulated platform's root. Repeatable.",
)
@json_option
def verify(
    chain_path: str | None,
    ca_path: str | None,
    cek_path: str | None,
    trust_roots: tuple[str, ...],
    as_json: bool,
) -> None:
    """Verify a platform certificate chain, or an AMD CA file alone, up to a trusted ARK.

    Each link checked is printed. Exit 0 when every link verifies, 1 when one fails (it is
    named), 2 on a usage error.
    """
    if chain_path is None and ca_path is None:
        fail(
            "give --chain FILE (with --ca FILE unless the chain is a full export) or --ca FILE alone",
            code=EXIT_USAGE,
            as_json=as_json,
        )
    if chain_path is None and cek_path is not None:
        fail("--cek needs --chain", code=EXIT_USAGE, as_json=as_json)
    with errors_to_exit(as_json=as_json, code=EXIT_USAGE):
        trust = trust_store([read_file(p, "trust root") for p in trust_roots])
        ca = read_file(ca_path, "CA file") if ca_path else None
        chain = read_file(chain_path, "chain file") if chain_path else None
        cek = read_file(cek_path, "CEK file") if cek_path else None
    try:
        if chain is None:
            assert ca is not None
            verified_ca = verify_ca_file(ca, trust)
            links, platform = verified_ca.links, None
        else:
            platform = verify_chain_file(chain, trust, ca=ca, cek=cek)
            verified_ca, links = platform.ca, platform.links
    except ChainError as exc:
        if as_json:
            emit_json({"ok": False, "failed_link": exc.link, "error": str(exc)})
            raise SystemExit(1) from None
        fail(f"link {exc}")
    except SevlaunchError as exc:
        fail(str(exc), as_json=as_json)
    if as_json:
        out: dict[str, Any] = {"ok": True, "links": _links(links), **_ca_summary(verified_ca)}
        if platform is not None:
            out["api_major"], out["api_minor"] = platform.pdh.api_major, platform.pdh.api_minor
        emit_json(out)
    else:
        _print_human(verified_ca, links, platform)
