"""The platform wire protocol: versioned, length-prefixed binary frames over a Unix socket.

Sans-IO: this module turns values into bytes and bytes into values and never touches a socket,
so the asyncio service, the sync client and the async client share one codec.

A frame is a 12-byte header then a payload::

    0  magic    b"SEVP"
    4  u8       version (1)
    5  u8       kind (a request or response kind below)
    6  u16      flags, must be zero
    8  u32      payload length (at most MAX_PAYLOAD)

Integers are little-endian, like the SEV API. Byte strings are ``u32 length ‖ bytes`` and
memory regions are ``u32 count ‖ (u64 paddr ‖ u32 length ‖ bytes)*``. A request is a PSP
mailbox call (command id, command buffer, and the memory its physical addresses refer to) or a
service operation; the answer to a mailbox call carries the status, the buffer as the firmware
left it and the memory it wrote. A malformed header cannot be resynchronised, so the service
answers it with an error and hangs up; a malformed payload behind a sound header gets an error
reply and the connection stays usable.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

from sevlaunch.errors import ProtocolError
from sevlaunch.platform._wire import (
    MAX_MESSAGE,
    MAX_REGIONS,
    Cursor,
    Region,
    Writer,
    check_disjoint,
)

#: Re-exported from :mod:`._wire`, where the field codecs live (the other names are this
#: module's own).
__all__ = ["MAX_MESSAGE", "MAX_REGIONS", "Region", "check_disjoint"]

MAGIC = b"SEVP"
VERSION = 1
HEADER_SIZE = 12
MAX_PAYLOAD = 64 * 1024 * 1024
_HEADER = struct.Struct("<4sBBHI")


class Kind(enum.IntEnum):
    """What a frame carries. Requests are below 0x80, responses at or above."""

    MAILBOX = 0x01
    SIGNED_CEK = 0x02
    CA_CHAIN = 0x03
    ARK = 0x04
    PROFILE = 0x05
    GUEST_READ = 0x06
    GUEST_WRITE = 0x07
    SNP = 0x08
    MAILBOX_RESULT = 0x81
    BLOB = 0x82
    PROFILE_INFO = 0x83
    ERROR = 0xFF


class ErrorCode(enum.IntEnum):
    """Why the service refused a request (never a firmware status: those travel as results)."""

    MALFORMED = 1
    UNSUPPORTED_VERSION = 2
    TOO_LARGE = 3
    UNKNOWN_OPERATION = 4
    UNMAPPED_MEMORY = 5
    BAD_ARGUMENT = 6
    FIRMWARE_FAULT = 7
    INTERNAL = 8


@dataclass(frozen=True)
class MailboxRequest:
    """A PSP mailbox call: ``command`` with its ``buffer``, plus the memory it points into."""

    command: int
    buffer: bytes
    regions: tuple[Region, ...] = ()


class ServiceOp(enum.IntEnum):
    """Service operations that carry no arguments."""

    SIGNED_CEK = Kind.SIGNED_CEK
    CA_CHAIN = Kind.CA_CHAIN
    ARK = Kind.ARK
    PROFILE = Kind.PROFILE


@dataclass(frozen=True)
class ServiceRequest:
    """``signed-cek``, ``ca-chain``, ``ark`` or ``profile``."""

    op: ServiceOp


@dataclass(frozen=True)
class GuestReadRequest:
    """The guest's CPU reads its own (decrypted) memory; ``regions`` hold the ciphertext."""

    handle: int
    paddr: int
    length: int
    regions: tuple[Region, ...] = ()


@dataclass(frozen=True)
class GuestWriteRequest:
    """The guest's CPU writes plaintext; ``regions`` hold the ciphertext around it."""

    handle: int
    paddr: int
    data: bytes
    regions: tuple[Region, ...] = ()


@dataclass(frozen=True)
class SnpRequest:
    """An SNP host operation (RMPUPDATE, the memory controller, the emulated AMD services):
    ``args`` is the JSON :mod:`sevlaunch.firmware.snp.host_ops` reads, ``regions`` the
    memory it touches. Answered with a :class:`BlobReply`."""

    args: bytes
    regions: tuple[Region, ...] = ()


@dataclass(frozen=True)
class MailboxReply:
    """The firmware's status, its command buffer after the call and the memory it wrote.

    ``detail`` is the emulator's reason for a failure (empty on success); real firmware has
    only the status, so nothing may depend on it but messages to people.
    """

    status: int
    buffer: bytes
    regions: tuple[Region, ...] = ()
    detail: str = ""


@dataclass(frozen=True)
class BlobReply:
    """Bytes answering a service operation, plus any memory it wrote (``guest-write``)."""

    data: bytes
    regions: tuple[Region, ...] = ()


@dataclass(frozen=True)
class ProfileReply:
    """What the platform reports about itself beyond PLATFORM_STATUS (libvirt's node SEV info)."""

    name: str
    api_major: int
    api_minor: int
    build_id: int
    cbitpos: int
    reduced_phys_bits: int
    max_guests: int
    max_es_guests: int


@dataclass(frozen=True)
class ErrorReply:
    """The service refused the request; ``message`` says why and what to do."""

    code: ErrorCode
    message: str = field(default="")


Request = MailboxRequest | ServiceRequest | GuestReadRequest | GuestWriteRequest | SnpRequest
Response = MailboxReply | BlobReply | ProfileReply | ErrorReply


@dataclass(frozen=True)
class Header:
    version: int
    kind: int
    length: int


@dataclass(frozen=True)
class Frame:
    """One frame's kind and payload, not yet decoded."""

    kind: int
    payload: bytes


# ---------------------------------------------------------------------------- header


def parse_header(data: bytes) -> Header:
    """Check a 12-byte header; a bad magic, flags, version or length raises ProtocolError."""
    if len(data) != HEADER_SIZE:
        raise ProtocolError("header", f"expected {HEADER_SIZE} bytes, got {len(data)}")
    magic, version, kind, flags, length = _HEADER.unpack(data)
    if magic != MAGIC:
        raise ProtocolError(
            "header.magic", f"expected {MAGIC!r}; is this a platform socket?", value=magic
        )
    if version != VERSION:
        raise ProtocolError(
            "header.version",
            f"this side speaks version {VERSION}, the peer sent {version}; upgrade the older side",
            value=version,
        )
    if flags:
        raise ProtocolError("header.flags", "reserved flags must be zero", value=flags)
    if length > MAX_PAYLOAD:
        raise ProtocolError(
            "header.length",
            f"payload of {length} bytes exceeds the limit of {MAX_PAYLOAD}; "
            "split the data into smaller calls",
            value=length,
        )
    return Header(version, kind, length)


def frame(kind: int, payload: bytes) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(
            "payload",
            f"{len(payload)} bytes exceed the limit of {MAX_PAYLOAD}; split the data",
            value=len(payload),
        )
    return _HEADER.pack(MAGIC, VERSION, kind, 0, len(payload)) + payload


class FrameDecoder:
    """Incremental frame splitter: feed bytes as they arrive, take whole frames out.

    A bad header raises as soon as its 12 bytes are in, before any payload is buffered, so a
    hostile length prefix never makes the reader allocate.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._header: Header | None = None

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_frame(self) -> Frame | None:
        if self._header is None:
            if len(self._buf) < HEADER_SIZE:
                return None
            self._header = parse_header(bytes(self._buf[:HEADER_SIZE]))
            del self._buf[:HEADER_SIZE]
        if len(self._buf) < self._header.length:
            return None
        n = self._header.length
        out = Frame(self._header.kind, bytes(self._buf[:n]))
        del self._buf[:n]
        self._header = None
        return out

    @property
    def pending(self) -> int:
        """Bytes of an unfinished frame held (0 at a frame boundary)."""
        return len(self._buf) + (HEADER_SIZE if self._header is not None else 0)


# ---------------------------------------------------------------------------- requests


def encode_request(request: Request) -> bytes:
    w = Writer()
    if isinstance(request, MailboxRequest):
        w.uint("command", request.command, 4).blob("buffer", request.buffer)
        w.regions(request.regions)
        return frame(Kind.MAILBOX, w.bytes())
    if isinstance(request, ServiceRequest):
        return frame(request.op, b"")
    if isinstance(request, GuestReadRequest):
        w.uint("handle", request.handle, 4).uint("paddr", request.paddr, 8)
        w.uint("length", request.length, 4).regions(request.regions)
        return frame(Kind.GUEST_READ, w.bytes())
    if isinstance(request, SnpRequest):
        w.blob("args", request.args).regions(request.regions)
        return frame(Kind.SNP, w.bytes())
    w.uint("handle", request.handle, 4).uint("paddr", request.paddr, 8)
    w.blob("data", request.data).regions(request.regions)
    return frame(Kind.GUEST_WRITE, w.bytes())


def decode_request(fr: Frame) -> Request:
    """Decode a request frame; an unknown kind or a bad payload raises ProtocolError."""
    c = Cursor(_kind_name(fr.kind), fr.payload)
    out: Request
    if fr.kind == Kind.MAILBOX:
        out = MailboxRequest(c.uint("command", 4), c.blob("buffer"), c.regions())
    elif fr.kind in ServiceOp.__members__.values():
        out = ServiceRequest(ServiceOp(fr.kind))
    elif fr.kind == Kind.GUEST_READ:
        out = GuestReadRequest(
            c.uint("handle", 4), c.uint("paddr", 8), c.uint("length", 4), c.regions()
        )
    elif fr.kind == Kind.SNP:
        out = SnpRequest(c.blob("args"), c.regions())
    elif fr.kind == Kind.GUEST_WRITE:
        out = GuestWriteRequest(
            c.uint("handle", 4), c.uint("paddr", 8), c.blob("data"), c.regions()
        )
    else:
        raise ProtocolError(
            "header.kind",
            "not a request kind this service knows; is the client newer than the service?",
            value=fr.kind,
        )
    c.end()
    return out


# ---------------------------------------------------------------------------- responses


def encode_response(response: Response) -> bytes:
    w = Writer()
    if isinstance(response, MailboxReply):
        w.uint("status", response.status, 4).blob("buffer", response.buffer)
        w.regions(response.regions).text("detail", response.detail)
        return frame(Kind.MAILBOX_RESULT, w.bytes())
    if isinstance(response, BlobReply):
        w.blob("data", response.data).regions(response.regions)
        return frame(Kind.BLOB, w.bytes())
    if isinstance(response, ProfileReply):
        name = response.name.encode()
        w.uint("name.length", len(name), 1).parts.append(name)
        for attr in _PROFILE_BYTES:
            w.uint(attr, getattr(response, attr), 1)
        w.uint("max_guests", response.max_guests, 4).uint(
            "max_es_guests", response.max_es_guests, 4
        )
        return frame(Kind.PROFILE_INFO, w.bytes())
    w.uint("code", response.code, 2).text("message", response.message)
    return frame(Kind.ERROR, w.bytes())


_PROFILE_BYTES = ("api_major", "api_minor", "build_id", "cbitpos", "reduced_phys_bits")


def decode_response(fr: Frame) -> Response:
    c = Cursor(_kind_name(fr.kind), fr.payload)
    out: Response
    if fr.kind == Kind.MAILBOX_RESULT:
        out = MailboxReply(c.uint("status", 4), c.blob("buffer"), c.regions(), c.text("detail", 2))
    elif fr.kind == Kind.BLOB:
        out = BlobReply(c.blob("data"), c.regions())
    elif fr.kind == Kind.PROFILE_INFO:
        name = c.text("name", 1)
        major, minor, build, cbit, rpb = (c.uint(a, 1) for a in _PROFILE_BYTES)
        out = ProfileReply(
            name,
            major,
            minor,
            build,
            cbit,
            rpb,
            c.uint("max_guests", 4),
            c.uint("max_es_guests", 4),
        )
    elif fr.kind == Kind.ERROR:
        code = c.uint("code", 2)
        try:
            error_code = ErrorCode(code)
        except ValueError:
            error_code = ErrorCode.INTERNAL
        out = ErrorReply(error_code, c.text("message", 2))
    else:
        raise ProtocolError("header.kind", "not a response kind", value=fr.kind)
    c.end()
    return out


def _kind_name(kind: int) -> str:
    try:
        return Kind(kind).name.lower()
    except ValueError:
        return f"kind {kind:#x}"
