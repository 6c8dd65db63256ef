"""The firmware's persistent state as bytes: a small versioned JSON document with hex fields.

It holds the :class:`~sevlaunch.firmware.identity.Identity` (chip ID, CEK, OCA/PEK/PDH keys
and certificates, owner, the emulated ARK/ASK) and never guest contexts, which a real PSP
loses on reset too. Version 2 adds the chip's SNP identity (:mod:`.snp.persist`); a state
without one is still written as version 1, byte for byte as before.

Keys are sorted and the encoding fixed, so ``encode(decode(b)) == b`` for
every state this module wrote. Anything else raises :class:`~sevlaunch.errors.FormatError`
naming the field.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sevlaunch.crypto import ecc
from sevlaunch.errors import CryptoError, FormatError
from sevlaunch.firmware.identity import CHIP_ID_SIZE, Identity
from sevlaunch.firmware.snp import persist as snp_persist
from sevlaunch.formats.amdcert import AmdCert
from sevlaunch.formats.sevcert import SevCert, Usage

STRUCTURE = "firmware persistent state"
MAGIC = "sevlaunch-firmware-state"
VERSION = 1
SNP_VERSION = 2
_CERTS = {
    "signed_cek_cert": Usage.CEK,
    "oca_cert": Usage.OCA,
    "pek_cert": Usage.PEK,
    "pdh_cert": Usage.PDH,
}
_SCALARS = ("cek_key", "pek_key", "pdh_key")
_KEYS = frozenset(
    {"format", "version", "chip_id", "oca_key", "ark_cert", "ark_key", "ask_cert", "ask_key"}
    | set(_CERTS)
    | set(_SCALARS)
)


def encode(identity: Identity) -> bytes:
    doc: dict[str, Any] = {
        "format": MAGIC,
        "version": VERSION if identity.snp is None else SNP_VERSION,
        "chip_id": identity.chip_id.hex(),
        "oca_key": None if identity.oca_key is None else identity.oca_key.hex(),
        "ark_key": identity.ark_key.hex(),
        "ask_key": identity.ask_key.hex(),
        "ark_cert": identity.ark_cert.to_bytes().hex(),
        "ask_cert": identity.ask_cert.to_bytes().hex(),
    }
    for name in _CERTS:
        doc[name] = getattr(identity, name).to_bytes().hex()
    for name in _SCALARS:
        doc[name] = getattr(identity, name).hex()
    if identity.snp is not None:
        doc["snp"] = snp_persist.encode(identity.snp)
    return (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode()


def _fail(field: str, reason: str, value: object = None) -> FormatError:
    return FormatError(STRUCTURE, field, reason, value=value)


def _hex(doc: dict[str, Any], field: str, size: int | None = None) -> bytes:
    text = doc[field]
    if not isinstance(text, str):
        raise _fail(field, "expected a hex string", type(text).__name__)
    try:
        raw = bytes.fromhex(text)
    except ValueError as exc:
        raise _fail(field, "not valid hex") from exc
    if size is not None and len(raw) != size:
        raise _fail(field, f"expected {size} bytes, got {len(raw)}", len(raw))
    return raw


def _load_doc(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise _fail("document", f"not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != MAGIC:
        raise _fail("format", f"expected a JSON object with format {MAGIC!r}")
    if doc.get("version") not in (VERSION, SNP_VERSION):
        raise _fail(
            "version", f"only versions {VERSION} and {SNP_VERSION} are known", doc.get("version")
        )
    keys = _KEYS | ({"snp"} if doc["version"] == SNP_VERSION else set())
    if set(doc) != keys:
        missing, extra = sorted(keys - set(doc)), sorted(set(doc) - keys)
        raise _fail("document", f"missing fields {missing}, unknown fields {extra}")
    return doc


def _sev_cert(doc: dict[str, Any], field: str, usage: Usage) -> SevCert:
    try:
        cert = SevCert.from_bytes(_hex(doc, field))
    except FormatError as exc:
        raise _fail(f"{field}.{exc.field}", exc.reason, exc.value) from exc
    if cert.usage is not usage:
        raise _fail(field, f"expected a {usage.name} certificate", cert.usage)
    return cert


def _scalar(doc: dict[str, Any], field: str, cert: SevCert) -> bytes:
    raw = _hex(doc, field, 48)
    try:
        public = ecc.from_public_key(ecc.private_from_bytes(raw).public_key())
    except CryptoError as exc:
        raise _fail(field, str(exc)) from exc
    if public != cert.public_key:
        raise _fail(field, "the private key does not match its certificate")
    return raw


def _amd(doc: dict[str, Any], name: str, usage: Usage) -> tuple[AmdCert, bytes]:
    try:
        cert = AmdCert.from_bytes(_hex(doc, f"{name}_cert"))
    except FormatError as exc:
        raise _fail(f"{name}_cert.{exc.field}", exc.reason, exc.value) from exc
    if cert.key_usage is not usage:
        raise _fail(f"{name}_cert", f"expected the {usage.name}", cert.key_usage)
    raw = _hex(doc, f"{name}_key")
    try:
        key = serialization.load_der_private_key(raw, None, unsafe_skip_rsa_key_validation=True)
    except (ValueError, TypeError) as exc:
        raise _fail(f"{name}_key", f"not a DER private key: {exc}") from exc
    if (
        not isinstance(key, rsa.RSAPrivateKey)
        or key.public_key().public_numbers().n != cert.modulus
    ):
        raise _fail(f"{name}_key", "the private key does not match its certificate")
    return cert, raw


def decode(data: bytes) -> Identity:
    doc = _load_doc(data)
    certs = {name: _sev_cert(doc, name, usage) for name, usage in _CERTS.items()}
    cek = _scalar(doc, "cek_key", certs["signed_cek_cert"])
    oca_key = None if doc["oca_key"] is None else _scalar(doc, "oca_key", certs["oca_cert"])
    ark_cert, ark_key = _amd(doc, "ark", Usage.ARK)
    ask_cert, ask_key = _amd(doc, "ask", Usage.ASK)
    snp = None
    if "snp" in doc:
        try:
            snp = snp_persist.decode(doc["snp"])
        except FormatError as exc:
            raise _fail(f"snp.{exc.field}", exc.reason, exc.value) from exc
    return Identity(
        chip_id=_hex(doc, "chip_id", CHIP_ID_SIZE),
        cek_key=cek,
        signed_cek_cert=certs["signed_cek_cert"],
        oca_cert=certs["oca_cert"],
        oca_key=oca_key,
        pek_cert=certs["pek_cert"],
        pek_key=_scalar(doc, "pek_key", certs["pek_cert"]),
        pdh_cert=certs["pdh_cert"],
        pdh_key=_scalar(doc, "pdh_key", certs["pdh_cert"]),
        ark_cert=ark_cert,
        ark_key=ark_key,
        ask_cert=ask_cert,
        ask_key=ask_key,
        snp=snp,
    )
