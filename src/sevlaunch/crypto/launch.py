"""The launch-time MACs and key wrapping shared by the guest owner and the firmware.

Both sides compute the same values (firmware-API doc §4, §7, §8); sharing these functions
is what makes them agree, and the known answers from real tools keep them honest.
"""

from __future__ import annotations

from dataclasses import dataclass

from sevlaunch.crypto.kdf import kek, kik
from sevlaunch.crypto.symmetric import aes128_ctr, check_mac, hmac_sha256
from sevlaunch.errors import CryptoError
from sevlaunch.formats.session import Session

MEASURE_CONTEXT = 0x04
SECRET_CONTEXT = 0x01


@dataclass(frozen=True)
class TransportKeys:
    """TEK (encrypts secrets) and TIK (authenticates the launch) chosen by the guest owner."""

    tek: bytes
    tik: bytes

    def __post_init__(self) -> None:
        if len(self.tek) != 16 or len(self.tik) != 16:
            raise CryptoError(
                f"TEK and TIK are 16 bytes each, got {len(self.tek)} and {len(self.tik)}"
            )

    @classmethod
    def from_tk(cls, tk: bytes) -> TransportKeys:
        """Split libvirt's ``--tk`` file: TEK ‖ TIK."""
        if len(tk) != 32:
            raise CryptoError(f"a TEK ‖ TIK file holds 32 bytes, got {len(tk)}")
        return cls(tk[:16], tk[16:])

    def __repr__(self) -> str:  # never print key material
        return "TransportKeys(tek=<hidden>, tik=<hidden>)"


def wrap_keys(master: bytes, keys: TransportKeys, wrap_iv: bytes) -> tuple[bytes, bytes]:
    """``(WRAP_TK, WRAP_MAC)``: TEK ‖ TIK under the KEK, authenticated with the KIK."""
    wrap_tk = aes128_ctr(kek(master), wrap_iv, keys.tek + keys.tik)
    return wrap_tk, hmac_sha256(kik(master), wrap_tk)


def unwrap_keys(master: bytes, session: Session) -> TransportKeys:
    """Check WRAP_MAC, then decrypt TEK ‖ TIK (what LAUNCH_START does)."""
    check_mac("WRAP_MAC", hmac_sha256(kik(master), session.wrap_tk), session.wrap_mac)
    plain = aes128_ctr(kek(master), session.wrap_iv, session.wrap_tk)
    return TransportKeys(plain[:16], plain[16:])


def policy_mac(tik: bytes, policy: int) -> bytes:
    return hmac_sha256(tik, policy.to_bytes(4, "little"))


def check_policy_mac(tik: bytes, policy: int, found: bytes) -> None:
    check_mac("POLICY_MAC", policy_mac(tik, policy), found)


def measurement_mac(
    tik: bytes,
    *,
    api_major: int,
    api_minor: int,
    build_id: int,
    policy: int,
    digest: bytes,
    mnonce: bytes,
) -> bytes:
    """LAUNCH_MEASURE's HMAC (API >= 0.17 form)."""
    if len(digest) != 32 or len(mnonce) != 16:
        raise CryptoError(
            f"launch digest is 32 bytes and MNONCE 16, got {len(digest)} and {len(mnonce)}"
        )
    header = bytes((MEASURE_CONTEXT, api_major, api_minor, build_id)) + policy.to_bytes(4, "little")
    return hmac_sha256(tik, header, digest, mnonce)


def secret_mac(
    tik: bytes, *, flags: int, iv: bytes, guest_length: int, ciphertext: bytes, measure: bytes
) -> bytes:
    """LAUNCH_SECRET's packet MAC: 0x01 ‖ FLAGS ‖ IV ‖ GUEST_LEN ‖ TRANS_LEN ‖ DATA ‖ MEASURE."""
    header = (
        bytes((SECRET_CONTEXT,))
        + flags.to_bytes(4, "little")
        + iv
        + guest_length.to_bytes(4, "little")
        + len(ciphertext).to_bytes(4, "little")
    )
    return hmac_sha256(tik, header, ciphertext, measure)
