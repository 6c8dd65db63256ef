"""Guest messages sealed and opened as Linux's sev-guest driver does: IV from the sequence
number, header bytes 0x30–0x5F authenticated, the tag in AUTHTAG."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sevlaunch.crypto.snp.guest_msg import open_message, seal
from sevlaunch.errors import FormatError, IntegrityError
from sevlaunch.formats.snp.guest_msg import MessageHeader

KEY = bytes(range(32))


def test_seal_matches_aes_gcm_by_the_book() -> None:
    header = MessageHeader(msg_seqno=7, msg_type=5, msg_size=0)
    page = seal(KEY, header, b"payload")
    assert len(page) == 4096
    sent = MessageHeader.from_bytes(page)
    iv = (7).to_bytes(8, "little") + bytes(4)
    expected = AESGCM(KEY).encrypt(iv, b"payload", sent.aad())
    assert page[0x60 : 0x60 + 7] == expected[:7]
    assert sent.authtag[:16] == expected[7:]
    assert open_message(KEY, page) == (sent, b"payload")


@pytest.mark.parametrize("offset", [0x20, 0x34, 0x3C, 0x60, 0x00])
def test_any_authenticated_byte_changed_is_refused(offset: int) -> None:
    page = bytearray(seal(KEY, MessageHeader(msg_seqno=1, msg_type=5, msg_size=0), b"x" * 32))
    page[offset] ^= 1
    with pytest.raises((IntegrityError, FormatError)):
        open_message(KEY, bytes(page))
