"""SEV's KDF (SP 800-108 counter mode, little-endian counter and length) against virtee's KAT."""

from __future__ import annotations

import pytest

from sevlaunch.crypto.kdf import kdf, kek, kik, master_secret
from sevlaunch.errors import CryptoError

MASTER = bytes.fromhex("ab4d269fcc62bedb4511d56c386ce706")


def test_master_secret_kat() -> None:
    assert master_secret(bytes(16), bytes(16)) == MASTER
    assert kdf(bytes(16), b"sev-master-secret", bytes(16), 16) == MASTER


def test_kek_and_kik_kat() -> None:
    # sev-firmware-api.md §4, consistent with the WRAP_TK/WRAP_MAC KATs in test_launch.
    assert kek(MASTER) == bytes.fromhex("b6abfbfb75ea1ea74ed8750b8afdb973")
    assert kik(MASTER) == bytes.fromhex("53b524bf5669a363f365c864acba8572")


def test_longer_outputs_extend_with_the_counter() -> None:
    long = kdf(b"key", b"label", b"ctx", 48)
    assert len(long) == 48
    # L is part of every block, so a longer output is not a prefix extension.
    assert long[:16] != kdf(b"key", b"label", b"ctx", 16)
    assert len(kdf(b"key", b"label", b"", 33)) == 33


def test_label_and_context_are_separated() -> None:
    assert kdf(b"k", b"ab", b"c") != kdf(b"k", b"a", b"bc")


@pytest.mark.parametrize("length", [0, -1])
def test_length_must_be_positive(length: int) -> None:
    with pytest.raises(CryptoError, match="positive"):
        kdf(b"k", b"l", b"", length)
