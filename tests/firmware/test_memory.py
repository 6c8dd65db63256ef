"""SparseMemory and the memory-encryption model (doc §10)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sevlaunch.errors import AddressError, CryptoError
from sevlaunch.firmware import GuestCipher, SparseMemory
from sevlaunch.firmware.encryption import GRANULE, granules

VEK = bytes(range(16))
addresses = st.integers(min_value=0, max_value=4 * GRANULE)


@given(addresses, st.binary(max_size=3 * GRANULE // 2))
def test_sparse_memory_round_trip(paddr: int, data: bytes) -> None:
    mem = SparseMemory()
    mem.write(paddr, data)
    assert mem.read(paddr, len(data)) == data
    assert mem.read(paddr + len(data), 16) == bytes(16)


def test_sparse_memory_bounds() -> None:
    mem = SparseMemory()
    assert mem.read(0xFFFF_FFFF_FFFF_FFF0, 16) == bytes(16)
    with pytest.raises(AddressError):
        mem.read(0xFFFF_FFFF_FFFF_FFF0, 17)
    with pytest.raises(AddressError):
        mem.write(-1, b"x")


@given(addresses, st.binary(max_size=GRANULE + 100))
def test_guest_store_load_round_trip_any_alignment(paddr: int, data: bytes) -> None:
    mem = SparseMemory()
    cipher = GuestCipher(VEK)
    cipher.store(mem, 0, bytes(5 * GRANULE))
    cipher.store(mem, paddr, data)
    assert cipher.load(mem, paddr, len(data)) == data
    # bytes around the range keep their plaintext
    assert cipher.load(mem, max(0, paddr - 20), min(paddr, 20)) == bytes(min(paddr, 20))
    assert cipher.load(mem, paddr + len(data), 20) == bytes(20)


@given(st.integers(min_value=0, max_value=GRANULE // 16 - 1).map(lambda b: b * 16))
def test_blocks_are_independent_and_address_bound(paddr: int) -> None:
    cipher = GuestCipher(VEK)
    block = b"sixteen byte blk"
    one = cipher.encrypt_at(paddr, block)
    assert len(one) == 16
    assert one != block
    assert cipher.encrypt_at(paddr - paddr % GRANULE, bytes(paddr % GRANULE) + block)[-16:] == one
    assert cipher.encrypt_at(paddr + GRANULE, block) != one  # moved: different ciphertext
    assert cipher.decrypt_at(paddr, one) == block
    assert GuestCipher(bytes(16)).encrypt_at(paddr, block) != one  # another key


def test_cipher_rejects_misuse() -> None:
    cipher = GuestCipher(VEK)
    with pytest.raises(CryptoError):
        cipher.encrypt_at(8, bytes(16))
    with pytest.raises(CryptoError):
        cipher.encrypt_at(GRANULE - 16, bytes(32))
    with pytest.raises(CryptoError):
        GuestCipher(bytes(15))


def test_granule_walk() -> None:
    assert granules(GRANULE - 16, 48) == [(GRANULE - 16, 16), (GRANULE, 32)]
    assert granules(0, 0) == []
