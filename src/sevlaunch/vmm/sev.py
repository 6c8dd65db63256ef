"""QEMU's SEV guest state machine (target/i386/sev.c), driving the platform through KVM's ops.

``uninit → launch-update`` at accelerator init (LAUNCH_START), firmware and kernel hashes
encrypted while in ``launch-update``, ``launch-secret`` once LAUNCH_MEASURE ran at
machine-init-done, secrets injected only then, LAUNCH_FINISH on the first transition to
running. Error texts are QEMU's, so a management layer sees what it would see from QEMU.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from sevlaunch.errors import FirmwareError, VmmError
from sevlaunch.formats.hashes import PADDED_SIZE
from sevlaunch.formats.ovmf import OvmfFooterTable
from sevlaunch.formats.policy import PolicyFlags
from sevlaunch.vmm.memory import GuestMemory
from sevlaunch.vmm.port import PlatformInfo, SevPlatform

SEV_FW_BLOB_MAX_SIZE = 0x4000
#: Where the VMSA pages sit for LAUNCH_UPDATE_VMSA: pages KVM allocates itself, never
#: guest-physical (the emulated PSP uses the address only as the encryption tweak).
VMSA_PADDR_BASE = 0x7F_0000_0000
VMSA_PAGE = 4096


class SevState(enum.Enum):
    UNINIT = "uninit"
    LAUNCH_UPDATE = "launch-update"
    LAUNCH_SECRET = "launch-secret"  # noqa: S105 (a state name, not a password)
    RUNNING = "running"
    SEND_UPDATE = "send-update"
    RECEIVE_UPDATE = "receive-update"

    @property
    def index(self) -> int:
        """The numeric state QEMU prints in "Not in correct state" messages."""
        return list(SevState).index(self)


@dataclass(frozen=True)
class SevGuestConfig:
    """The ``sev-guest`` object's properties, with the blob files already read."""

    cbitpos: int
    reduced_phys_bits: int
    policy: int = 0x1
    handle: int = 0
    dh_cert_b64: bytes | None = None
    session_b64: bytes | None = None
    kernel_hashes: bool = False
    legacy_vm_type: str = "auto"

    @property
    def es(self) -> bool:
        return bool(self.policy & PolicyFlags.ES)

    @property
    def legacy(self) -> bool:
        """Whether KVM gets the legacy KVM_SEV_INIT/KVM_SEV_ES_INIT (FPU state not in the
        VMSA). ``auto`` is legacy as in QEMU 9.1+: no sev-guest property needs INIT2."""
        return self.legacy_vm_type != "off"


def _decode(what: str, data: bytes) -> bytes:
    """A launch blob file's base64 text; KVM refuses an empty blob (psp_copy_user_blob)."""
    try:
        blob = base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise VmmError(
            f"SEV: failed to decode {what}: expected base64 text (as 'sevlaunch owner session' "
            "writes it), found bytes that do not decode"
        ) from exc
    if not blob:
        raise VmmError(
            f"sev_launch_start: LAUNCH_START ret=1 fw_error=0 '': KVM refused the {what}: it "
            "holds no base64 data (Invalid argument); give the file the owner's session wrote"
        )
    return blob


class SevGuest:
    """One guest's SEV launch, from LAUNCH_START to LAUNCH_FINISH."""

    def __init__(self, platform: SevPlatform, config: SevGuestConfig) -> None:
        self.platform = platform
        self.config = config
        self.state = SevState.UNINIT
        self.handle = 0
        self.info: PlatformInfo | None = None
        self.measurement: str | None = None
        self.vmsas: list[bytes] = []

    async def kvm_init(self) -> None:
        """``sev_common_kvm_init``: host checks, PLATFORM_STATUS, LAUNCH_START."""
        cfg = self.config
        info = await self.platform.info()
        if cfg.cbitpos != info.cbitpos:
            raise VmmError(
                f"sev_common_kvm_init: cbitpos check failed, host '{info.cbitpos}' requested '{cfg.cbitpos}'"
            )
        if not 1 <= cfg.reduced_phys_bits <= 63:
            raise VmmError(
                "sev_common_kvm_init: reduced_phys_bits check failed, it should be in the range of 1 to 63, "
                f"requested '{cfg.reduced_phys_bits}'"
            )
        if cfg.es and not info.es_initialised:
            raise VmmError(
                "sev_common_kvm_init: guest policy requires SEV-ES, but host SEV-ES support unavailable"
            )
        self.info = info
        godh = _decode("dh-cert-file", cfg.dh_cert_b64) if cfg.dh_cert_b64 is not None else None
        session = _decode("session-file", cfg.session_b64) if cfg.session_b64 is not None else None
        try:
            self.handle = await self.platform.launch_start(cfg.policy, godh, session)
        except FirmwareError as exc:
            raise VmmError(
                f"sev_launch_start: LAUNCH_START ret=1 fw_error={exc.status} '{_fw_text(exc)}'"
            ) from exc
        self.state = SevState.LAUNCH_UPDATE

    async def encrypt(self, memory: GuestMemory, paddr: int, plaintext: bytes) -> None:
        """``sev_encrypt_flash``: LAUNCH_UPDATE_DATA over a region, only in launch-update."""
        if self.state is not SevState.LAUNCH_UPDATE:
            raise VmmError(f"SEV: Not in correct state. (LUPDATE) {self.state.index}")
        try:
            memory.write(
                paddr, await self.platform.launch_update_data(self.handle, paddr, plaintext)
            )
        except FirmwareError as exc:
            raise VmmError(
                f"sev_launch_update_data: LAUNCH_UPDATE ret=1 fw_error={exc.status} '{_fw_text(exc)}'"
            ) from exc

    async def add_kernel_hashes(self, memory: GuestMemory, firmware: bytes, table: bytes) -> None:
        """``sev_add_kernel_loader_hashes``: the padded table into OVMF's hashes area, measured."""
        try:
            area = OvmfFooterTable.from_image(firmware).hashes_area
        except ValueError:
            area = None
        if area is None or area.base == 0 or area.size == 0:
            raise VmmError(
                "SEV: kernel specified but guest firmware has no hashes table GUID"
                if area is None
                else "SEV: guest firmware hashes table area is invalid (base=0x0, size=0x0)"
            )
        if area.size < PADDED_SIZE:
            raise VmmError(
                f"SEV: guest firmware hashes table area is too small ({area.size:#x} bytes)"
            )
        await self.encrypt(memory, area.base, table)

    async def machine_done(self, vmsas: Sequence[bytes] = ()) -> None:
        """``sev_launch_get_measure``: LAUNCH_MEASURE at machine-init-done, still paused;
        for SEV-ES first LAUNCH_UPDATE_VMSA of each vCPU's page, in vCPU order."""
        if self.state is not SevState.LAUNCH_UPDATE:
            return
        if self.config.es:
            await self._update_vmsas(vmsas)
        try:
            blob = await self.platform.launch_measure(self.handle)
        except FirmwareError as exc:
            raise VmmError(
                f"sev_launch_get_measure: LAUNCH_MEASURE ret=1 fw_error={exc.status} '{_fw_text(exc)}'"
            ) from exc
        self.measurement = base64.b64encode(blob).decode()
        self.state = SevState.LAUNCH_SECRET

    async def _update_vmsas(self, vmsas: Sequence[bytes]) -> None:
        """KVM's ``sev_launch_update_vmsa``: one LAUNCH_UPDATE_VMSA per vCPU; the encrypted
        pages stay with the hypervisor (KVM), as on hardware."""
        for index, page in enumerate(vmsas):
            paddr = VMSA_PADDR_BASE + index * VMSA_PAGE
            try:
                self.vmsas.append(await self.platform.launch_update_vmsa(self.handle, paddr, page))
            except FirmwareError as exc:
                raise VmmError(
                    f"sev_launch_update_vmsa: LAUNCH_UPDATE_VMSA ret=1 fw_error={exc.status} "
                    f"'{_fw_text(exc)}'"
                ) from exc

    def launch_measure(self) -> str:
        """``query-sev-launch-measure``."""
        if self.measurement is None:
            raise VmmError("SEV launch measurement is not available")
        return self.measurement

    async def inject_secret(
        self, memory: GuestMemory, header_b64: str, secret_b64: str, gpa: int
    ) -> None:
        """``sev-inject-launch-secret``: LAUNCH_SECRET, only in launch-secret."""
        if self.state is not SevState.LAUNCH_SECRET:
            raise VmmError(f"SEV: Not in correct state. (LSECRET) {self.state.index:x}")
        try:
            header = base64.b64decode(header_b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise VmmError("SEV: Failed to decode sequence header") from exc
        try:
            trans = base64.b64decode(secret_b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise VmmError("SEV: Failed to decode data") from exc
        if len(header) > SEV_FW_BLOB_MAX_SIZE or len(trans) > SEV_FW_BLOB_MAX_SIZE:
            raise VmmError(
                f"SEV: secret too large: header {len(header)} and data {len(trans)} bytes, max {SEV_FW_BLOB_MAX_SIZE}"
            )
        try:
            memory.read(gpa, len(trans))
        except VmmError as exc:
            raise VmmError(f"SEV: Failed to calculate guest address: {exc}") from exc
        try:
            cipher = await self.platform.launch_secret(self.handle, header, gpa, trans, len(trans))
        except FirmwareError as exc:
            raise VmmError(
                f"SEV: failed to inject secret ret=1 fw_error={exc.status} '{_fw_text(exc)}'"
            ) from exc
        memory.write(gpa, cipher)

    async def vm_running(self) -> None:
        """``sev_vm_state_change``: LAUNCH_FINISH on the first transition to running."""
        if self.state is SevState.RUNNING:
            return
        if self.state is not SevState.LAUNCH_SECRET:
            raise VmmError(f"SEV: Not in correct state. (LSECRET) {self.state.index:x}")
        try:
            await self.platform.launch_finish(self.handle)
        except FirmwareError as exc:
            raise VmmError(
                f"sev_launch_finish: LAUNCH_FINISH ret=1 fw_error={exc.status} '{_fw_text(exc)}'"
            ) from exc
        self.state = SevState.RUNNING

    def query(self) -> dict[str, object]:
        """``query-sev``'s SevInfo, union flattened as QEMU does."""
        info = self.info
        return {
            "enabled": True,
            "api-major": info.api_major if info else 0,
            "api-minor": info.api_minor if info else 0,
            "build-id": info.build_id if info else 0,
            "state": self.state.value,
            "sev-type": "sev",
            "policy": self.config.policy,
            "handle": self.handle,
        }


def _fw_text(exc: FirmwareError) -> str:
    from sevlaunch.formats.status import status_name

    return status_name(exc.status)
