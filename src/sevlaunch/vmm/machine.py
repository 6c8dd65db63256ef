"""The emulated machine: QEMU's run states, SEV launch sequence and the QMP-visible behaviour.

:class:`Machine` is what the QMP commands act on. It is built from a :class:`MachineSpec`
(the parts of the command line that matter once parsed), loads the firmware as QEMU does for
an SEV guest, and runs the guest model on the first ``cont``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import enum
import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sevlaunch.errors import FirmwareError, FormatError, SnpLaunchError, UsageError, VmmError
from sevlaunch.formats.ovmf import OvmfFooterTable
from sevlaunch.vmm.cmdline.config import SevSnpGuestConfig
from sevlaunch.vmm.memory import GuestMemory
from sevlaunch.vmm.port import SevPlatform
from sevlaunch.vmm.sev import SevGuest, SevGuestConfig

if TYPE_CHECKING:  # the guest model (pyca, scrypt) and the VMSA layouts load when first used:
    # a VMM process reaches its measurement without them (bench/vmm_launch.py)
    from sevlaunch.vmm.guest import BootMedia, BootResult, Guest
    from sevlaunch.vmm.snp import SnpGuest
    from sevlaunch.vmm.snp_port import SnpPlatform

#: Extension event (not in QEMU): the launch measurement can be fetched now. The 2017 design
#: asked for it; polling ``query-sev-launch-measure`` works exactly as in QEMU regardless.
MEASUREMENT_EVENT = "SEV_LAUNCH_MEASUREMENT_AVAILABLE"
GUEST_BOOTED_EVENT = "SEVLAUNCH_GUEST_BOOTED"
#: Every event the machine emits: QEMU's run-state events, then the two extensions.
EVENTS = ("STOP", "RESUME", "SHUTDOWN", MEASUREMENT_EVENT, GUEST_BOOTED_EVENT)
QEMU_VERSION = {"qemu": {"major": 9, "minor": 1, "micro": 0}, "package": "sevlaunch-vmm"}

Emit = Callable[[str, dict[str, Any] | None], None]


class RunState(enum.Enum):
    PRELAUNCH = "prelaunch"
    RUNNING = "running"
    PAUSED = "paused"
    SHUTDOWN = "shutdown"
    INTERNAL_ERROR = "internal-error"


@dataclass(frozen=True)
class MachineSpec:
    name: str
    memory: int
    firmware: Path
    start_paused: bool = True
    sev: SevGuestConfig | None = None
    kernel: Path | None = None
    initrd: Path | None = None
    append: str | None = None
    disks: tuple[Path, ...] = ()
    disk_names: tuple[str, ...] = ()
    vcpus: int = 1
    cpu_model: str = "qemu64"
    no_shutdown: bool = False  # -no-shutdown: a guest power-off stops the VM, the process stays
    snp: SevSnpGuestConfig | None = None
    fw_cfg: tuple[tuple[str, bytes], ...] = ()  # -fw_cfg files the guest can read


@dataclass
class Machine:
    spec: MachineSpec
    platform: SevPlatform | None
    emit: Emit
    console: Callable[[str], None]
    state: RunState = RunState.PRELAUNCH
    sev: SevGuest | None = None
    memory: GuestMemory = field(init=False)
    firmware: bytes = b""
    boot_result: BootResult | None = None
    _boot: asyncio.Task[BootResult] | None = None
    shutdown_requested: asyncio.Event = field(default_factory=asyncio.Event)
    snp_platform: SnpPlatform | None = None
    snp: SnpGuest | None = None
    exit_code: int = 0  #: 1 after a failure QEMU answers with exit(1)

    def __post_init__(self) -> None:
        self.memory = GuestMemory(self.spec.memory)

    async def init(self) -> None:
        """Accelerator init, firmware load and machine-init-done, in QEMU's order."""
        self.firmware = _read(self.spec.firmware, "-bios")
        self.memory = GuestMemory(self.spec.memory, len(self.firmware))
        if self.spec.snp is not None:
            await self._init_snp(self.spec.snp)
        elif self.spec.sev is not None:
            if self.platform is None:
                raise VmmError(
                    "sev-guest: no SEV device: give sev-device=PATH or set SEVLAUNCH_SEV_DEVICE"
                )
            self.sev = SevGuest(self.platform, self.spec.sev)
            await self.sev.kvm_init()
            reset = _es_reset_address(self.firmware) if self.spec.sev.es else None
            await self.sev.encrypt(self.memory, self.memory.flash_base, self.firmware)
            if self.spec.kernel is not None and self.spec.sev.kernel_hashes:
                await self.sev.add_kernel_hashes(self.memory, self.firmware, self._hashes_table())
            await self.sev.machine_done(self._vmsas(reset))
            self.emit(MEASUREMENT_EVENT, {"data": self.sev.launch_measure()})
        else:
            self.memory.write(self.memory.flash_base, self.firmware)
        if not self.spec.start_paused:
            await self.cont()

    async def _init_snp(self, config: SevSnpGuestConfig) -> None:
        """SNP_LAUNCH_START at accelerator init; the flash is only queued for the launch."""
        if self.snp_platform is None:
            raise VmmError(
                "sev-snp-guest: no SEV device: give sev-device=PATH or set SEVLAUNCH_SEV_DEVICE"
            )
        from sevlaunch.vmm.snp import SnpGuest  # an SEV guest's VMM never loads SNP's modules

        self.snp = SnpGuest(self.snp_platform, config)
        await self.snp.kvm_init()
        self.memory.write(self.memory.flash_base, self.firmware)
        self.snp.encrypt_flash(self.memory.flash_base, len(self.firmware))
        if self.spec.kernel is not None and config.kernel_hashes:
            self.snp.add_kernel_hashes(self.firmware, self._hashes_table())

    def _vmsas(self, ap_reset_address: int | None) -> tuple[bytes, ...]:
        """The vCPUs' reset state as KVM syncs it into the VMSAs (SEV-ES only)."""
        sev = self.spec.sev
        if sev is None or not sev.es or self.sev is None:
            return ()
        from sevlaunch.formats.vmsa import qemu_cpu_option, reset_vmsas

        host = self.sev.info.host_cpu_model if self.sev.info else None
        try:
            cpu = qemu_cpu_option(self.spec.cpu_model, host)
            return reset_vmsas(self.spec.vcpus, cpu, ap_reset_address, legacy=sev.legacy)
        except UsageError as exc:
            raise VmmError(f"unable to build the SEV-ES VMSAs: {exc}") from exc

    def _hashes_table(self) -> bytes:
        from sevlaunch.formats.hashes import KernelHashes

        spec = self.spec
        kernel = _read(spec.kernel, "-kernel") if spec.kernel else b""
        initrd = _read(spec.initrd, "-initrd") if spec.initrd else b""
        cmdline = (spec.append or "").encode() + b"\0"
        digests = KernelHashes(
            cmdline=hashlib.sha256(cmdline).digest(),
            initrd=hashlib.sha256(initrd).digest(),
            kernel=hashlib.sha256(kernel).digest(),
        )
        return digests.to_bytes()

    # ---- QMP-visible operations -------------------------------------------------------

    def query_status(self) -> dict[str, Any]:
        return {"status": self.state.value, "running": self.state is RunState.RUNNING}

    async def cont(self) -> None:
        if self.state is RunState.RUNNING:
            return
        if self.state is RunState.SHUTDOWN:
            raise VmmError("Resetting the Virtual Machine is required")
        if self.sev is not None:
            await self.sev.vm_running()
        if self.snp is not None:
            await self._finish_snp(self.snp)
        first = self._boot is None
        self.state = RunState.RUNNING
        self.emit("RESUME", None)
        if first:
            self._boot = asyncio.create_task(self._run_guest())

    async def _finish_snp(self, snp: SnpGuest) -> None:
        """``sev_snp_launch_finish`` on the first run; its failure ends the process."""
        from sevlaunch.vmm.snp_machine import snp_cpuid, snp_vmsas

        try:
            await snp.vm_running(
                self.memory,
                self.firmware,
                snp_vmsas(self.spec, snp, self.firmware),
                snp_cpuid(self.spec, snp),
            )
        except (SnpLaunchError, UsageError, FormatError) as exc:
            print(f"sevlaunch-vmm: {exc}", file=sys.stderr, flush=True)
            self.exit_code = 1
            self.shutdown_requested.set()
            raise SnpLaunchError(str(exc)) from exc

    async def stop(self) -> None:
        if self.state is RunState.RUNNING:
            self.state = RunState.PAUSED
            self.emit("STOP", None)

    async def system_powerdown(self) -> None:
        """ACPI power button: a booted guest shuts down, as QEMU then exits."""
        if self.state is RunState.RUNNING and self._boot is not None:
            await self._boot
            self.console("Linux: power button pressed, shutting down")
            self._shutdown(guest=True, reason="guest-shutdown")

    def quit(self) -> None:
        self._shutdown(guest=False, reason="host-qmp-quit")

    def signal_shutdown(self) -> None:
        self._shutdown(guest=False, reason="host-signal")

    def _shutdown(self, *, guest: bool, reason: str) -> None:
        """QEMU's shutdown: the process ends, except that with ``-no-shutdown`` a guest's own
        power-off only stops the VM (SHUTDOWN, then STOP) and leaves the exit to the manager."""
        if self.state is not RunState.SHUTDOWN:
            self.state = RunState.SHUTDOWN
            self.emit("SHUTDOWN", {"guest": guest, "reason": reason})
            if guest and self.spec.no_shutdown:
                self.emit("STOP", None)
                return
        self.shutdown_requested.set()

    def query_sev(self) -> dict[str, Any]:
        if self.snp is not None:
            return self.snp.query()
        if self.sev is None:
            return {
                "enabled": False,
                "api-major": 0,
                "api-minor": 0,
                "build-id": 0,
                "state": "uninit",
                "sev-type": "sev",
                "policy": 0,
                "handle": 0,
            }
        return self.sev.query()

    def query_sev_launch_measure(self) -> dict[str, Any]:
        if self.sev is None:
            raise VmmError("SEV launch measurement is not available")
        return {"data": self.sev.launch_measure()}

    async def inject_launch_secret(self, header: str, secret: str, gpa: int | None) -> None:
        if self.snp is not None:  # an SNP guest never enters launch-secret
            raise VmmError(f"SEV: Not in correct state. (LSECRET) {self.snp.state.index:x}")
        if self.sev is None:
            raise VmmError("SEV not enabled for guest")
        if gpa is None:
            footer = _footer(self.firmware)
            area = footer.secret_area if footer is not None else None
            if area is None:
                raise VmmError("SEV: no secret area found in OVMF, gpa must be specified.")
            gpa = area.base
        await self.sev.inject_secret(self.memory, header, secret, gpa)

    async def attestation_report(self, mnonce_b64: str) -> dict[str, Any]:
        if self.snp is not None:  # KVM refuses the legacy report for an SNP VM
            raise VmmError("SEV: Failed to query the attestation report length ret=-1 fw_err=0 ()")
        if self.sev is None or self.platform is None:
            raise VmmError("SEV is not enabled")
        try:
            mnonce = base64.b64decode(mnonce_b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise VmmError("SEV: failed to decode mnonce input") from exc
        if len(mnonce) != 16:
            raise VmmError(f"SEV: mnonce must be 16 bytes (got {len(mnonce)})")
        try:
            report = await self.platform.attestation(self.sev.handle, mnonce)
        except FirmwareError as exc:
            from sevlaunch.formats.status import status_name

            raise VmmError(
                "SEV: Failed to get attestation report ret=-1 "
                f"fw_err={exc.status} ({status_name(exc.status)})"
            ) from exc
        return {"data": base64.b64encode(report).decode()}

    # ---- the guest ------------------------------------------------------------------

    async def _guest_read(self, paddr: int, length: int) -> bytes:
        ciphertext = self.memory.read(paddr, length)
        if self.snp is not None and self.snp_platform is not None:
            return await self.snp_platform.snp_guest_read(self.snp.handle, paddr, ciphertext)
        if self.sev is None or self.platform is None:
            return ciphertext
        return await self.platform.guest_read(self.sev.handle, paddr, ciphertext)

    async def _run_guest(self) -> BootResult:
        from sevlaunch.vmm.guest import BootMedia, Guest

        spec = self.spec
        media = BootMedia(
            firmware=self.firmware,
            kernel=_read(spec.kernel, "-kernel") if spec.kernel else None,
            initrd=_read(spec.initrd, "-initrd") if spec.initrd else None,
            cmdline=spec.append,
            disks=spec.disks,
            disk_names=spec.disk_names,
        )
        guest = self._snp_guest(media) if self.snp is not None else None
        if guest is None:
            guest = Guest(media, self._guest_read, self.console, sev=self.sev is not None)
        result = await guest.boot()
        self.boot_result = result
        if result.halted:
            self.emit(GUEST_BOOTED_EVENT, {"halted": True, "reason": result.reason})
        else:
            self.emit(
                GUEST_BOOTED_EVENT,
                {"halted": False, "secrets": list(result.secrets), "disk-label": result.disk_label},
            )
        return result

    def _snp_guest(self, media: BootMedia) -> Guest:
        from sevlaunch.protocol.snp import FW_CFG_NAME, GuestAttestationConfig
        from sevlaunch.vmm.snp_guest import SnpGuestOs

        snp, platform = self.snp, self.snp_platform
        if snp is None or platform is None:
            raise VmmError("SEV-SNP is not enabled")
        blobs = dict(self.spec.fw_cfg)
        config = None
        if FW_CFG_NAME in blobs:
            try:
                config = GuestAttestationConfig.from_json(blobs[FW_CFG_NAME])
            except FormatError as exc:
                self.console(f"sevlaunch-attest: unreadable fw_cfg {FW_CFG_NAME}: {exc}")

        async def request(page: bytes) -> bytes:
            return await platform.snp_guest_request(snp.handle, page)

        return SnpGuestOs(media, self._guest_read, self.console, request=request, config=config)

    async def teardown(self) -> None:
        if self._boot is not None and not self._boot.done():
            self._boot.cancel()
        if self.snp is not None and self.snp_platform is not None and self.snp.handle:
            with contextlib.suppress(FirmwareError):
                await self.snp_platform.snp_teardown(self.snp.handle)
        if self.sev is not None and self.platform is not None and self.sev.handle:
            with contextlib.suppress(FirmwareError):
                await self.platform.teardown(self.sev.handle)


def _read(path: Path, option: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise VmmError(f"{option}: could not open '{path}': {exc.strerror}") from exc


def _es_reset_address(firmware: bytes) -> int:
    """``sev_es_save_reset_vector``: the AP reset address from the OVMF footer table."""
    footer = _footer(firmware)
    address = footer.sev_es_reset_address if footer is not None else None
    if address is None:
        raise VmmError(
            "SEV information block/Firmware GUID Table block not found in pflash rom; "
            "failed to locate and/or save reset vector"
        )
    if address == 0:
        raise VmmError("SEV-ES reset address is zero; failed to locate and/or save reset vector")
    return address


def _footer(firmware: bytes) -> OvmfFooterTable | None:
    try:
        return OvmfFooterTable.from_image(firmware)
    except ValueError:
        return None
