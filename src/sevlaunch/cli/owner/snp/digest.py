"""``sevlaunch owner snp digest``: the expected MEASUREMENT of a QEMU SNP guest.

Options follow sev-snp-measure's (``--ovmf``, ``--vcpus``, ``--vcpu-type``, ``--vcpu-sig``,
``--vcpu-family/model/stepping``, ``--guest-features``, ``--kernel``, ``--initrd``,
``--append``, ``--output-format``, ``--snp-ovmf-hash``). Imports hashlib and the format layer
only, so it starts fast.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from sevlaunch.cli._util import emit_json, errors_to_exit, read_file
from sevlaunch.cli.owner.digest import open_input
from sevlaunch.owner.launch_digest import DirectBoot, measure_direct_boot
from sevlaunch.owner.vmsa import VcpuType, vcpu_type


def _int(value: str | None, what: str) -> int | None:
    return None if value is None else _number(value, what)


def _number(value: str, what: str) -> int:
    try:
        return int(value, 0)
    except ValueError as exc:
        raise click.UsageError(f"{what} {value!r} is not a number") from exc


@dataclass(frozen=True)
class GuestOptions:
    """What the digest depends on besides the firmware."""

    vcpus: int
    cpu: VcpuType
    guest_features: int
    boot: DirectBoot | None


def guest_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The vCPU, guest-feature and direct-boot options, collected into ``guest``."""
    options = [
        click.option(
            "--vcpus",
            type=click.IntRange(1),
            required=True,
            help="Number of guest vCPUs (QEMU -smp).",
        ),
        click.option("--vcpu-type", help="QEMU CPU model, e.g. EPYC-v4, EPYC-Milan."),
        click.option("--vcpu-sig", help="Guest CPUID(1).EAX signature, e.g. 0x800f12."),
        click.option("--vcpu-family", type=int, help="Guest CPU family (with model, stepping)."),
        click.option("--vcpu-model", type=int, help="Guest CPU model."),
        click.option("--vcpu-stepping", type=int, help="Guest CPU stepping."),
        click.option(
            "--guest-features",
            default="0x1",
            show_default=True,
            help="SEV_FEATURES of the VMSAs (0x1 upstream QEMU+KVM; 0x21 with "
            "DebugSwap, as AMD's 6.6-based host kernels did).",
        ),
        click.option(
            "--kernel",
            type=click.Path(dir_okay=False),
            help="Kernel given to -kernel (kernel-hashes=on).",
        ),
        click.option("--initrd", type=click.Path(dir_okay=False), help="Initrd given to -initrd."),
        click.option("--append", help="Kernel command line exactly as given to -append."),
    ]

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        names = (
            "vcpus",
            "vcpu_type",
            "vcpu_sig",
            "vcpu_family",
            "vcpu_model",
            "vcpu_stepping",
            "guest_features",
            "kernel",
            "initrd",
            "append",
        )
        given = {n: kwargs.pop(n) for n in names}
        kwargs["guest"] = _collect(given)
        return func(**kwargs)

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def _collect(given: dict[str, Any]) -> GuestOptions:
    if given["kernel"] is None and (given["initrd"] is not None or given["append"] is not None):
        raise click.UsageError("--initrd and --append need --kernel")
    with errors_to_exit(code=2):
        if not any(given[n] is not None for n in ("vcpu_type", "vcpu_sig", "vcpu_family")):
            raise click.UsageError(
                "give the vCPU type: --vcpu-type, --vcpu-sig or "
                "--vcpu-family/--vcpu-model/--vcpu-stepping"
            )
        cpu = vcpu_type(
            name=given["vcpu_type"],
            sig=_int(given["vcpu_sig"], "--vcpu-sig"),
            family=given["vcpu_family"],
            model=given["vcpu_model"],
            stepping=given["vcpu_stepping"],
        )
    features = _number(given["guest_features"] or "0x1", "--guest-features")  # click's default
    boot = None
    if given["kernel"] is not None:
        with errors_to_exit(code=2), open_input(given["kernel"], "kernel") as kernel:
            if given["initrd"] is None:
                boot = measure_direct_boot(kernel, None, given["append"])
            else:
                with open_input(given["initrd"], "initrd") as initrd:
                    boot = measure_direct_boot(kernel, initrd, given["append"])
    return GuestOptions(given["vcpus"], cpu, features, boot)


def compute(ovmf: bytes, guest: GuestOptions, seed: bytes | None = None) -> bytes:
    from sevlaunch.owner.snp.launch_digest import snp_launch_digest

    return snp_launch_digest(
        ovmf,
        vcpus=guest.vcpus,
        cpu=guest.cpu.signature,
        guest_features=guest.guest_features,
        hashes=guest.boot.hashes() if guest.boot else None,
        seed=seed,
    )


@click.command()
@click.option(
    "--ovmf",
    required=True,
    type=click.Path(dir_okay=False),
    help="OVMF image QEMU loaded (e.g. OVMF.amdsev.fd).",
)
@guest_options
@click.option(
    "--vmm-type",
    type=click.Choice(["QEMU"]),
    default="QEMU",
    show_default=True,
    help="The hypervisor (QEMU only; EC2 and GCE measure differently).",
)
@click.option(
    "--snp-ovmf-hash",
    metavar="HEX",
    help="Precomputed OVMF hash (LD after the firmware pages) to start from.",
)
@click.option(
    "--output-format",
    type=click.Choice(["hex", "base64"]),
    default="hex",
    show_default=True,
    help="How the measurement is printed (sev-snp-measure's --output-format).",
)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def digest(
    ovmf: str,
    guest: GuestOptions,
    vmm_type: str,
    snp_ovmf_hash: str | None,
    output_format: str,
    as_json: bool,
) -> None:
    """Print the launch digest an SNP guest's report must carry as MEASUREMENT."""
    seed = None
    if snp_ovmf_hash is not None:
        try:
            seed = bytes.fromhex(snp_ovmf_hash)
        except ValueError as exc:
            raise click.UsageError("--snp-ovmf-hash is 96 hex digits") from exc
    image = read_file(ovmf, "firmware")
    with errors_to_exit(as_json=as_json):
        ld = compute(image, guest, seed)
    text = ld.hex() if output_format == "hex" else base64.b64encode(ld).decode()
    if as_json:
        emit_json(
            {
                "measurement": ld.hex(),
                "vcpus": guest.vcpus,
                "vcpu_sig": guest.cpu.signature.to_int(),
                "guest_features": guest.guest_features,
                "kernel_hashes": guest.boot is not None,
                "vmm_type": vmm_type,
            }
        )
    else:
        click.echo(text)
