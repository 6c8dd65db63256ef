"""The guest owner's side of a launch, built from sevlaunch.crypto only (never the firmware),
so that tests prove the two agree."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sevlaunch.crypto import ecc, kdf, launch
from sevlaunch.crypto.launch import TransportKeys
from sevlaunch.crypto.symmetric import aes128_ctr
from sevlaunch.errors import FirmwareError
from sevlaunch.firmware import Firmware
from sevlaunch.formats import SecretHeader, Session, SevCert
from sevlaunch.formats.sevcert import Algorithm, Signature, Usage
from sevlaunch.formats.status import Status


def seeded_rng(seed: int = 1) -> random.Random:
    return random.Random(seed)


@dataclass(frozen=True)
class OwnerSession:
    """What a guest owner keeps after making a session for one platform."""

    godh: bytes
    session: bytes
    keys: TransportKeys
    policy: int

    def expected_measure(self, fw: Firmware, digest: bytes, mnonce: bytes) -> bytes:
        p = fw.profile
        return launch.measurement_mac(
            self.keys.tik,
            api_major=p.api_major,
            api_minor=p.api_minor,
            build_id=p.build_id,
            policy=self.policy,
            digest=digest,
            mnonce=mnonce,
        )

    def secret_packet(self, plaintext: bytes, measure: bytes, iv: bytes) -> tuple[bytes, bytes]:
        """``(header, ciphertext)`` as the owner builds them (doc §8)."""
        ciphertext = aes128_ctr(self.keys.tek, iv, plaintext)
        mac = launch.secret_mac(
            self.keys.tik,
            flags=0,
            iv=iv,
            guest_length=len(plaintext),
            ciphertext=ciphertext,
            measure=measure,
        )
        return SecretHeader(0, iv, mac).to_bytes(), ciphertext


def owner_session(pdh: bytes, policy: int, seed: int = 7) -> OwnerSession:
    """GODH and session blob for ``pdh`` exactly as virtee/sevctl make them."""
    rnd = random.Random(seed)
    godh_key = ec.derive_private_key(rnd.getrandbits(380) + 1, ec.SECP384R1())
    godh = SevCert(
        Usage.PDH,
        Algorithm.ECDH_SHA256,
        ecc.from_public_key(godh_key.public_key()),
        Signature.empty(),
        Signature.empty(),
    )
    nonce, iv = rnd.randbytes(16), rnd.randbytes(16)
    keys = TransportKeys(rnd.randbytes(16), rnd.randbytes(16))
    master = kdf.master_secret(ecc.ecdh(godh_key, SevCert.from_bytes(pdh).ecc_key), nonce)
    wrap_tk, wrap_mac = launch.wrap_keys(master, keys, iv)
    session = Session(nonce, wrap_tk, iv, wrap_mac, launch.policy_mac(keys.tik, policy))
    return OwnerSession(godh.to_bytes(), session.to_bytes(), keys, policy)


def sha256(*parts: bytes) -> bytes:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.digest()


def fails(status: Status, fn: Callable[..., object], *args: object, **kwargs: object) -> None:
    """``fn`` raises FirmwareError with ``status``."""
    with pytest.raises(FirmwareError) as info:
        fn(*args, **kwargs)
    assert info.value.status == status, info.value
