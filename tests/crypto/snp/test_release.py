"""Report data binding and secrets sealed to the guest's key."""

from __future__ import annotations

import hashlib
import os

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sevlaunch.crypto.snp.release import (
    open_envelope,
    public_der,
    report_data,
    runtime_data,
    seal_to,
)
from sevlaunch.errors import CryptoError, IntegrityError


def test_report_data_is_sha384_of_the_canonical_runtime_data() -> None:
    assert runtime_data(b"\x01", b"\x02") == b'{"nonce":"AQ==","tee-pubkey":"Ag=="}'
    bound = report_data(b"\x01", b"\x02")
    assert bound == hashlib.sha384(b'{"nonce":"AQ==","tee-pubkey":"Ag=="}').digest() + bytes(16)
    assert report_data(b"\x01", b"\x03") != bound


def test_only_the_guest_key_opens_the_envelope() -> None:
    guest = ec.generate_private_key(ec.SECP384R1())
    envelope = seal_to(public_der(guest.public_key()), b"secret", os.urandom)
    assert open_envelope(guest, envelope) == b"secret"
    with pytest.raises(IntegrityError):
        open_envelope(ec.generate_private_key(ec.SECP384R1()), envelope)
    with pytest.raises(CryptoError):
        seal_to(b"not a key", b"x", os.urandom)
