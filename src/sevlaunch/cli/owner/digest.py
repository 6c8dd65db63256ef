"""``sevlaunch owner digest``: the expected SEV launch digest of a firmware and direct boot.

Imports hashlib and the format layer only (no pyca/cryptography), so that it starts as fast
as a single-purpose tool; a plain command line does not even reach click (see
:mod:`sevlaunch.cli._fast`, which reads the same option tables, :mod:`sevlaunch.cli._measure`). The option
helpers here are shared with ``owner validate``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import click

from sevlaunch.cli import _measure
from sevlaunch.cli._util import EXIT_USAGE, errors_to_exit, read_file
from sevlaunch.errors import InputError
from sevlaunch.owner.launch_digest import DirectBoot, MeasuredFirmware

if TYPE_CHECKING:
    from sevlaunch.owner.vmsa import EsVmsas


@contextmanager
def open_input(path: str, what: str) -> Iterator[BinaryIO]:
    """Open an input for streaming; a missing or unreadable file is a usage error (exit 2)."""
    with _usage_errors(), _measure.open_input(path, what) as handle:
        yield handle


@contextmanager
def _usage_errors() -> Iterator[None]:
    try:
        yield
    except InputError as exc:
        raise click.UsageError(str(exc)) from exc


def click_option(opt: _measure.Opt, **overrides: Any) -> Callable[[Callable[..., Any]], Any]:
    """The click option for one of :mod:`sevlaunch.cli._measure`'s tables."""
    kwargs: dict[str, Any] = {"help": opt.help}
    if opt.path:
        kwargs["type"] = click.Path(dir_okay=False)
    if opt.choices:
        kwargs.update(type=click.Choice(list(opt.choices)), default=opt.default, show_default=True)
    kwargs.update(overrides)
    return click.option(*opt.decls, opt.dest, **kwargs)


def boot_options(*, multiple_firmware: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--firmware``, ``--kernel``, ``--initrd`` and ``--append`` as QEMU names the inputs."""
    firmware = click_option(
        _measure.FIRMWARE,
        multiple=multiple_firmware,
        required=not multiple_firmware,
        help=_measure.FIRMWARE.help
        + (
            " Repeat to name other candidates: the first is the one claimed, the others are "
            "tried on a mismatch."
            if multiple_firmware
            else ""
        ),
    )
    options = [firmware, *(click_option(opt) for opt in _measure.DIRECT_BOOT)]

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def measure_inputs(
    firmwares: Sequence[str], kernel: str | None, initrd: str | None, append: str | None
) -> tuple[list[MeasuredFirmware], DirectBoot | None]:
    """Hash the firmware images and the direct boot, refusing an unsuitable firmware early."""
    with _usage_errors():
        return _measure.measure_inputs(firmwares, kernel, initrd, append)


@dataclass(frozen=True)
class EsOptions:
    """The SEV-ES options as given on the command line (see :func:`es_options`)."""

    es: bool = False
    vcpus: int | None = None
    vcpu_type: str | None = None
    vcpu_sig: str | None = None
    vcpu_family: int | None = None
    vcpu_model: int | None = None
    vcpu_stepping: int | None = None
    legacy_vm_type: str = "auto"
    vmsa_cpu0: str | None = None
    vmsa_cpu1: str | None = None
    dump_vmsa: str | None = None

    def _describing(self) -> list[str]:
        """The options given that only make sense for SEV-ES."""
        flags = {
            "--vcpus": self.vcpus,
            "--vcpu-type": self.vcpu_type,
            "--vcpu-sig": self.vcpu_sig,
            "--vcpu-family": self.vcpu_family,
            "--vcpu-model": self.vcpu_model,
            "--vcpu-stepping": self.vcpu_stepping,
            "--vmsa-cpu0": self.vmsa_cpu0,
            "--vmsa-cpu1": self.vmsa_cpu1,
            "--dump-vmsa": self.dump_vmsa,
        }
        given = [name for name, value in flags.items() if value is not None]
        if self.legacy_vm_type != "auto":
            given.append("--legacy-vm-type")
        return given

    def spec(self, *, es: bool) -> EsVmsas | None:
        """The VMSA inputs for an SEV-ES guest (``es``), or None for plain SEV."""
        if not es:
            if given := self._describing():
                raise click.UsageError(
                    f"{', '.join(given)} describe an SEV-ES guest's VMSAs; add --es (policy "
                    "bit 2) or drop them"
                )
            return None
        if self.vcpus is None:
            raise click.UsageError(
                "an SEV-ES measurement covers one VMSA per vCPU: give --vcpus N (QEMU -smp, "
                "libvirt <vcpu>)"
            )
        if self.vmsa_cpu0 is not None or self.vmsa_cpu1 is not None:
            return self._explicit(self.vcpus)
        from sevlaunch.owner.vmsa import EsVmsas, legacy_from_option, vcpu_type  # SEV-ES only

        return EsVmsas(
            self.vcpus,
            cpu=vcpu_type(
                name=self.vcpu_type,
                sig=_parse_sig(self.vcpu_sig),
                family=self.vcpu_family,
                model=self.vcpu_model,
                stepping=self.vcpu_stepping,
            ),
            legacy=legacy_from_option(self.legacy_vm_type),
        )

    def _explicit(self, vcpus: int) -> EsVmsas:
        cpu_given = (self.vcpu_type, self.vcpu_sig, self.vcpu_family, self.vcpu_model)
        if any(v is not None for v in (*cpu_given, self.vcpu_stepping)):
            raise click.UsageError(
                "give the VMSAs as files (--vmsa-cpu0/--vmsa-cpu1) or the vCPU type to build "
                "them from, not both"
            )
        if self.legacy_vm_type != "auto":
            raise click.UsageError(
                "--legacy-vm-type says how to build the VMSAs; files given with --vmsa-cpu0 "
                "are measured as they are"
            )
        if self.vmsa_cpu0 is None:
            raise click.UsageError("--vmsa-cpu1 (the APs) needs --vmsa-cpu0 (the BSP) too")
        if vcpus == 1 and self.vmsa_cpu1 is not None:
            raise click.UsageError("--vmsa-cpu1 is the APs' VMSA, but --vcpus is 1")
        from sevlaunch.owner.vmsa import EsVmsas

        bsp = read_file(self.vmsa_cpu0, "VMSA file")
        ap = read_file(self.vmsa_cpu1, "VMSA file") if self.vmsa_cpu1 is not None else None
        return EsVmsas(vcpus, bsp=bsp, ap=ap)


_ES_KEYS = tuple(EsOptions.__dataclass_fields__)


def _parse_sig(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text, 0)
    except ValueError as exc:
        raise click.UsageError(
            f"--vcpu-sig {text!r} is not a number; give CPUID(1).EAX as hex (0xa00f11) or decimal"
        ) from exc


def es_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the SEV-ES options; the command receives them as one ``es_options`` argument."""

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        opts = EsOptions(**{key: kwargs.pop(key) for key in _ES_KEYS})
        return func(es_options=opts, **kwargs)

    options = [
        click.option("--es", is_flag=True, help="SEV-ES guest: the VMSAs are measured too."),
        click.option(
            "--vcpus", type=click.IntRange(1, 4096), help="SEV-ES: vCPU count (QEMU -smp)."
        ),
        click.option(
            "--vcpu-type",
            help="SEV-ES: QEMU CPU model (-cpu), e.g. EPYC, EPYC-v4, EPYC-Rome, EPYC-Milan, "
            "EPYC-Genoa.",
        ),
        click.option("--vcpu-sig", help="SEV-ES: CPUID(1).EAX signature, e.g. 0xa00f11."),
        click.option("--vcpu-family", type=click.IntRange(0, 0x10E), help="SEV-ES: CPU family."),
        click.option("--vcpu-model", type=click.IntRange(0, 0xFF), help="SEV-ES: CPU model."),
        click.option("--vcpu-stepping", type=click.IntRange(0, 0xF), help="SEV-ES: stepping."),
        click.option(
            "--legacy-vm-type",
            type=click.Choice(["on", "off", "auto"]),
            default="auto",
            show_default=True,
            help="SEV-ES: QEMU sev-guest legacy-vm-type. on: legacy KVM init, no FPU state in "
            "the VMSA; off: KVM_SEV_INIT2, MXCSR/FCW set; auto: as QEMU 9.1+ (= on).",
        ),
        click.option(
            "--vmsa-cpu0",
            type=click.Path(dir_okay=False),
            help="SEV-ES: the BSP's VMSA page (4096 bytes) instead of building it.",
        ),
        click.option(
            "--vmsa-cpu1",
            type=click.Path(dir_okay=False),
            help="SEV-ES: the APs' VMSA page (4096 bytes), for every vCPU after the first.",
        ),
        click.option(
            "--dump-vmsa",
            type=click.Path(file_okay=False),
            help="SEV-ES: write the VMSA pages measured to DIR/vmsa0.bin, vmsa1.bin, ...",
        ),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def vmsa_pages(firmware: MeasuredFirmware, es: EsVmsas | None, dump: str | None) -> list[bytes]:
    """The VMSA pages to measure after ``firmware``, written to ``dump`` when asked."""
    if es is None:
        return []
    from sevlaunch.owner.vmsa import es_pages

    pages = list(es_pages(firmware, es))
    if dump is not None:
        folder = Path(dump)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for index, page in enumerate(pages):
                (folder / f"vmsa{index}.bin").write_bytes(page)
        except OSError as exc:
            raise click.UsageError(f"cannot write VMSAs to {dump}: {exc.strerror}") from exc
    return pages


@click.command()
@boot_options(multiple_firmware=False)
@click_option(_measure.OUTPUT_FORMAT)
@es_options
def digest(
    firmware: str,
    kernel: str | None,
    initrd: str | None,
    append: str | None,
    output_format: str,
    es_options: EsOptions,
) -> None:
    """Print the expected SEV launch digest: SHA-256 over the firmware, then the kernel-hashes
    table when a kernel is given (QEMU sev-guest kernel-hashes=on), then for SEV-ES (--es) one
    VMSA per vCPU, built as QEMU/KVM build them or read from --vmsa-cpu0/--vmsa-cpu1.

    Inputs are streamed; memory stays constant whatever their size. A firmware without a usable
    hashes-table area is refused when a kernel is given. Exit 0 on success, 2 on bad input.
    """
    with errors_to_exit(code=EXIT_USAGE):
        es = es_options.spec(es=es_options.es)
        firmwares, boot = measure_inputs([firmware], kernel, initrd, append)
        pages = vmsa_pages(firmwares[0], es, es_options.dump_vmsa)
        result = firmwares[0].digest(boot.hashes() if boot else None, pages)
        click.echo(_measure.format_digest(result, output_format))
