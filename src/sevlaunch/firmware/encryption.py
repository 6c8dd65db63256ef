"""The memory controller's encryption of guest memory (firmware-API doc §10).

Real parts encrypt each 16-byte block with AES-128 under the guest's VEK plus a tweak derived
from the block's physical address, so a ciphertext block moved elsewhere decrypts to garbage.
AMD never published the tweak function; this model uses AES-128-XTS (IEEE 1619):

- data key: the 16-byte VEK the firmware draws at LAUNCH_START; tweak key:
  AES-128-ECB(VEK, ``"sevlaunch-tweak!"``);
- data unit: one 64 KiB *granule*, tweak: the granule's physical address (16 bytes,
  little-endian). XTS gives block ``j`` of a granule the tweak ``E(tweak key, base)·α^j``, so
  every 16-byte block has its own address-bound tweak and blocks are independent of each
  other: any 16-byte-aligned range is encrypted or decrypted on its own, without touching
  (or reading) the rest of its granule. Only byte-unaligned guest stores read and re-encrypt
  the one or two 16-byte blocks they cut through.

The granule, rather than a 4 KiB page, is a speed choice: pyca/cryptography pays a few
microseconds per cipher context, which per page would make LAUNCH_UPDATE_DATA several times
slower than hashing the same bytes. Ciphertext is deterministic per (VEK, address,
plaintext), like silicon's, but not byte-identical to it.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sevlaunch.errors import CryptoError
from sevlaunch.firmware.memory import Memory

GRANULE = 1 << 16
BLOCK = 16
VEK_SIZE = 16
_TWEAK_LABEL = b"sevlaunch-tweak!"


def granules(paddr: int, length: int) -> list[tuple[int, int]]:
    """``(address, length)`` pieces of ``[paddr, paddr + length)`` that stay within one
    granule each."""
    out = []
    end = paddr + length
    while paddr < end:
        stop = min(end, paddr - paddr % GRANULE + GRANULE)
        out.append((paddr, stop - paddr))
        paddr = stop
    return out


class GuestCipher:
    """One guest's key in the memory controller."""

    __slots__ = ("_xts",)

    def __init__(self, vek: bytes) -> None:
        if len(vek) != VEK_SIZE:
            raise CryptoError(f"a VEK is an AES-128 key, 16 bytes; got {len(vek)}")
        ecb = Cipher(algorithms.AES(vek), modes.ECB())  # noqa: S305 (one block: key derivation)
        tweak_key = ecb.encryptor().update(_TWEAK_LABEL)
        if tweak_key == vek:
            raise CryptoError("degenerate VEK: its tweak key equals it")
        self._xts = algorithms.AES(vek + tweak_key)

    def _xts_at(self, paddr: int, data: bytes, *, encrypt: bool) -> bytes:
        if paddr % BLOCK or len(data) % BLOCK or not data:
            raise CryptoError(
                f"memory encryption works on whole 16-byte blocks: address {paddr:#x}, "
                f"length {len(data):#x}"
            )
        offset = paddr % GRANULE
        if offset + len(data) > GRANULE:
            raise CryptoError(f"[{paddr:#x}, +{len(data):#x}) crosses a granule boundary")
        cipher = Cipher(self._xts, modes.XTS((paddr - offset).to_bytes(16, "little")))
        ctx = cipher.encryptor() if encrypt else cipher.decryptor()
        # Blocks before ``offset`` do not influence later ones: zeros stand in for them.
        return ctx.update(bytes(offset) + data if offset else data)[offset:]

    def encrypt_at(self, paddr: int, plaintext: bytes) -> bytes:
        """Ciphertext of 16-byte-aligned ``plaintext`` at ``paddr`` (within one granule)."""
        return self._xts_at(paddr, plaintext, encrypt=True)

    def decrypt_at(self, paddr: int, ciphertext: bytes) -> bytes:
        return self._xts_at(paddr, ciphertext, encrypt=False)

    def load(self, memory: Memory, paddr: int, length: int) -> bytes:
        """Plaintext of ``[paddr, paddr + length)`` as the guest reads it; any alignment."""
        first, last = _align(paddr, length)
        parts = [self.decrypt_at(a, memory.read(a, n)) for a, n in granules(first, last - first)]
        return b"".join(parts)[paddr - first : paddr - first + length]

    def store(self, memory: Memory, paddr: int, plaintext: bytes) -> None:
        """Write ``plaintext`` at ``paddr`` under the key, as the guest's store does; bytes of
        the 16-byte blocks at either end that lie outside the range keep their values."""
        first, last = _align(paddr, len(plaintext))
        end = paddr + len(plaintext)
        head = self.load(memory, first, paddr - first) if paddr > first else b""
        tail = self.load(memory, end, last - end) if last > end else b""
        whole = head + plaintext + tail
        done = 0
        for a, n in granules(first, last - first):
            memory.write(a, self.encrypt_at(a, whole[done : done + n]))
            done += n


def _align(paddr: int, length: int) -> tuple[int, int]:
    """The 16-byte-aligned range covering ``[paddr, paddr + length)``."""
    return paddr - paddr % BLOCK, -(-(paddr + length) // BLOCK) * BLOCK
