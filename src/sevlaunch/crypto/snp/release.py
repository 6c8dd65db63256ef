"""Binding a guest's fresh key into its SNP report, and sealing secrets to that key.

The guest makes a P-384 key pair after boot and asks the firmware for a report whose
REPORT_DATA is :func:`report_data` of the broker's nonce and the public key: SHA-384 over the
canonical JSON ``{"nonce": <base64>, "tee-pubkey": <base64 SubjectPublicKeyInfo DER>}``
(keys sorted, no spaces, as RFC 8785 writes an object of strings), zero-padded to 64 bytes, in
the manner trustee binds its runtime data. A report that verifies then proves the key lives in
that guest; the broker seals the workload's secrets to it (:func:`seal_to`): ECDH with an
ephemeral P-384 key, HKDF-SHA384 over the shared secret bound to both public keys, and
AES-256-GCM. Nobody but the guest, not the host relaying the bytes, can open them.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sevlaunch.crypto.snp.ecdsa import derive_p384
from sevlaunch.errors import CryptoError, IntegrityError

REPORT_DATA_SIZE = 64
INFO = b"sevlaunch snp secret release v1"
_NONCE = bytes(12)  # every envelope has its own ephemeral key, hence its own AES key


def public_der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public(der: bytes) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_der_public_key(der)
    except ValueError as exc:
        raise CryptoError(f"not a DER SubjectPublicKeyInfo: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise CryptoError("the guest's key must be EC P-384")
    return key


def runtime_data(nonce: bytes, tee_pubkey: bytes) -> bytes:
    """The canonical JSON the report data hashes."""
    doc = {
        "nonce": base64.b64encode(nonce).decode(),
        "tee-pubkey": base64.b64encode(tee_pubkey).decode(),
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def report_data(nonce: bytes, tee_pubkey: bytes) -> bytes:
    """The 64-byte REPORT_DATA binding ``nonce`` and the DER public key ``tee_pubkey``."""
    digest = hashlib.sha384(runtime_data(nonce, tee_pubkey)).digest()
    return digest + bytes(REPORT_DATA_SIZE - len(digest))


@dataclass(frozen=True)
class Envelope:
    """``ephemeral``: the sender's one-time public key (DER); ``ciphertext`` with its tag."""

    ephemeral: bytes
    ciphertext: bytes


def _key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    hkdf = HKDF(hashes.SHA384(), 32, salt=None, info=INFO + ephemeral + recipient)
    return hkdf.derive(shared)


def seal_to(recipient_der: bytes, plaintext: bytes, rng: Callable[[int], bytes]) -> Envelope:
    recipient = load_public(recipient_der)
    ephemeral = derive_p384(rng(64))
    eph_der = public_der(ephemeral.public_key())
    shared = ephemeral.exchange(ec.ECDH(), recipient)
    ciphertext = AESGCM(_key(shared, eph_der, recipient_der)).encrypt(_NONCE, plaintext, None)
    return Envelope(eph_der, ciphertext)


def open_envelope(private: ec.EllipticCurvePrivateKey, envelope: Envelope) -> bytes:
    own = public_der(private.public_key())
    shared = private.exchange(ec.ECDH(), load_public(envelope.ephemeral))
    try:
        return AESGCM(_key(shared, envelope.ephemeral, own)).decrypt(
            _NONCE, envelope.ciphertext, None
        )
    except InvalidTag as exc:
        raise IntegrityError("secret envelope", "sealed to another key, or altered") from exc
