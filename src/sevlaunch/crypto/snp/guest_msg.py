"""AES-256-GCM guest messages between an SNP guest and the firmware (sev-snp.md §5.2): the key
is a VMPCK, the IV the sequence number (8 bytes LE, then 4 zero bytes), the additional data
the header's bytes 0x30–0x5F, the 16-byte tag in the first bytes of AUTHTAG."""

from __future__ import annotations

from dataclasses import replace

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sevlaunch.errors import FormatError, IntegrityError
from sevlaunch.formats.snp.guest_msg import HEADER_SIZE, MAX_PAYLOAD, MessageHeader

TAG_SIZE = 16
VMPCK_SIZE = 32
PAGE_SIZE = 4096


def seal(vmpck: bytes, header: MessageHeader, payload: bytes) -> bytes:
    """The message page: header (with the tag filled in) then the ciphertext, zero-padded."""
    if len(vmpck) != VMPCK_SIZE:
        raise IntegrityError("guest message", f"a VMPCK is {VMPCK_SIZE} bytes")
    if len(payload) > MAX_PAYLOAD:
        raise FormatError("SNP guest message", "payload", f"at most {MAX_PAYLOAD} bytes")
    header = replace(header, msg_size=len(payload), authtag=bytes(32))
    sealed = AESGCM(vmpck).encrypt(header.iv(), payload, header.aad())
    ciphertext, tag = sealed[:-TAG_SIZE], sealed[-TAG_SIZE:]
    header = replace(header, authtag=tag + bytes(32 - TAG_SIZE))
    page = header.to_bytes() + ciphertext
    return page + bytes(PAGE_SIZE - len(page))


def open_message(vmpck: bytes, page: bytes) -> tuple[MessageHeader, bytes]:
    """Parse and decrypt a message page; raises FormatError or IntegrityError."""
    header = MessageHeader.from_bytes(page)
    ciphertext = page[HEADER_SIZE : HEADER_SIZE + header.msg_size]
    if len(ciphertext) != header.msg_size:
        raise FormatError(
            "SNP guest message", "msg_size", "longer than the page", value=header.msg_size
        )
    tag = header.authtag[:TAG_SIZE]
    if any(header.authtag[TAG_SIZE:]):
        raise FormatError("SNP guest message", "authtag", "bytes 16-31 must be zero")
    try:
        payload = AESGCM(vmpck).decrypt(header.iv(), ciphertext + tag, header.aad())
    except InvalidTag as exc:
        raise IntegrityError(
            "guest message", "the AES-GCM tag does not verify (wrong VMPCK or sequence number)"
        ) from exc
    return header, payload
