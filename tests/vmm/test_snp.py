"""QEMU's SEV-SNP state machine (:class:`SnpGuest`) on an in-memory platform: the real, pure
firmware behind the :class:`~sevlaunch.vmm.snp_port.SnpPlatform` protocol (KVM's part played
here from the reference: a window of system physical memory per guest, RMPUPDATE per range),
no service, no mocks."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sevlaunch.crypto.snp import guest_msg
from sevlaunch.errors import FirmwareError, SnpLaunchError, VmmError
from sevlaunch.firmware import PROFILES, Firmware, SparseMemory
from sevlaunch.formats.hashes import KernelHashes
from sevlaunch.formats.snp.cpuid import CpuidEntry, CpuidTable
from sevlaunch.formats.snp.guest_msg import (
    MessageHeader,
    MessageType,
    ReportRequest,
    ReportResponse,
)
from sevlaunch.formats.snp.idblock import IdBlock
from sevlaunch.formats.snp.report import AttestationReport
from sevlaunch.formats.snp.secrets import SecretsPage
from sevlaunch.formats.vmsa import qemu_cpu_signature
from sevlaunch.owner.snp.idblock import sign_id_block
from sevlaunch.owner.snp.launch_digest import snp_launch_digest
from sevlaunch.platform.state import StoredState
from sevlaunch.vmm.cmdline.config import SevSnpGuestConfig
from sevlaunch.vmm.machine import MachineSpec
from sevlaunch.vmm.memory import GuestMemory
from sevlaunch.vmm.ovmf_image import AMDSEV_2024, RHEL9_2022, make_image
from sevlaunch.vmm.sev import SevState
from sevlaunch.vmm.snp import SnpGuest
from sevlaunch.vmm.snp_machine import snp_cpuid, snp_vmsas
from sevlaunch.vmm.snp_port import FinishConfig, PageResult, SnpPlatformInfo
from tests.platform.templates import template_state
from tests.vmm.conftest import run_async

FIRMWARE = make_image(256 * 1024, seed=b"test_snp", layout=AMDSEV_2024)
PAGE = 4096


class InMemorySnpPlatform:
    """KVM and the PSP in one object (one guest)."""

    def __init__(self, firmware: Firmware, slot: int = 1) -> None:
        self.fw = firmware
        self.memory = SparseMemory()
        self.asid, self.window = slot, slot << 36
        self.gctx = self.window + 0xF_0000_0000

    async def snp_info(self) -> SnpPlatformInfo:
        status = self.fw.snp.platform_status()
        prof = self.fw.profile
        return SnpPlatformInfo(status.api_major, status.api_minor, status.build_id, prof.cbitpos, 1)

    async def snp_launch_start(self, policy: int, gosvw: bytes) -> int:
        self.fw.snp.gctx_create(self.gctx)
        self.fw.snp.launch_start(self.gctx, policy, gosvw)
        self.fw.snp.activate(self.gctx, self.asid)
        return self.gctx

    async def _range(self, spa: int, gpa: int, page_type: int, data: bytes) -> PageResult:
        self.memory.write(spa, data)
        self.fw.snp.rmp_assign(spa, self.asid, gpa, len(data) // PAGE)
        for off in range(0, len(data), PAGE):
            try:
                self.fw.snp.launch_update(self.gctx, self.memory, spa + off, page_type)
            except FirmwareError as exc:
                return PageResult(
                    exc.status, self.memory.read(spa, len(data)), exc.detail, gpa + off
                )
        return PageResult(0, self.memory.read(spa, len(data)))

    async def snp_launch_update(
        self, handle: int, gpa: int, page_type: int, data: bytes
    ) -> PageResult:
        return await self._range(self.window + gpa, gpa, page_type, data)

    async def snp_launch_vmsa(self, handle: int, index: int, vmsa: bytes) -> PageResult:
        return await self._range(self.gctx + PAGE * (1 + index), 0xFFFF_FFFF_F000, 2, vmsa)

    async def snp_launch_finish(self, handle: int, config: FinishConfig) -> None:
        self.fw.snp.launch_finish(
            handle,
            id_block=config.id_block,
            id_auth=config.id_auth,
            author_key=config.author_key,
            vcek_disabled=config.vcek_disabled,
            host_data=config.host_data,
        )

    async def snp_guest_request(self, handle: int, request: bytes) -> bytes:
        self.memory.write(0x1000_0000, request)
        self.memory.write(0x1000_1000, bytes(PAGE))
        self.fw.snp.guest_request(handle, self.memory, 0x1000_0000, 0x1000_1000)
        return self.memory.read(0x1000_1000, PAGE)

    async def snp_guest_read(self, handle: int, gpa: int, ciphertext: bytes) -> bytes:
        self.memory.write(self.window + gpa, ciphertext)
        return self.fw.snp.host(
            "guest_read", self.memory, gctx=handle, paddr=self.window + gpa, length=len(ciphertext)
        )

    async def snp_teardown(self, handle: int) -> None:
        self.fw.snp.decommission(handle)


@pytest.fixture
def platform() -> InMemorySnpPlatform:
    stored = StoredState.from_bytes(template_state(), path=Path("template"))
    fw = Firmware(PROFILES["milan"], state=stored.firmware)
    fw.snp.init()
    return InMemorySnpPlatform(fw)


CONFIG = SevSnpGuestConfig(id="lsec0", reduced_phys_bits=1, cbitpos=51)
HASHES = KernelHashes(
    cmdline=hashlib.sha256(b"console=ttyS0\0").digest(),
    initrd=hashlib.sha256(b"").digest(),
    kernel=hashlib.sha256(b"MZ kernel").digest(),
)


def _spec(vcpus: int = 2) -> MachineSpec:
    return MachineSpec(
        "t", 256 << 20, Path("ovmf"), vcpus=vcpus, cpu_model="EPYC-Milan", snp=CONFIG
    )


async def _launch(
    platform: InMemorySnpPlatform, config: SevSnpGuestConfig, image: bytes = FIRMWARE
) -> tuple[SnpGuest, GuestMemory]:
    guest = SnpGuest(platform, config)
    memory = GuestMemory(256 << 20, len(image))
    await guest.kvm_init()
    memory.write(memory.flash_base, image)
    guest.encrypt_flash(memory.flash_base, len(image))
    if config.kernel_hashes:
        guest.add_kernel_hashes(image, HASHES.to_bytes())
    spec = _spec()
    await guest.vm_running(memory, image, snp_vmsas(spec, guest, image), snp_cpuid(spec, guest))
    return guest, memory


def _report(
    platform: InMemorySnpPlatform, guest: SnpGuest, memory: GuestMemory
) -> AttestationReport:
    async def go() -> AttestationReport:
        cipher = memory.read(0x80D000, PAGE)
        secrets = SecretsPage.from_bytes(
            await platform.snp_guest_read(guest.handle, 0x80D000, cipher)
        )
        header = MessageHeader(msg_seqno=1, msg_type=MessageType.REPORT_REQ, msg_size=0)
        page = guest_msg.seal(secrets.vmpck0, header, ReportRequest(bytes(64)).to_bytes())
        answer = await platform.snp_guest_request(guest.handle, page)
        _, payload = guest_msg.open_message(secrets.vmpck0, answer)
        return AttestationReport.from_bytes(ReportResponse.from_bytes(payload).report)

    return run_async(go)


def test_the_launch_digest_is_the_owners(platform: InMemorySnpPlatform) -> None:
    config = dataclasses.replace(CONFIG, kernel_hashes=True, host_data=b"h" * 32)
    guest, memory = run_async(lambda: _launch(platform, config))
    assert guest.state is SevState.RUNNING
    expected = snp_launch_digest(
        FIRMWARE, vcpus=2, cpu=qemu_cpu_signature("EPYC-Milan"), hashes=HASHES
    )
    report = _report(platform, guest, memory)
    assert report.measurement == expected
    assert (report.host_data, report.policy) == (b"h" * 32, 0x30000)
    assert not memory.contains(FIRMWARE[:64])  # the hypervisor keeps ciphertext only
    assert (guest.query()["sev-type"], guest.query()["state"]) == ("sev-snp", "running")


def test_without_kernel_hashes_the_section_is_a_zero_page(platform: InMemorySnpPlatform) -> None:
    guest, memory = run_async(lambda: _launch(platform, CONFIG))
    expected = snp_launch_digest(FIRMWARE, vcpus=2, cpu=qemu_cpu_signature("EPYC-Milan"))
    assert _report(platform, guest, memory).measurement == expected


def _id_block(ld: bytes) -> tuple[bytes, bytes]:
    signed = sign_id_block(IdBlock(ld), ec.derive_private_key(0x1D, ec.SECP384R1()))
    return signed.id_block.to_bytes(), signed.id_auth.to_bytes()


def test_an_id_block_for_the_digest_launches_and_a_tampered_firmware_fails(
    platform: InMemorySnpPlatform,
) -> None:
    ld = snp_launch_digest(FIRMWARE, vcpus=2, cpu=qemu_cpu_signature("EPYC-Milan"))
    block, auth = _id_block(ld)
    config = dataclasses.replace(CONFIG, id_block=block, id_auth=auth[:0x880])  # QEMU pads it
    guest, memory = run_async(lambda: _launch(platform, config))
    assert _report(platform, guest, memory).id_key_digest != bytes(48)
    other = InMemorySnpPlatform(platform.fw, slot=2)
    bent = bytearray(FIRMWARE)
    bent[0x1000] ^= 1
    with pytest.raises(
        SnpLaunchError, match=r"SNP_LAUNCH_FINISH ret=-5 fw_error=11 'Bad measurement'"
    ):
        run_async(lambda: _launch(other, config, bytes(bent)))


def test_a_refused_cpuid_page_reports_qemus_mismatches(platform: InMemorySnpPlatform) -> None:
    async def go() -> None:
        guest = SnpGuest(platform, CONFIG)
        memory = GuestMemory(256 << 20, len(FIRMWARE))
        await guest.kvm_init()
        table = CpuidTable((CpuidEntry(1, eax=0xA00F11, ecx=1 << 24),))
        await guest.vm_running(memory, FIRMWARE, (), table)

    with pytest.raises(SnpLaunchError) as info:
        run_async(go)
    text = str(info.value)
    assert "SNP_LAUNCH_UPDATE ret=-5 fw_error=22 'Invalid parameter'" in text
    assert (
        "SEV-SNP: CPUID validation failed for function 0x1, index: 0x0, provided: "
        "eax:0x00a00f11, ebx: 0x00000000, ecx: 0x01000000, edx: 0x00000000, expected: "
        "eax:0x00a00f11, ebx: 0x00000000, ecx: 0x00000000, edx: 0x00000000"
    ) in text
    assert text.endswith("SEV-SNP: failed update CPUID page")


def test_a_firmware_without_sev_metadata_cannot_finish(platform: InMemorySnpPlatform) -> None:
    image = make_image(64 * 1024, seed=b"no metadata", layout=RHEL9_2022)
    with pytest.raises(SnpLaunchError, match="Failed to locate SEV metadata header"):
        run_async(lambda: _launch(platform, CONFIG, image))


def test_host_checks_are_qemus(platform: InMemorySnpPlatform) -> None:
    wrong = dataclasses.replace(CONFIG, cbitpos=47)
    with pytest.raises(VmmError, match="cbitpos check failed, host '51' requested '47'"):
        run_async(lambda: SnpGuest(platform, wrong).kvm_init())
    with pytest.raises(
        VmmError, match="SNP_LAUNCH_START ret=-5 fw_error=7 'Policy is not allowed'"
    ):
        run_async(
            lambda: SnpGuest(platform, dataclasses.replace(CONFIG, policy=0x10000)).kvm_init()
        )
