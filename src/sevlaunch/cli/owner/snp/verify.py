"""``sevlaunch owner snp verify``: run every check of an SNP attestation report and print a
verdict per check. Exit 0 when every check passes or was explicitly waived, 1 when any
fails (each failure is listed), 2 on bad input.

Certificates come from ``--vcek``/``--ca``/``--crl``, an extended report's ``--cert-table``,
or the local cache (``owner snp fetch``); ``--fetch`` downloads what is missing.
"""

from __future__ import annotations

import dataclasses
import datetime
import sys
from typing import Any

import click

from sevlaunch.cli._util import EXIT_USAGE, emit_json, errors_to_exit, fail, read_file
from sevlaunch.cli.owner.snp.fetch import PRODUCTS
from sevlaunch.cli.owner.snp.report import read_report


def _hex(text: str, what: str, size: int | None = None) -> bytes:
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError as exc:
        raise click.UsageError(f"{what} must be hex") from exc
    if size is not None and len(raw) != size:
        raise click.UsageError(f"{what} is {size} bytes ({2 * size} hex digits), got {len(raw)}")
    return raw


def _at(text: str | None) -> datetime.datetime:
    if text is None:
        return datetime.datetime.now(datetime.UTC)
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError as exc:
        raise click.UsageError(f"--at {text!r} is not an ISO 8601 time") from exc
    return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)


def expectation_overrides(opts: dict[str, Any]) -> dict[str, Any]:
    """The expectations the command-line options set (only those given)."""
    from sevlaunch.owner.snp.expectations import TcbMinimum

    out: dict[str, Any] = {}
    if opts["expected_digest"]:
        out["measurements"] = tuple(
            _hex(d, "--expected-digest", 48) for d in opts["expected_digest"]
        )
    if opts["report_data"] is not None:
        out["report_data"] = _hex(opts["report_data"], "--report-data")
    if opts["host_data"] is not None:
        out["host_data"] = _hex(opts["host_data"], "--host-data")
    if opts["vmpl"] is not None:
        out["vmpl"] = None if opts["vmpl"] == "any" else int(opts["vmpl"])
    for flag in (
        "any_measurement",
        "any_report_data",
        "allow_debug",
        "allow_migrate_ma",
        "allow_provisional_firmware",
    ):
        if opts[flag]:
            out[flag] = True
    if opts["no_crl"]:
        out["require_crl"] = False
    if opts["min_tcb"]:
        out["min_reported_tcb"] = TcbMinimum.parse(opts["min_tcb"])
    if opts["min_launch_tcb"]:
        out["min_launch_tcb"] = TcbMinimum.parse(opts["min_launch_tcb"])
    if opts["vlek_csp"]:
        out["vlek_csp_ids"] = tuple(opts["vlek_csp"])
    if opts["trusted_id_key"]:
        out["trusted_id_keys"] = tuple(
            _hex(k, "--trusted-id-key", 48) for k in opts["trusted_id_key"]
        )
    return out


@click.command()
@click.argument("report_file", type=click.Path(dir_okay=False))
@click.option(
    "--vcek",
    type=click.Path(dir_okay=False),
    help="VCEK or VLEK (DER or PEM; a PEM bundle VCEK+ASK+ARK also serves as --ca).",
)
@click.option(
    "--ca", type=click.Path(dir_okay=False), help="KDS cert_chain: ASK (or ASVK) and ARK, PEM."
)
@click.option("--crl", type=click.Path(dir_okay=False), help="AMD's CRL of the product (DER).")
@click.option("--no-crl", is_flag=True, help="Accept the report without a CRL check.")
@click.option(
    "--cert-table",
    type=click.Path(dir_okay=False),
    help="An extended report's certificate table (host-supplied, not trusted).",
)
@click.option(
    "--expected-digest",
    multiple=True,
    metavar="HEX",
    help="An acceptable MEASUREMENT (repeatable); see 'owner snp digest'.",
)
@click.option("--any-measurement", is_flag=True, help="Waive the measurement check.")
@click.option("--report-data", metavar="HEX", help="Expected REPORT_DATA (zero-padded to 64).")
@click.option("--any-report-data", is_flag=True, help="Waive the report-data (freshness) check.")
@click.option("--host-data", metavar="HEX", help="Expected HOST_DATA (zero-padded to 32).")
@click.option(
    "--vmpl", type=click.Choice(["0", "1", "2", "3", "any"]), help="Expected VMPL (default 0)."
)
@click.option("--allow-debug", is_flag=True, help="Accept a policy that allows debugging.")
@click.option("--allow-migrate-ma", is_flag=True, help="Accept a migration agent.")
@click.option(
    "--allow-provisional",
    "allow_provisional_firmware",
    is_flag=True,
    help="Accept firmware that is newer than what is committed.",
)
@click.option("--min-tcb", metavar="SPEC", help="Minimum REPORTED_TCB, e.g. bl=3,snp=8,ucode=115.")
@click.option("--min-launch-tcb", metavar="SPEC", help="Minimum LAUNCH_TCB.")
@click.option("--vlek-csp", multiple=True, metavar="ID", help="A trusted VLEK cloud (cspId).")
@click.option(
    "--trusted-id-key",
    multiple=True,
    metavar="HEX",
    help="A trusted ID key digest (SHA-384, from 'owner snp id-block').",
)
@click.option(
    "--expectations",
    "expectations_file",
    type=click.Path(dir_okay=False),
    help="Expectations as JSON (a broker's stored policy); options given override.",
)
@click.option(
    "--at", "at_text", metavar="TIME", help="Verify as of this ISO 8601 time (default: now)."
)
@click.option(
    "--product",
    type=click.Choice(PRODUCTS, case_sensitive=False),
    help="Generation of a version 2 report, for the cache and KDS.",
)
@click.option("--fetch", is_flag=True, help="Download missing certificates from AMD's KDS.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts as JSON.")
def verify(
    report_file: str,
    vcek: str | None,
    ca: str | None,
    crl: str | None,
    cert_table: str | None,
    expectations_file: str | None,
    at_text: str | None,
    product: str | None,
    fetch: bool,
    as_json: bool,
    **opts: Any,
) -> None:
    """Verify an SNP attestation report: signature, chain, CRL, TCB, policy and bindings."""
    from sevlaunch.owner.snp.expectations import SnpExpectations
    from sevlaunch.owner.snp.verifier import SnpEvidence, check_report

    if opts["no_crl"] and crl:
        raise click.UsageError("--crl and --no-crl exclude each other")
    at = _at(at_text)
    with errors_to_exit(as_json=as_json, code=EXIT_USAGE):
        base = (
            SnpExpectations.from_json(read_file(expectations_file, "expectations").decode())
            if expectations_file
            else SnpExpectations()
        )
        exp = dataclasses.replace(base, **expectation_overrides(opts))
        raw = read_report(report_file)
        evidence = SnpEvidence(
            raw,
            leaf=read_file(vcek, "--vcek") if vcek else None,
            ca=read_file(ca, "--ca") if ca else None,
            crl=read_file(crl, "--crl") if crl else None,
            cert_table=read_file(cert_table, "--cert-table") if cert_table else None,
        )
    if (evidence.leaf is None and evidence.cert_table is None) or (
        evidence.crl is None and exp.require_crl
    ):
        with errors_to_exit(as_json=as_json):
            evidence = _from_cache(evidence, exp.require_crl, product, fetch)
    verdicts = check_report(evidence, exp, at=at)
    if as_json:
        emit_json(verdicts.as_dict())
    else:
        for v in verdicts.verdicts:
            click.echo(f"{v.outcome.value:<4}  {v.check:<15}  {v.detail}")
        click.echo(
            "OK: every check passed"
            if verdicts.ok
            else f"FAILED: {', '.join(v.check for v in verdicts.failed)}"
        )
    sys.exit(0 if verdicts.ok else 1)


def _from_cache(evidence: Any, want_crl: bool, product: str | None, fetch: bool) -> Any:
    """Fill the VCEK, cert_chain and CRL from the cache (downloading with ``fetch``)."""
    from sevlaunch.errors import TrustStoreError
    from sevlaunch.formats.snp import AttestationReport, Generation
    from sevlaunch.kds.snp import SnpKdsClient

    report = AttestationReport.from_bytes(evidence.report)
    gen = report.generation or (Generation.parse(product) if product else None)
    need_leaf = evidence.leaf is None and evidence.cert_table is None
    if gen is None:
        if need_leaf:
            fail(
                "a version 2 report does not name its generation: give --product or --vcek",
                code=EXIT_USAGE,
            )
        return evidence  # the CRL check then fails, saying what to give
    client = SnpKdsClient()
    changes: dict[str, bytes] = {}
    if need_leaf:
        changes["leaf"] = client.vcek_for_report(report, gen, fetch=fetch).data
    if evidence.ca is None and evidence.cert_table is None:
        changes["ca"] = client.ca(gen, fetch=fetch).data
    if evidence.crl is None and want_crl:
        try:
            cached = client.load_crl(gen)
            if cached is None and fetch:
                cached = client.fetch_crl(gen)
        except TrustStoreError:
            if fetch:
                raise
            cached = None  # not cached: the crl check fails and says how to get one
        if cached is not None:
            changes["crl"] = cached.data
    return dataclasses.replace(evidence, **changes)
