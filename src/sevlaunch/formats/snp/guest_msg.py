"""Guest ↔ firmware messages: the 96-byte header and the REPORT/KEY payloads (sev-snp.md §5.2,
§5.3). The header's bytes 0x30–0x5F are the AES-GCM additional data."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Self

from sevlaunch.formats._codec import Reader, check_len, le_bytes
from sevlaunch.formats.snp.report import REPORT_SIZE

HEADER = "SNP guest message header"
HEADER_SIZE = 0x60
AAD_OFFSET = 0x30
MAX_PAYLOAD = 4096 - HEADER_SIZE
ALGO_AES_256_GCM = 1


class MessageType(enum.IntEnum):
    CPUID_REQ = 1
    CPUID_RSP = 2
    KEY_REQ = 3
    KEY_RSP = 4
    REPORT_REQ = 5
    REPORT_RSP = 6
    EXPORT_REQ = 7
    EXPORT_RSP = 8
    IMPORT_REQ = 9
    IMPORT_RSP = 10
    ABSORB_REQ = 11
    ABSORB_RSP = 12
    VMRK_REQ = 13
    VMRK_RSP = 14
    TSC_INFO_REQ = 17
    TSC_INFO_RSP = 18


@dataclass(frozen=True)
class MessageHeader:
    msg_seqno: int
    msg_type: int
    msg_size: int
    msg_vmpck: int = 0
    msg_version: int = 1
    authtag: bytes = bytes(32)
    algo: int = ALGO_AES_256_GCM
    hdr_version: int = 1
    hdr_size: int = HEADER_SIZE

    def __post_init__(self) -> None:
        check_len(HEADER, "authtag", self.authtag, 32)
        for name, size in (
            ("msg_seqno", 8),
            ("algo", 1),
            ("hdr_version", 1),
            ("hdr_size", 2),
            ("msg_type", 1),
            ("msg_version", 1),
            ("msg_size", 2),
            ("msg_vmpck", 1),
        ):
            le_bytes(getattr(self, name), size, structure=HEADER, field=name)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """The header at the start of a message page (the payload may follow)."""
        r = Reader(HEADER, data)
        r.expect_at_least(HEADER_SIZE)
        r.zeros("reserved_28", 0x28, 8)
        r.zeros("reserved_38", 0x38, 4)
        r.zeros("reserved_3d", 0x3D, HEADER_SIZE - 0x3D)
        header = cls(
            authtag=r.raw("authtag", 0, 32),
            msg_seqno=r.u64("msg_seqno", 0x20),
            algo=r.u8("algo", 0x30),
            hdr_version=r.u8("hdr_version", 0x31),
            hdr_size=r.u16("hdr_size", 0x32),
            msg_type=r.u8("msg_type", 0x34),
            msg_version=r.u8("msg_version", 0x35),
            msg_size=r.u16("msg_size", 0x36),
            msg_vmpck=r.u8("msg_vmpck", 0x3C),
        )
        if header.hdr_size != HEADER_SIZE:
            raise r.fail("hdr_size", 0x32, f"expected {HEADER_SIZE:#x}", header.hdr_size)
        if header.msg_size > MAX_PAYLOAD:
            raise r.fail("msg_size", 0x36, f"at most {MAX_PAYLOAD} bytes", header.msg_size)
        return header

    def to_bytes(self) -> bytes:
        return self.authtag + self.msg_seqno.to_bytes(8, "little") + bytes(8) + self.aad()

    def aad(self) -> bytes:
        """Bytes 0x30–0x5F, authenticated but not encrypted."""
        return (
            bytes((self.algo, self.hdr_version))
            + self.hdr_size.to_bytes(2, "little")
            + bytes((self.msg_type, self.msg_version))
            + self.msg_size.to_bytes(2, "little")
            + bytes(4)
            + bytes((self.msg_vmpck,))
            + bytes(HEADER_SIZE - 0x3D)
        )

    def iv(self) -> bytes:
        """The 12-byte GCM IV: the sequence number, then four zero bytes."""
        return self.msg_seqno.to_bytes(8, "little") + bytes(4)


REPORT_REQ = "MSG_REPORT_REQ"
REPORT_REQ_SIZE = 96


@dataclass(frozen=True)
class ReportRequest:
    report_data: bytes
    vmpl: int = 0

    def __post_init__(self) -> None:
        check_len(REPORT_REQ, "report_data", self.report_data, 64)
        if not 0 <= self.vmpl <= 3:
            raise Reader(REPORT_REQ, b"").fail("vmpl", 0x40, "a VMPL is 0..3", self.vmpl)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = Reader(REPORT_REQ, data)
        r.expect_size(REPORT_REQ_SIZE)
        r.zeros("reserved", 0x44, REPORT_REQ_SIZE - 0x44)
        return cls(r.raw("report_data", 0, 64), r.u32("vmpl", 0x40))

    def to_bytes(self) -> bytes:
        return self.report_data + self.vmpl.to_bytes(4, "little") + bytes(28)


REPORT_RSP = "MSG_REPORT_RSP"
RSP_HEADER = 0x20


@dataclass(frozen=True)
class ReportResponse:
    """``status`` 0 means ``report`` holds the report; otherwise it is empty."""

    status: int
    report: bytes

    def __post_init__(self) -> None:
        le_bytes(self.status, 4, structure=REPORT_RSP, field="status")
        if self.status == 0:
            check_len(REPORT_RSP, "report", self.report, REPORT_SIZE)
        else:
            check_len(REPORT_RSP, "report", self.report, 0)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = Reader(REPORT_RSP, data)
        r.expect_at_least(RSP_HEADER)
        r.zeros("reserved", 8, RSP_HEADER - 8)
        status, size = r.u32("status", 0), r.u32("report_size", 4)
        if status != 0:
            r.expect_size(RSP_HEADER)
            if size:
                raise r.fail("report_size", 4, "a failed request carries no report", size)
            return cls(status, b"")
        if size != REPORT_SIZE:
            raise r.fail("report_size", 4, f"expected {REPORT_SIZE:#x}", size)
        r.expect_size(RSP_HEADER + size)
        return cls(status, r.raw("report", RSP_HEADER, size))

    def to_bytes(self) -> bytes:
        head = self.status.to_bytes(4, "little") + len(self.report).to_bytes(4, "little")
        return head + bytes(RSP_HEADER - 8) + self.report


KEY_REQ = "MSG_KEY_REQ"
KEY_REQ_SIZE = 32
KEY_REQ_MIT_SIZE = 40  # virtee's variant with LAUNCH_MIT_VECTOR (single source)


class GuestField(enum.IntFlag):
    POLICY = 1 << 0
    IMAGE_ID = 1 << 1
    FAMILY_ID = 1 << 2
    MEASUREMENT = 1 << 3
    GUEST_SVN = 1 << 4
    TCB_VERSION = 1 << 5
    LAUNCH_MIT_VECTOR = 1 << 6


@dataclass(frozen=True)
class KeyRequest:
    root_key_select: int = 0  # bit 0: 0 VCEK-derived, 1 VMRK
    guest_field_select: int = 0
    vmpl: int = 0
    guest_svn: int = 0
    tcb_version: int = 0
    launch_mit_vector: int | None = None  # present only in the 40-byte form

    def __post_init__(self) -> None:
        for name, size in (
            ("root_key_select", 4),
            ("guest_field_select", 8),
            ("vmpl", 4),
            ("guest_svn", 4),
            ("tcb_version", 8),
        ):
            le_bytes(getattr(self, name), size, structure=KEY_REQ, field=name)
        if self.launch_mit_vector is not None:
            le_bytes(self.launch_mit_vector, 8, structure=KEY_REQ, field="launch_mit_vector")

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = Reader(KEY_REQ, data)
        if len(data) not in (KEY_REQ_SIZE, KEY_REQ_MIT_SIZE):
            raise r.fail(
                "length", None, f"expected {KEY_REQ_SIZE} or {KEY_REQ_MIT_SIZE} bytes", len(data)
            )
        r.zeros("reserved", 4, 4)
        return cls(
            root_key_select=r.u32("root_key_select", 0),
            guest_field_select=r.u64("guest_field_select", 8),
            vmpl=r.u32("vmpl", 0x10),
            guest_svn=r.u32("guest_svn", 0x14),
            tcb_version=r.u64("tcb_version", 0x18),
            launch_mit_vector=r.u64("launch_mit_vector", 0x20) if len(data) == 40 else None,
        )

    def to_bytes(self) -> bytes:
        out = (
            self.root_key_select.to_bytes(4, "little")
            + bytes(4)
            + self.guest_field_select.to_bytes(8, "little")
            + self.vmpl.to_bytes(4, "little")
            + self.guest_svn.to_bytes(4, "little")
            + self.tcb_version.to_bytes(8, "little")
        )
        if self.launch_mit_vector is not None:
            out += self.launch_mit_vector.to_bytes(8, "little")
        return out


KEY_RSP = "MSG_KEY_RSP"
KEY_RSP_SIZE = 64


@dataclass(frozen=True)
class KeyResponse:
    status: int
    derived_key: bytes = bytes(32)

    def __post_init__(self) -> None:
        le_bytes(self.status, 4, structure=KEY_RSP, field="status")
        check_len(KEY_RSP, "derived_key", self.derived_key, 32)

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        r = Reader(KEY_RSP, data)
        r.expect_size(KEY_RSP_SIZE)
        r.zeros("reserved", 4, 28)
        return cls(r.u32("status", 0), r.raw("derived_key", 0x20, 32))

    def to_bytes(self) -> bytes:
        return self.status.to_bytes(4, "little") + bytes(28) + self.derived_key
