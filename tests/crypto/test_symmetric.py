"""AES-128-CTR and HMAC-SHA256 as the SEV API uses them."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sevlaunch.crypto.symmetric import aes128_ctr, check_mac, hmac_sha256
from sevlaunch.errors import CryptoError, IntegrityError


def test_ctr_counter_carries_across_the_whole_iv() -> None:
    # NIST SP 800-38A F.5.1, first block.
    key = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    iv = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
    plain = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
    assert aes128_ctr(key, iv, plain) == bytes.fromhex("874d6191b620e3261bef6864990db6ce")
    # An all-ones IV wraps to zero: the whole IV is one 128-bit big-endian counter.
    ones = b"\xff" * 16
    two_blocks = aes128_ctr(key, ones, bytes(32))
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    assert two_blocks == ecb.update(ones + bytes(16)) + ecb.finalize()


def test_ctr_is_its_own_inverse() -> None:
    data = bytes(range(200))
    assert aes128_ctr(bytes(16), bytes(16), aes128_ctr(bytes(16), bytes(16), data)) == data


def test_ctr_needs_16_byte_key_and_iv() -> None:
    with pytest.raises(CryptoError):
        aes128_ctr(bytes(15), bytes(16), b"")
    with pytest.raises(CryptoError):
        aes128_ctr(bytes(16), bytes(8), b"")


def test_hmac_over_parts_is_hmac_over_the_concatenation() -> None:
    expected = hmac.new(b"k", b"abcdef", hashlib.sha256).digest()
    assert hmac_sha256(b"k", b"ab", b"", b"cdef") == expected


def test_check_mac() -> None:
    check_mac("X", b"same", b"same")
    with pytest.raises(IntegrityError, match="WRAP_MAC does not verify") as err:
        check_mac("WRAP_MAC", b"a" * 32, b"b" * 32)
    assert err.value.what == "WRAP_MAC"
