"""Step 5: the guest owner's launch session for one verified platform.

The owner makes a P-384 key (its public half in the GODH certificate), agrees a shared
secret with the platform's PDH, and wraps fresh TEK and TIK into the 128-byte session blob
LAUNCH_START takes (firmware-API doc §4). Only a :class:`VerifiedPlatform` is accepted, so a
PDH that was never proven to come from AMD hardware cannot be used by accident.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec

from sevlaunch.crypto import ecc
from sevlaunch.crypto.chain import VerifiedPlatform
from sevlaunch.crypto.kdf import master_secret
from sevlaunch.crypto.launch import TransportKeys, policy_mac, wrap_keys
from sevlaunch.errors import UsageError
from sevlaunch.formats.policy import Policy
from sevlaunch.formats.session import Session
from sevlaunch.formats.sevcert import Algorithm, EccCurve, SevCert, Signature, Usage

Rng = Callable[[int], bytes]
#: Bytes drawn for the GODH scalar: reduced modulo the P-384 order with negligible bias.
KEY_SEED_SIZE = 64


@dataclass(frozen=True)
class LaunchSession:
    """What the owner hands the host (GODH, session, policy) and keeps (TEK, TIK)."""

    godh: SevCert
    session: Session
    keys: TransportKeys = field(repr=False)
    policy: Policy

    @property
    def godh_b64(self) -> str:
        """The GODH as QEMU ``dh-cert-file`` and libvirt ``<dhCert>`` take it."""
        return base64.b64encode(self.godh.to_bytes()).decode()

    @property
    def session_b64(self) -> str:
        """The session blob as QEMU ``session-file`` and libvirt ``<session>`` take it."""
        return base64.b64encode(self.session.to_bytes()).decode()


def _draw(rng: Rng, size: int, what: str) -> bytes:
    data = rng(size)
    if len(data) != size:
        raise UsageError(f"the random source gave {len(data)} bytes for the {what}, not {size}")
    return data


def _check_pdh(pdh: SevCert) -> None:
    if pdh.usage is not Usage.PDH or pdh.algorithm not in (
        Algorithm.ECDH_SHA256,
        Algorithm.ECDH_SHA384,
    ):
        raise UsageError(
            f"expected a PDH with an ECDH key, found usage {pdh.usage.name} and algorithm "
            f"{pdh.algorithm.name}: pass the platform's chain in PDH, PEK, OCA, CEK order"
        )
    if pdh.ecc_key.curve is not EccCurve.P384:
        raise UsageError(
            f"the PDH key is on {pdh.ecc_key.curve.name}; SEV firmware uses P-384 and so does "
            "this tool"
        )


def godh_certificate(public: ec.EllipticCurvePublicKey) -> SevCert:
    """The GODH as virtee/sevctl make it: version 1, API 0.0, PDH/ECDH_SHA256, no signatures."""
    return SevCert(
        usage=Usage.PDH,
        algorithm=Algorithm.ECDH_SHA256,
        public_key=ecc.from_public_key(public),
        sig1=Signature.empty(),
        sig2=Signature.empty(),
    )


def make_session(
    platform: VerifiedPlatform,
    policy: Policy | int,
    *,
    rng: Rng,
    keys: TransportKeys | None = None,
    private: ec.EllipticCurvePrivateKey | None = None,
) -> LaunchSession:
    """A fresh launch session for ``platform``; ``keys`` and the GODH ``private`` key are
    drawn from ``rng`` unless given (a key from OpenSSL's generator costs about half of one
    derived from drawn bytes).

    Use each session for one launch attempt only.
    """
    if not isinstance(platform, VerifiedPlatform):
        raise UsageError(
            "make_session takes a VerifiedPlatform: verify the chain first "
            "(sevlaunch.owner.verify.verify_chain_file)"
        )
    pdh = platform.pdh
    _check_pdh(pdh)
    policy = policy if isinstance(policy, Policy) else Policy.from_int(policy)
    if keys is None:
        keys = TransportKeys(_draw(rng, 16, "TEK"), _draw(rng, 16, "TIK"))
    if private is None:
        private = ecc.generate_p384(int.from_bytes(_draw(rng, KEY_SEED_SIZE, "GODH key"), "big"))
    nonce = _draw(rng, 16, "session nonce")
    wrap_iv = _draw(rng, 16, "WRAP_IV")
    master = master_secret(ecc.ecdh(private, pdh.ecc_key), nonce)
    wrap_tk, wrap_mac = wrap_keys(master, keys, wrap_iv)
    session = Session(
        nonce=nonce,
        wrap_tk=wrap_tk,
        wrap_iv=wrap_iv,
        wrap_mac=wrap_mac,
        policy_mac=policy_mac(keys.tik, policy.to_int()),
    )
    return LaunchSession(godh_certificate(private.public_key()), session, keys, policy)
