"""``sevlaunch owner verify``: prove a platform chain or an AMD CA file to a trusted root."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

import click

from sevlaunch.cli._util import EXIT_USAGE, emit_json, errors_to_exit, fail, json_option, read_file
from sevlaunch.cli.owner._chain import chain_options
from sevlaunch.crypto.chain import Link, VerifiedCa, VerifiedPlatform
from sevlaunch.errors import ChainError, FormatError, SevlaunchError
from sevlaunch.formats.chain import PlatformChain
from sevlaunch.formats.sevcert import SevCert
from sevlaunch.owner.verify import trust_store, verify_ca_file, verify_chain_file

if TYPE_CHECKING:
    from sevlaunch.kds import CachedCa


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
@chain_options(chain_required=False)
@click.option(
    "--fetch",
    is_flag=True,
    help="If the chain has no ASK and ARK, no --ca is given and AMD's CA file is not cached, "
    "download it from AMD (see 'sevlaunch owner fetch-ca').",
)
@click.option(
    "--kds-url",
    metavar="URL",
    help="With --fetch: a mirror of AMD's key server (also $SEVLAUNCH_KDS_URL).",
)
@json_option
def verify(
    *,
    chain_path: str | None,
    ca_path: str | None,
    cek_path: str | None,
    trust_roots: tuple[str, ...],
    fetch: bool,
    kds_url: str | None,
    as_json: bool,
) -> None:
    """Verify a platform certificate chain, or an AMD CA file alone, up to a trusted ARK.

    Each link checked is printed. Exit 0 when every link verifies, 1 when one fails (it is
    named), 2 on a usage error. A chain without ASK and ARK and no --ca uses AMD's CA file
    from the cache (the one whose ASK signed the CEK); exit 2 when none is cached.
    """
    if chain_path is None and ca_path is None:
        fail(
            "give --chain FILE (with --ca FILE unless the chain is a full export) or --ca FILE alone",
            code=EXIT_USAGE,
            as_json=as_json,
        )
    if chain_path is None and cek_path is not None:
        fail("--cek needs --chain", code=EXIT_USAGE, as_json=as_json)
    if kds_url is not None and not fetch:
        fail("--kds-url needs --fetch", code=EXIT_USAGE, as_json=as_json)
    with errors_to_exit(as_json=as_json, code=EXIT_USAGE):
        trust = trust_store([read_file(p, "trust root") for p in trust_roots])
        ca = read_file(ca_path, "CA file") if ca_path else None
        chain = read_file(chain_path, "chain file") if chain_path else None
        cek = read_file(cek_path, "CEK file") if cek_path else None
    cached = None
    if chain is not None and ca is None:
        cached = _cached_ca(chain, cek, fetch=fetch, kds_url=kds_url, as_json=as_json)
        ca = cached.data if cached is not None else None
    try:
        if chain is None:
            # the options check above makes --ca present here; empty bytes would not parse
            verified_ca = verify_ca_file(ca or b"", trust)
            links, platform = verified_ca.links, None
        else:
            platform = verify_chain_file(chain, trust, ca=ca, cek=cek)
            verified_ca, links = platform.ca, platform.links
    except ChainError as exc:
        _chain_failure(exc, as_json)
    except SevlaunchError as exc:
        fail(_named(exc, chain_path, ca_path), as_json=as_json)
    if as_json:
        out: dict[str, Any] = {"ok": True, "links": _links(links), **_ca_summary(verified_ca)}
        if cached is not None:
            out["ca_file"] = str(cached.path)
        if platform is not None:
            out["api_major"], out["api_minor"] = platform.pdh.api_major, platform.pdh.api_minor
        emit_json(out)
    else:
        _print_human(verified_ca, links, platform)


def _named(exc: SevlaunchError, *paths: str | None) -> str:
    """A structure that does not parse is named by the file(s) it came from."""
    if not isinstance(exc, FormatError):
        return str(exc)
    return ", ".join(str(p) for p in paths if p) + f": {exc}"


def _chain_failure(exc: ChainError, as_json: bool) -> NoReturn:
    if as_json:
        emit_json({"ok": False, "failed_link": exc.link, "error": str(exc)})
        raise SystemExit(1) from None  # the JSON above is the report; no traceback context
    fail(f"link {exc}")


def _cached_ca(
    chain: bytes, cek: bytes | None, *, fetch: bool, kds_url: str | None, as_json: bool
) -> CachedCa | None:
    """AMD's CA for a chain that carries none: from the cache or, with --fetch, downloaded.

    None when the chain carries its CA or does not parse (the verification reports that).
    """
    from sevlaunch import kds

    try:
        parsed = PlatformChain.from_bytes(chain)
        signed_cek = SevCert.from_bytes(cek) if cek is not None else parsed.cek
    except FormatError:
        return None
    if parsed.ca is not None:
        return None
    try:
        cache = kds.CertCache.default()
        download = kds.KdsClient(kds_url, cache=cache).fetch_ca if fetch else None
        found = kds.ca_for_cek(signed_cek, cache, fetch=download)
    except ChainError as exc:
        _chain_failure(exc, as_json)
    except SevlaunchError as exc:
        fail(str(exc), code=EXIT_USAGE, as_json=as_json)
    if not as_json:
        click.echo(f"ca: AMD {found.generation} CA file {found.path}")
    return found
