"""``sevlaunch owner snp report show``: decode an attestation report for a person or a
program. Accepts the raw 1184 bytes (configfs-tsm ``outblob``), a MSG_REPORT_RSP or the
``/dev/sev-guest`` ioctl response buffer, or any of them as hex or base64 text."""

from __future__ import annotations

import base64
import binascii

import click

from sevlaunch.cli._util import emit_json, errors_to_exit, read_file
from sevlaunch.formats.snp.report import REPORT_SIZE, AttestationReport

RSP_HEADER = 0x20


def report_bytes(data: bytes) -> bytes:
    """The 1184 report bytes inside whatever form ``data`` has."""
    raw = data
    text = data.strip()
    if text and all(32 <= b < 127 for b in text):
        for decode in (bytes.fromhex, lambda t: base64.b64decode(t, validate=True)):
            try:
                raw = decode(text.decode())
                break
            except (ValueError, binascii.Error):
                continue
    if (
        len(raw) >= RSP_HEADER + REPORT_SIZE
        and raw[:4] == bytes(4)
        and int.from_bytes(raw[4:8], "little") == REPORT_SIZE
    ):
        return raw[RSP_HEADER : RSP_HEADER + REPORT_SIZE]  # MSG_REPORT_RSP, status 0
    return raw


def read_report(path: str) -> bytes:
    return report_bytes(read_file(path, "report"))


@click.group()
def report() -> None:
    """Attestation reports."""


@report.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def show(file: str, as_json: bool) -> None:
    """Print the fields of an SNP attestation report."""
    with errors_to_exit(as_json=as_json, code=2):
        parsed = AttestationReport.from_bytes(read_report(file))
    gen = parsed.generation
    if as_json:
        out = parsed.as_dict()
        out["generation"] = gen.value if gen else None
        out["known_version"] = parsed.known_version
        emit_json(out)
        return
    layout = gen.layout if gen else None
    lines = [
        (
            "version",
            f"{parsed.version}"
            + ("" if parsed.known_version else " (newer than known: common fields only)"),
        ),
        ("generation", gen.value if gen else "unknown (version 2: Milan or Genoa)"),
        ("policy", parsed.guest_policy.describe()),
        ("vmpl", str(parsed.vmpl)),
        ("signer", {0: "VCEK", 1: "VLEK", 7: "none"}.get(parsed.key.signing_key, "reserved")),
        ("platform_info", parsed.platform.describe()),
        ("measurement", parsed.measurement.hex()),
        ("report_data", parsed.report_data.hex()),
        ("host_data", parsed.host_data.hex()),
        ("id_key_digest", parsed.id_key_digest.hex()),
        ("author_key_digest", parsed.author_key_digest.hex()),
        ("guest_svn", str(parsed.guest_svn)),
        ("chip_id", parsed.chip_id.hex()),
    ]
    for name in ("current_tcb", "reported_tcb", "committed_tcb", "launch_tcb"):
        lines.append((name, parsed.tcb(name, layout).describe()))
    lines.append(("firmware", "{}.{}.{}".format(*parsed.current_version)))
    lines.append(("committed_firmware", "{}.{}.{}".format(*parsed.committed_version)))
    width = max(len(n) for n, _ in lines)
    for name, value in lines:
        click.echo(f"{name:<{width}}  {value}")
