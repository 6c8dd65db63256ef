"""A simulated SEV platform for broker tests: a chain to a test-only root and the firmware's
side of LAUNCH_START, LAUNCH_MEASURE and LAUNCH_SECRET, built from sevlaunch primitives.

RSA-2048 roots keep key generation fast; the broker handles them as Naples-size CAs.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field, replace

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sevlaunch.crypto import ecc
from sevlaunch.crypto.kdf import master_secret
from sevlaunch.crypto.launch import TransportKeys, check_policy_mac, measurement_mac, secret_mac
from sevlaunch.crypto.rsa import sign_pss
from sevlaunch.crypto.symmetric import aes128_ctr, check_mac
from sevlaunch.formats.amdcert import AmdCert
from sevlaunch.formats.secret import SecretHeader, SecretTable
from sevlaunch.formats.session import Measurement, Session
from sevlaunch.formats.sevcert import Algorithm, SevCert, Signature, Usage
from sevlaunch.protocol import LaunchSecurityInfo, NodeSevInfo

ECDSA = Algorithm.ECDSA_SHA256


def _amd(
    key: rsa.RSAPrivateKey, key_id: bytes, usage: Usage, signer: rsa.RSAPrivateKey, signer_id: bytes
) -> AmdCert:
    bits = key.key_size
    n = key.public_key().public_numbers()
    cert = AmdCert(key_id, signer_id, usage, bits, bits, n.e, n.n, None)
    return replace(cert, signature=sign_pss(signer, cert.signed_bytes(), _hash(bits)))


def _hash(bits: int) -> str:
    """AMD's rule: RSA-2048 roots sign with SHA-256 (Naples), RSA-4096 with SHA-384."""
    return "sha256" if bits == 2048 else "sha384"


def _sev(
    usage: Usage, algorithm: Algorithm, key: ec.EllipticCurvePrivateKey, api: tuple[int, int]
) -> SevCert:
    return SevCert(
        usage,
        algorithm,
        ecc.from_public_key(key.public_key()),
        Signature.empty(),
        Signature.empty(),
        api[0],
        api[1],
    )


def _ecdsa(cert: SevCert, slot: int, signer: ec.EllipticCurvePrivateKey, usage: Usage) -> SevCert:
    return cert.with_signature(slot, ecc.sign(signer, cert.signed_bytes(), usage, ECDSA))


@dataclass(frozen=True)
class FakePlatform:
    ark: AmdCert
    ask: AmdCert
    cek: SevCert
    oca: SevCert
    pek: SevCert
    pdh: SevCert
    pdh_key: ec.EllipticCurvePrivateKey = field(repr=False)
    api: tuple[int, int] = (1, 52)
    build: int = 4

    @classmethod
    def create(
        cls, name: bytes = b"test", api: tuple[int, int] = (1, 52), bits: int = 2048
    ) -> FakePlatform:
        """A platform whose roots are RSA-``bits`` (2048 is fast; 4096 is what Rome+ use)."""
        ark_key = rsa.generate_private_key(65537, bits)
        ask_key = rsa.generate_private_key(65537, bits)
        ark_id, ask_id = (
            (name + b"-ARK").ljust(16, b".")[:16],
            (name + b"-ASK").ljust(16, b".")[:16],
        )
        ark = _amd(ark_key, ark_id, Usage.ARK, ark_key, ark_id)
        ask = _amd(ask_key, ask_id, Usage.ASK, ark_key, ark_id)
        cek_key, oca_key, pek_key, pdh_key = (ecc.generate_p384() for _ in range(4))
        cek = _sev(Usage.CEK, ECDSA, cek_key, api)
        cek = cek.with_signature(
            1,
            Signature.rsa(
                Usage.ASK,
                Algorithm.RSA_SHA256 if bits == 2048 else Algorithm.RSA_SHA384,
                sign_pss(ask_key, cek.signed_bytes(), _hash(bits)),
            ),
        )
        oca = _ecdsa(_sev(Usage.OCA, ECDSA, oca_key, api), 1, oca_key, Usage.OCA)
        pek = _ecdsa(_sev(Usage.PEK, ECDSA, pek_key, api), 1, oca_key, Usage.OCA)
        pek = _ecdsa(pek, 2, cek_key, Usage.CEK)
        pdh = _ecdsa(_sev(Usage.PDH, Algorithm.ECDH_SHA256, pdh_key, api), 1, pek_key, Usage.PEK)
        return cls(ark, ask, cek, oca, pek, pdh, pdh_key, api)

    # what node SEV info gives, base64
    @property
    def pdh_b64(self) -> str:
        return base64.b64encode(self.pdh.to_bytes()).decode()

    @property
    def chain_b64(self) -> str:
        chain = self.pek.to_bytes() + self.oca.to_bytes() + self.cek.to_bytes()
        return base64.b64encode(chain).decode()

    @property
    def ca_file(self) -> bytes:
        return self.ask.to_bytes() + self.ark.to_bytes()

    def launch_start(self, dh_cert_b64: str, session_b64: str, policy: int) -> TransportKeys:
        """What the firmware does with GODH and session: unwrap TEK/TIK, check POLICY_MAC."""
        godh = SevCert.from_bytes(base64.b64decode(dh_cert_b64))
        session = Session.from_bytes(base64.b64decode(session_b64))
        master = master_secret(ecc.ecdh(self.pdh_key, godh.ecc_key), session.nonce)
        from sevlaunch.crypto.launch import unwrap_keys

        keys = unwrap_keys(master, session)
        check_policy_mac(keys.tik, policy, session.policy_mac)
        return keys

    def launch_measure(
        self, keys: TransportKeys, digest: bytes, policy: int, mnonce: bytes | None = None
    ) -> Measurement:
        mnonce = mnonce or os.urandom(16)
        mac = measurement_mac(
            keys.tik,
            api_major=self.api[0],
            api_minor=self.api[1],
            build_id=self.build,
            policy=policy,
            digest=digest,
            mnonce=mnonce,
        )
        return Measurement(mac, mnonce)

    @property
    def node(self) -> NodeSevInfo:
        """Node SEV info as the host gives it (no chip id: the chain's CEK is signed)."""
        chain = self.pek.to_bytes() + self.oca.to_bytes() + self.cek.to_bytes()
        return NodeSevInfo(self.pdh.to_bytes(), chain, cbitpos=51, reduced_phys_bits=1)

    def launch_info(self, measurement: Measurement, policy: int) -> LaunchSecurityInfo:
        return LaunchSecurityInfo(measurement, self.api[0], self.api[1], self.build, policy)

    def info(self, measurement: Measurement, policy: int) -> dict[str, object]:
        """libvirt's launch security info keys."""
        return {
            "sev-measurement": base64.b64encode(measurement.to_bytes()).decode(),
            "sev-api-major": self.api[0],
            "sev-api-minor": self.api[1],
            "sev-build-id": self.build,
            "sev-policy": policy,
        }

    @staticmethod
    def launch_secret(
        keys: TransportKeys, measurement: Measurement, header_b64: str, payload_b64: str
    ) -> SecretTable:
        """LAUNCH_SECRET: check the packet MAC, decrypt, and read the table as the guest does."""
        header = SecretHeader.from_bytes(base64.b64decode(header_b64))
        payload = base64.b64decode(payload_b64)
        mac = secret_mac(
            keys.tik,
            flags=header.flags,
            iv=header.iv,
            guest_length=len(payload),
            ciphertext=payload,
            measure=measurement.measure,
        )
        check_mac("packet MAC", mac, header.mac)
        return SecretTable.from_bytes(aes128_ctr(keys.tek, header.iv, payload))
