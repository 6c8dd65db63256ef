"""``sevlaunch owner validate``: check a launch measurement, and on a mismatch say why.

Exit codes follow libvirt's virt-qemu-sev-validate: 0 the measurement matches, 1 it does not
(the VM is not trustworthy), 2 unsupported usage or bad input, 6 internal error.
"""

from __future__ import annotations

import base64
import binascii
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from sevlaunch.cli._util import EXIT_USAGE, emit_json, errors_to_exit, read_file
from sevlaunch.cli.owner.digest import (
    EsOptions,
    boot_options,
    es_options,
    measure_inputs,
    vmsa_pages,
)
from sevlaunch.errors import MeasurementMismatchError, SevlaunchError
from sevlaunch.formats.policy import Policy
from sevlaunch.owner.diagnosis import Diagnosis
from sevlaunch.owner.launch_digest import DirectBoot, MeasuredFirmware
from sevlaunch.owner.measurement import LaunchInfo, diagnose, launch_info
from sevlaunch.owner.measurement import validate as validate_measurement
from sevlaunch.owner.vmsa import EsVmsas

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_INTERNAL = 6


def read_key(path: str, what: str, size: int) -> bytes:
    data = read_file(path, what)
    if len(data) != size:
        raise click.UsageError(
            f"{what} {path} holds {len(data)} bytes; expected {size} raw bytes "
            "(as sevctl session writes NAME_tek.bin and NAME_tik.bin, or TEK ‖ TIK for --tk)"
        )
    return data


def read_keys(
    tik_path: str | None, tek_path: str | None, tk_path: str | None
) -> tuple[bytes, bytes | None]:
    """``(TIK, TEK or None)`` from ``--tik``/``--tek`` or libvirt's ``--tk`` (TEK ‖ TIK)."""
    if tk_path is not None:
        if tik_path is not None or tek_path is not None:
            raise click.UsageError(
                "--tk holds TEK ‖ TIK in one file; give --tk or --tik/--tek, not both"
            )
        tk = read_key(tk_path, "TEK ‖ TIK file", 32)
        return tk[16:], tk[:16]
    if tik_path is None:
        raise click.UsageError("give --tik FILE (16 bytes) or --tk FILE (32 bytes: TEK ‖ TIK)")
    tek = read_key(tek_path, "TEK file", 16) if tek_path is not None else None
    return read_key(tik_path, "TIK file", 16), tek


def parse_digest(text: str) -> bytes:
    """A 32-byte launch digest given as 64 hex digits or as base64 (sevctl prints base64)."""
    text = text.strip()
    try:
        raw = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raw = b""
    if len(raw) != 32:
        raise click.UsageError(
            f"--digest {text!r} is not a 32-byte launch digest; expected 64 hex digits or "
            "44 base64 characters, as sevlaunch owner digest prints it"
        )
    return raw


@contextmanager
def internal_errors_exit() -> Iterator[None]:
    """An unexpected failure must not exit 1, which means "mismatch": exit 6 instead."""
    try:
        yield
    except (click.ClickException, click.exceptions.Exit, SystemExit, KeyboardInterrupt):
        raise
    except Exception as exc:
        click.echo(f"internal error: {type(exc).__name__}: {exc}", err=True)
        sys.exit(EXIT_INTERNAL)


def _report_mismatch(
    exc: MeasurementMismatchError, diagnosis: Diagnosis, digest: bytes, as_json: bool
) -> None:
    if as_json:
        emit_json({"ok": False, "digest": digest.hex(), "error": str(exc), **diagnosis.to_dict()})
    else:
        click.echo(f"error: {exc}", err=True)
        click.echo(diagnosis.describe(), err=True)
    sys.exit(EXIT_MISMATCH)


def _es_spec(opts: EsOptions, policy: Policy, with_firmware: bool) -> EsVmsas | None:
    """The SEV-ES VMSA inputs; the policy decides whether the guest is SEV-ES."""
    if opts.es and not policy.requires_es:
        raise click.UsageError(
            f"--es was given but policy {policy.to_int():#x} does not have SEV-ES (bit 2): "
            "the guest's VMSAs are not measured; drop --es or check --policy"
        )
    if not with_firmware:
        if opts.es or opts.vcpus is not None:
            raise click.UsageError("the SEV-ES options go with --firmware, not --digest")
        return None
    if policy.requires_es and opts.vcpus is None and opts.vmsa_cpu0 is None:
        raise click.UsageError(
            f"policy {policy.to_int():#x} has SEV-ES (bit 2), so the measurement covers one "
            "VMSA per vCPU: give --vcpus N and --vcpu-type MODEL (or --vcpu-sig, "
            "--vcpu-family/--vcpu-model/--vcpu-stepping, or --vmsa-cpu0/--vmsa-cpu1)"
        )
    return opts.spec(es=policy.requires_es)


def _check(
    info: LaunchInfo,
    tik: bytes,
    tek: bytes | None,
    digest: bytes | None,
    firmwares: list[MeasuredFirmware],
    boot: DirectBoot | None,
    as_json: bool,
    es: EsVmsas | None = None,
    pages: list[bytes] | None = None,
) -> None:
    if digest is None:
        digest = firmwares[0].digest(boot.hashes() if boot else None, pages or ())
    try:
        validate_measurement(info, digest, tik)
    except MeasurementMismatchError as exc:
        if firmwares:
            diagnosis = diagnose(info, tik=tik, tek=tek, firmwares=firmwares, boot=boot, es=es)
        else:
            diagnosis = diagnose(info, tik=tik, tek=tek, digest=digest)
        _report_mismatch(exc, diagnosis, digest, as_json)
    if as_json:
        emit_json({"ok": True, "digest": digest.hex()})
    else:
        click.echo(
            f"OK: the measurement matches launch digest {digest.hex()} (API {info.api_major}."
            f"{info.api_minor} build {info.build_id}, policy {info.policy:#x})"
        )


@click.command()
@click.option("--measurement", required=True, help="sev-measurement: the 48-byte blob, base64.")
@click.option("--api-major", type=click.IntRange(0, 255), required=True, help="sev-api-major.")
@click.option("--api-minor", type=click.IntRange(0, 255), required=True, help="sev-api-minor.")
@click.option("--build-id", type=click.IntRange(0, 255), required=True, help="sev-build-id.")
@click.option("--policy", required=True, help="sev-policy: a number or flag names (nodbg,noks).")
@click.option("--tik", "tik_path", type=click.Path(dir_okay=False), help="TIK file (16 bytes).")
@click.option(
    "--tek",
    "tek_path",
    type=click.Path(dir_okay=False),
    help="TEK file (16 bytes); lets a mismatch be checked for TEK and TIK swapped.",
)
@click.option("--tk", "tk_path", type=click.Path(dir_okay=False), help="TEK ‖ TIK file (32 bytes).")
@click.option("--digest", "digest_text", help="The expected launch digest (hex or base64).")
@boot_options(multiple_firmware=True)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@es_options
def validate(
    measurement: str,
    api_major: int,
    api_minor: int,
    build_id: int,
    policy: str,
    tik_path: str | None,
    tek_path: str | None,
    tk_path: str | None,
    digest_text: str | None,
    firmware: tuple[str, ...],
    kernel: str | None,
    initrd: str | None,
    append: str | None,
    as_json: bool,
    es_options: EsOptions,
) -> None:
    """Check a launch measurement against the firmware, kernel, initrd and command line you
    expect (or a launch digest), as libvirt's virt-qemu-sev-validate does. For an SEV-ES
    policy give the vCPUs too (--vcpus with --vcpu-type, or the VMSA files).

    On a mismatch, the usual mistakes are tried (kernel hashes on/off, command-line trailing
    whitespace or newline, initrd missing, another --firmware given, TEK and TIK swapped;
    for SEV-ES the other legacy-vm-type, vCPU counts and CPU models) and the one that would
    have matched is named. Exit 0 match, 1 mismatch, 2 bad usage, 6 internal error.
    """
    with internal_errors_exit():
        if (digest_text is None) == (not firmware):
            raise click.UsageError("give either --digest or --firmware (with the boot options)")
        if digest_text is not None and (kernel or initrd or append is not None):
            raise click.UsageError("--kernel, --initrd and --append go with --firmware")
        tik, tek = read_keys(tik_path, tek_path, tk_path)
        digest = parse_digest(digest_text) if digest_text is not None else None
        with errors_to_exit(code=EXIT_USAGE, as_json=as_json):
            parsed = Policy.parse(policy)
            es = _es_spec(es_options, parsed, bool(firmware))
            info = launch_info(
                measurement,
                api_major=api_major,
                api_minor=api_minor,
                build_id=build_id,
                policy=parsed.to_int(),
            )
            firmwares, boot = measure_inputs(firmware, kernel, initrd, append)
            pages = vmsa_pages(firmwares[0], es, es_options.dump_vmsa) if firmwares else []
        try:
            _check(info, tik, tek, digest, firmwares, boot, as_json, es, pages)
        except SevlaunchError as exc:
            click.echo(f"internal error: {exc}", err=True)
            sys.exit(EXIT_INTERNAL)
