"""``sevlaunch owner snp validate``: check an SNP MEASUREMENT against the owner's launch and,
on a mismatch, say which usual mistake explains it (as ``owner validate`` does for SEV).
Exit 0 the measurement matches, 1 it does not, 2 bad input."""

from __future__ import annotations

import sys

import click

from sevlaunch.cli._util import EXIT_USAGE, emit_json, errors_to_exit, read_file
from sevlaunch.cli.owner.snp.digest import GuestOptions, guest_options
from sevlaunch.cli.owner.snp.report import read_report


@click.command()
@click.option(
    "--ovmf",
    "ovmfs",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False),
    help="OVMF image claimed; repeat to name other candidates (tried on a mismatch).",
)
@guest_options
@click.option("--measurement", metavar="HEX", help="The report's MEASUREMENT (96 hex digits).")
@click.option(
    "--report",
    "report_file",
    type=click.Path(dir_okay=False),
    help="Take the MEASUREMENT from this attestation report.",
)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def validate(
    ovmfs: tuple[str, ...],
    guest: GuestOptions,
    measurement: str | None,
    report_file: str | None,
    as_json: bool,
) -> None:
    """Compare a MEASUREMENT with the launch you claim, and diagnose a mismatch."""
    from sevlaunch.owner.snp.diagnosis import SnpLaunch, claimed_digest, snp_diagnose

    if (measurement is None) == (report_file is None):
        raise click.UsageError("give exactly one of --measurement and --report")
    with errors_to_exit(as_json=as_json, code=EXIT_USAGE):
        if report_file is not None:
            from sevlaunch.formats.snp import AttestationReport

            measured = AttestationReport.from_bytes(read_report(report_file)).measurement
        else:
            try:
                measured = bytes.fromhex(measurement or "")
            except ValueError as exc:
                raise click.UsageError("--measurement must be hex") from exc
            if len(measured) != 48:
                raise click.UsageError("--measurement is 48 bytes (96 hex digits)")
        launch = SnpLaunch(
            tuple((p, read_file(p, "firmware")) for p in ovmfs),
            guest.vcpus,
            guest.cpu,
            guest.guest_features,
            guest.boot,
        )
        expected = claimed_digest(launch)
    if expected == measured:
        if as_json:
            emit_json({"ok": True, "measurement": measured.hex()})
        else:
            click.echo(f"OK: the measurement {measured.hex()} matches the launch as given")
        sys.exit(0)
    diagnosis = snp_diagnose(measured, launch)
    if as_json:
        emit_json(
            {
                "ok": False,
                "measurement": measured.hex(),
                "expected": expected.hex(),
                "diagnosis": diagnosis.to_dict(),
            }
        )
    else:
        click.echo(
            f"MISMATCH: the measurement is {measured.hex()}, the launch as given "
            f"measures {expected.hex()}"
        )
        click.echo(diagnosis.describe())
    sys.exit(1)
