"""``sevlaunch owner snp fetch vcek|ca|crl``: download SNP certificates from AMD's KDS into
the cache, each verified to AMD's pinned root before it is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from sevlaunch.cli._util import emit_json, errors_to_exit
from sevlaunch.cli.owner.snp.report import read_report

PRODUCTS = ["Milan", "Genoa", "Turin"]


def common(func: Any) -> Any:
    func = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(
        func
    )
    func = click.option("--out", type=click.Path(dir_okay=False), help="Also copy the file here.")(
        func
    )
    return click.option(
        "--kds-url",
        metavar="URL",
        help="A mirror laid out as kdsintf.amd.com (or $SEVLAUNCH_KDS_URL).",
    )(func)


def _client(kds_url: str | None):  # type: ignore[no-untyped-def]
    from sevlaunch.kds.snp import SnpKdsClient

    return SnpKdsClient(kds_url)


def _done(path: Path, data: bytes, out: str | None, as_json: bool, extra: dict[str, Any]) -> None:
    if out:
        from sevlaunch.kds import write_atomic

        write_atomic(Path(out), data)
    if as_json:
        emit_json({"ok": True, "path": str(path), **extra})
    else:
        click.echo(str(path))


def _kind(vlek: bool):  # type: ignore[no-untyped-def]
    from sevlaunch.crypto.snp.chain import SignerKind

    return SignerKind.VLEK if vlek else SignerKind.VCEK


@click.group()
def fetch() -> None:
    """Download VCEKs, cert_chains and CRLs from AMD's KDS (the only network use)."""


@fetch.command()
@click.argument("report_file", type=click.Path(dir_okay=False))
@click.option(
    "--product",
    type=click.Choice(PRODUCTS, case_sensitive=False),
    help="Needed for version 2 reports, which do not name their generation.",
)
@common
def vcek(
    report_file: str, product: str | None, kds_url: str | None, out: str | None, as_json: bool
) -> None:
    """The VCEK that signed REPORT_FILE (its CHIP_ID at its REPORTED_TCB)."""
    from sevlaunch.formats.snp import AttestationReport, Generation

    with errors_to_exit(as_json=as_json):
        parsed = AttestationReport.from_bytes(read_report(report_file))
        got = _client(kds_url).vcek_for_report(
            parsed, Generation.parse(product) if product else None
        )
        _done(got.path, got.data, out, as_json, {"product": got.chain.product.value})


@fetch.command()
@click.option(
    "--product",
    required=True,
    type=click.Choice(PRODUCTS, case_sensitive=False),
    help="The EPYC product whose chain to fetch.",
)
@click.option("--vlek", is_flag=True, help="The VLEK chain (ASVK and ARK).")
@common
def ca(product: str, vlek: bool, kds_url: str | None, out: str | None, as_json: bool) -> None:
    """AMD's cert_chain (ASK or ASVK, then ARK) of a product."""
    from sevlaunch.formats.snp import Generation

    with errors_to_exit(as_json=as_json):
        got = _client(kds_url).fetch_ca(Generation.parse(product), _kind(vlek))
        _done(got.path, got.data, out, as_json, {"product": got.verified.product.value})


@fetch.command()
@click.option(
    "--product",
    required=True,
    type=click.Choice(PRODUCTS, case_sensitive=False),
    help="The EPYC product whose CRL to fetch.",
)
@click.option("--vlek", is_flag=True, help="The VLEK chain's CRL.")
@common
def crl(product: str, vlek: bool, kds_url: str | None, out: str | None, as_json: bool) -> None:
    """AMD's CRL of a product, signed by its ARK."""
    from sevlaunch.formats.snp import Generation

    with errors_to_exit(as_json=as_json):
        got = _client(kds_url).fetch_crl(Generation.parse(product), _kind(vlek))
        _done(got.path, got.data, out, as_json, {"revoked": sorted(got.verified.revoked)})
