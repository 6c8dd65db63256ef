"""KVM's side of an SNP launch against the firmware, written from the reference (sev-snp.md
§3, §5) rather than from the VMM, so the tests prove the firmware and not a shared helper."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

from sevlaunch.crypto.snp import guest_msg
from sevlaunch.firmware import Firmware, SparseMemory
from sevlaunch.formats.snp.cpuid import CpuidEntry, CpuidTable
from sevlaunch.formats.snp.guest_msg import (
    MessageHeader,
    MessageType,
    ReportRequest,
    ReportResponse,
)
from sevlaunch.formats.snp.report import AttestationReport
from sevlaunch.formats.snp.secrets import SecretsPage

WINDOW = 1 << 36
GCTX = WINDOW + 0xF_0000_0000
REQ_PAGE, RES_PAGE = 0x2000_0000, 0x2000_1000
VMSA_GPA = 0xFFFF_FFFF_F000
PAGE = 4096
NORMAL, VMSA, ZERO, UNMEASURED, SECRETS, CPUID = range(1, 7)


def page_info(ld: bytes, contents: bytes, page_type: int, gpa: int) -> bytes:
    """§3.3: DIGEST_CUR ‖ CONTENTS ‖ u16 0x70 ‖ type ‖ IMI 0 ‖ 4 × 0 ‖ u64 GPA."""
    return ld + contents + struct.pack("<HBB4xQ", 0x70, page_type, 0, gpa)


def extend(ld: bytes, page_type: int, gpa: int, plaintext: bytes | None = None) -> bytes:
    measured = page_type in (NORMAL, VMSA)
    contents = hashlib.sha384(plaintext or b"").digest() if measured else bytes(48)
    return hashlib.sha384(page_info(ld, contents, page_type, gpa)).digest()


def qemu_cpuid() -> CpuidTable:
    return CpuidTable(
        (
            CpuidEntry(0, eax=0x10, ebx=0x68747541),
            CpuidEntry(1, eax=0x00A00F11, ecx=0x7ED8320B),
            CpuidEntry(7, 0, ebx=0x219C91A9),
        )
    )


@dataclass
class SnpGuestLaunch:
    fw: Firmware
    asid: int = 1
    window: int = WINDOW
    policy: int = 0x30000
    memory: SparseMemory = field(default_factory=SparseMemory)
    expected_ld: bytes = bytes(48)
    seqno: int = 0
    secrets_gpa: int = 0x80_D000

    @property
    def gctx(self) -> int:
        return self.window + 0xF_0000_0000

    def spa(self, gpa: int) -> int:
        return self.window + (gpa if gpa != VMSA_GPA else 0xF_0000_1000)

    def start(self, gosvw: bytes = bytes(16)) -> None:
        api = self.fw.snp
        api.gctx_create(self.gctx)
        api.launch_start(self.gctx, self.policy, gosvw)
        api.activate(self.gctx, self.asid)

    def add(self, gpa: int, page_type: int, data: bytes = b"") -> None:
        spa = self.spa(gpa)
        if page_type == SECRETS:
            self.secrets_gpa = gpa
        if data:
            self.memory.write(spa, data.ljust(PAGE, b"\0"))
        self.fw.snp.rmp_assign(spa, self.asid, gpa)
        self.fw.snp.launch_update(self.gctx, self.memory, spa, page_type)
        plain = data.ljust(PAGE, b"\0") if data else bytes(PAGE)
        self.expected_ld = extend(self.expected_ld, page_type, gpa, plain)

    def standard_pages(self) -> None:
        self.add(0xFFFF_F000, NORMAL, b"\x90" * PAGE)
        self.add(0x80_0000, ZERO)
        self.add(0x80_D000, SECRETS)
        self.add(0x80_E000, CPUID, qemu_cpuid().to_page())
        self.add(VMSA_GPA, VMSA, b"\x01" * PAGE)

    def finish(self, **kwargs: object) -> None:
        self.fw.snp.launch_finish(self.gctx, **kwargs)  # type: ignore[arg-type]

    def read(self, gpa: int, length: int) -> bytes:
        """The guest's own (decrypted) view, through the memory controller."""
        return self.fw.snp.host(
            "guest_read", self.memory, gctx=self.gctx, paddr=self.spa(gpa), length=length
        )

    def secrets(self) -> SecretsPage:
        return SecretsPage.from_bytes(self.read(self.secrets_gpa, PAGE))

    def request(
        self, msg_type: MessageType, payload: bytes, *, vmpck: int = 0, seqno: int | None = None
    ) -> tuple[MessageHeader, bytes]:
        key = self.secrets().vmpck(vmpck)
        number = self.seqno + 1 if seqno is None else seqno
        header = MessageHeader(msg_seqno=number, msg_type=msg_type, msg_size=0, msg_vmpck=vmpck)
        self.memory.write(REQ_PAGE, guest_msg.seal(key, header, payload))
        self.memory.write(RES_PAGE, bytes(PAGE))
        self.fw.snp.guest_request(self.gctx, self.memory, REQ_PAGE, RES_PAGE)
        self.seqno = number + 1
        return guest_msg.open_message(key, self.memory.read(RES_PAGE, PAGE))

    def report_bytes(self, report_data: bytes = bytes(64), vmpl: int = 0) -> bytes:
        _, payload = self.request(
            MessageType.REPORT_REQ, ReportRequest(report_data, vmpl).to_bytes()
        )
        response = ReportResponse.from_bytes(payload)
        if response.status:
            raise AssertionError(f"MSG_REPORT_RSP status {response.status:#x}")
        return response.report

    def report(self, report_data: bytes = bytes(64)) -> AttestationReport:
        return AttestationReport.from_bytes(self.report_bytes(report_data))
