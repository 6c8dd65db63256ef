"""The encrypted disk image: sealed contents open only with the passphrase, tampering is caught."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sevlaunch.crypto.disk import DiskContents, open_disk, seal
from sevlaunch.errors import FormatError, IntegrityError
from sevlaunch.formats.disk import HEADER_SIZE, DiskHeader

SALT = bytes(range(16))
NONCE = bytes(range(12))


def _image(
    passphrase: bytes = b"correct horse", label: str = "root", data: bytes = b"payload"
) -> bytes:
    return seal(passphrase, DiskContents(label, data), salt=SALT, nonce=NONCE, scrypt_log2_n=10)


def test_round_trip() -> None:
    assert open_disk(b"correct horse", _image()) == DiskContents("root", b"payload")


def test_wrong_passphrase_is_refused() -> None:
    with pytest.raises(IntegrityError, match="wrong passphrase"):
        open_disk(b"battery staple", _image())


@pytest.mark.parametrize("offset", [0, 8, 12, 28, 40, HEADER_SIZE, HEADER_SIZE + 5, -1])
def test_any_flipped_byte_is_refused(offset: int) -> None:
    image = bytearray(_image())
    image[offset] ^= 0x01
    with pytest.raises((IntegrityError, FormatError)):
        open_disk(b"correct horse", bytes(image))


def test_label_is_not_in_the_clear() -> None:
    assert b"secret-label" not in _image(label="secret-label")


def test_truncated_image_names_the_length() -> None:
    with pytest.raises(FormatError, match="ciphertext_length"):
        open_disk(b"correct horse", _image()[:-1])


@settings(max_examples=25, deadline=None)
@given(st.text(max_size=40), st.binary(max_size=300))
def test_round_trip_any_contents(label: str, data: bytes) -> None:
    image = seal(b"pw", DiskContents(label, data), salt=SALT, nonce=NONCE, scrypt_log2_n=10)
    assert open_disk(b"pw", image) == DiskContents(label, data)


@settings(max_examples=300)
@given(st.binary(max_size=120))
def test_header_parser_raises_only_format_errors(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        DiskHeader.from_bytes(data)
