"""Trust roots: AMD's ARKs, pinned by key id and public-key fingerprint, plus named extras.

An ARK is trusted when its key id names an AMD generation *and* its public key matches the
pinned fingerprint (SHA-256 of the DER SubjectPublicKeyInfo), so a forged ARK carrying AMD's
key id is refused. Any other root (an emulated platform's ARK) is trusted only when the user
names it explicitly. AMD's certificate files are not shipped; users supply them or fetch them
(see :mod:`sevlaunch.kds`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization

from sevlaunch.crypto.rsa import public_key
from sevlaunch.errors import CryptoError, UntrustedRootError
from sevlaunch.formats.amdcert import AmdCert


@dataclass(frozen=True)
class TrustRoot:
    """A root the user may rely on: a name, the ARK key id and the key's fingerprint."""

    name: str
    key_id: bytes
    fingerprint: str
    amd: bool = True


AMD_ROOTS: tuple[TrustRoot, ...] = (
    TrustRoot(
        "naples",
        bytes.fromhex("1bb987c359494606b174945601c9ea5b"),
        "3a04f8f1347de206c9206a81148ba4ef0a233b245d43a15dd82de043bb3e4f69",
    ),
    TrustRoot(
        "rome",
        bytes.fromhex("e6002122fb58419399d15fee7b131351"),
        "7447ffa21e2b938bfade89f5e9066c00a328813bfc43685605cceabd18da6fde",
    ),
    TrustRoot(
        "milan",
        bytes.fromhex("94c38e4177d0479292a7ae671d083fb6"),
        "9f056bee44377e29308cb5ffa895bdfb62d18881fa6bed8d6f075b0204089cb9",
    ),
    TrustRoot(
        "genoa",
        bytes.fromhex("9f9d4a8fe761456599f6946c4c010f3a"),
        "429a69c9422aa258ee4d8db5fcda9c6470ef15f8cd5a9cebd6cbc7d90b863831",
    ),
    TrustRoot(
        "turin",
        bytes.fromhex("d05c3a8bde484904b49552422ceb3942"),
        "4f125410563a2ab9a50356f9243f6fe0b6f73de98603f53f90339c70e9d7ad08",
    ),
)

GENERATIONS = tuple(root.name for root in AMD_ROOTS)


def fingerprint(cert: AmdCert) -> str:
    """SHA-256 (hex) of the DER SubjectPublicKeyInfo of an AMD certificate's key."""
    der = public_key(cert.modulus, cert.pub_exp).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class TrustStore:
    """AMD's pinned roots plus the extra roots a user named (``--trust-root FILE``)."""

    extra: tuple[TrustRoot, ...] = field(default=())

    def with_root(self, ark: AmdCert, name: str = "user") -> TrustStore:
        """A store that also trusts ``ark`` (refused if it impersonates an AMD root)."""
        amd = self._amd_by_key_id(ark.key_id)
        fp = _root_fingerprint(ark)
        if amd is not None and amd.fingerprint != fp:
            raise _impersonation(amd, fp)
        return TrustStore((*self.extra, TrustRoot(name, ark.key_id, fp, amd=False)))

    @staticmethod
    def _amd_by_key_id(key_id: bytes) -> TrustRoot | None:
        return next((r for r in AMD_ROOTS if r.key_id == key_id), None)

    def identify(self, ark: AmdCert) -> TrustRoot:
        """The root ``ark`` is, or :class:`UntrustedRootError` saying why it is not trusted."""
        fp = _root_fingerprint(ark)
        amd = self._amd_by_key_id(ark.key_id)
        if amd is not None:
            if amd.fingerprint != fp:
                raise _impersonation(amd, fp)
            return amd
        for root in self.extra:
            if root.fingerprint == fp:
                return root
        raise UntrustedRootError(
            f"the ARK (key id {ark.key_id.hex()}, key fingerprint {fp}) is not one of AMD's roots "
            f"({', '.join(GENERATIONS)}) and was not named with --trust-root; if it is the root "
            "of an emulated platform, export it (sevlaunch platform export-root) and pass "
            "--trust-root FILE"
        )


def _root_fingerprint(ark: AmdCert) -> str:
    """:func:`fingerprint`, but an ARK whose key is not a valid RSA key is an untrusted root."""
    try:
        return fingerprint(ark)
    except CryptoError as exc:
        raise UntrustedRootError(
            f"the ARK (key id {ark.key_id.hex()}) does not hold a usable RSA public key ({exc}): "
            "the certificate is forged or corrupt; use AMD's ask_ark file"
        ) from exc


def _impersonation(amd: TrustRoot, fp: str) -> UntrustedRootError:
    return UntrustedRootError(
        f"the ARK carries AMD's {amd.name} key id {amd.key_id.hex()} but its public key "
        f"fingerprint is {fp}, not the pinned {amd.fingerprint}: the certificate is forged or "
        "corrupt; use AMD's ask_ark file"
    )
