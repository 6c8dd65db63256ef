"""Pure cryptography of the SEV API on pyca/cryptography: KDF, key wrap, MACs, ECDH/ECDSA
P-384 with SEV encodings, RSA-PSS, chain verification and the trust store of AMD roots."""

from sevlaunch.crypto.chain import (
    Link,
    VerifiedCa,
    VerifiedPlatform,
    verify_ca,
    verify_cek,
    verify_platform,
)
from sevlaunch.crypto.launch import TransportKeys
from sevlaunch.crypto.truststore import AMD_ROOTS, TrustRoot, TrustStore, fingerprint

__all__ = [
    "AMD_ROOTS",
    "Link",
    "TransportKeys",
    "TrustRoot",
    "TrustStore",
    "VerifiedCa",
    "VerifiedPlatform",
    "fingerprint",
    "verify_ca",
    "verify_cek",
    "verify_platform",
]
