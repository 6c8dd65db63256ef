"""The SNP identity inside the firmware's persistent state: a JSON object with hex fields.

Every certificate must parse, the ASVK's private key must match its certificate, and the
committed firmware must be four small integers; anything else is a FormatError naming the
field (the caller prefixes ``snp.``).
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sevlaunch.crypto.snp.certs import load_cert
from sevlaunch.errors import FormatError
from sevlaunch.firmware.snp.identity import SnpIdentity
from sevlaunch.firmware.snp.profiles import SnpFirmwareVersion
from sevlaunch.formats.snp.tcb import Generation

STRUCTURE = "firmware SNP state"
_CERTS = ("ark", "ask", "asvk")
_KEYS = frozenset({"product", "asvk_key", "committed", *_CERTS})
_COMMITTED = ("major", "minor", "build", "tcb")


def encode(snp: SnpIdentity) -> dict[str, Any]:
    return {
        "product": snp.product.value,
        "ark": snp.ark_der.hex(),
        "ask": snp.ask_der.hex(),
        "asvk": snp.asvk_der.hex(),
        "asvk_key": snp.asvk_key.hex(),
        "committed": {name: getattr(snp.committed, name) for name in _COMMITTED},
    }


def _fail(field: str, reason: str, value: object = None) -> FormatError:
    return FormatError(STRUCTURE, field, reason, value=value)


def _hex(doc: dict[str, Any], name: str) -> bytes:
    text = doc[name]
    try:
        return bytes.fromhex(text)
    except (TypeError, ValueError) as exc:
        raise _fail(name, "expected a hex string") from exc


def decode(doc: object) -> SnpIdentity:
    if not isinstance(doc, dict) or set(doc) != _KEYS:
        raise _fail("snp", f"expected an object with exactly {sorted(_KEYS)}")
    try:
        product = Generation.parse(str(doc["product"]))
    except FormatError as exc:
        raise _fail("product", exc.reason, doc["product"]) from exc
    certs = {name: _hex(doc, name) for name in _CERTS}
    for name, der in certs.items():
        try:
            load_cert(der)
        except FormatError as exc:
            raise _fail(name, exc.reason) from exc
    key_der = _hex(doc, "asvk_key")
    try:
        key = serialization.load_der_private_key(key_der, None, unsafe_skip_rsa_key_validation=True)
    except (ValueError, TypeError) as exc:
        raise _fail("asvk_key", f"not a DER private key: {exc}") from exc
    cert_key = load_cert(certs["asvk"]).public_key
    if (
        not isinstance(key, rsa.RSAPrivateKey)
        or not isinstance(cert_key, rsa.RSAPublicKey)
        or key.public_key().public_numbers() != cert_key.public_numbers()
    ):
        raise _fail("asvk_key", "the private key does not match the ASVK certificate")
    committed = doc["committed"]
    if not isinstance(committed, dict) or set(committed) != set(_COMMITTED):
        raise _fail("committed", f"expected {list(_COMMITTED)}", committed)
    values = [committed[n] for n in _COMMITTED]
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in values):
        raise _fail("committed", "expected non-negative integers", committed)
    return SnpIdentity(
        product,
        certs["ark"],
        certs["ask"],
        certs["asvk"],
        key_der,
        SnpFirmwareVersion(*values),
    )
