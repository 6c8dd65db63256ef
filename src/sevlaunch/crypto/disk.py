"""Seal and open sevlaunch's encrypted disk image (see :mod:`sevlaunch.formats.disk`).

The passphrase is stretched with scrypt and the contents sealed with AES-256-GCM, all from
pyca/cryptography; randomness (salt, nonce) comes in as parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from sevlaunch.errors import FormatError, IntegrityError
from sevlaunch.formats.disk import HEADER_SIZE, STRUCTURE, DiskHeader


@dataclass(frozen=True)
class DiskContents:
    label: str
    data: bytes


def _key(passphrase: bytes, header: DiskHeader) -> bytes:
    kdf = Scrypt(
        salt=header.salt,
        length=32,
        n=1 << header.scrypt_log2_n,
        r=header.scrypt_r,
        p=header.scrypt_p,
    )
    return kdf.derive(passphrase)


def seal(
    passphrase: bytes, contents: DiskContents, *, salt: bytes, nonce: bytes, scrypt_log2_n: int = 14
) -> bytes:
    """The disk image bytes for ``contents`` under ``passphrase``."""
    label = contents.label.encode()
    if len(label) > 0xFFFF:
        raise FormatError(STRUCTURE, "label", "at most 65535 bytes", value=len(label))
    plain = len(label).to_bytes(2, "little") + label + contents.data
    header = DiskHeader(scrypt_log2_n, 8, 1, salt, nonce, len(plain) + 16)
    head = header.to_bytes()
    return head + AESGCM(_key(passphrase, header)).encrypt(nonce, plain, head)


def open_disk(passphrase: bytes, image: bytes) -> DiskContents:
    """Unlock a disk image; a wrong passphrase or a tampered image raises IntegrityError."""
    header = DiskHeader.from_bytes(image)
    body = image[HEADER_SIZE:]
    if len(body) != header.ciphertext_length:
        raise FormatError(
            STRUCTURE,
            "ciphertext_length",
            f"header says {header.ciphertext_length} bytes, image has {len(body)}",
        )
    try:
        plain = AESGCM(_key(passphrase, header)).decrypt(header.nonce, body, image[:HEADER_SIZE])
    except InvalidTag as exc:
        raise IntegrityError("disk image", "wrong passphrase or corrupted image") from exc
    label_len = int.from_bytes(plain[:2], "little")
    if label_len > len(plain) - 2:
        raise FormatError(STRUCTURE, "label", "label length exceeds the contents", value=label_len)
    return DiskContents(plain[2 : 2 + label_len].decode(errors="replace"), plain[2 + label_len :])
