"""Pure cryptography of the SEV API on pyca/cryptography: KDF, key wrap, MACs, ECDH/ECDSA
P-384 with SEV encodings, RSA-PSS, chain verification and the trust store of AMD roots.

Names are imported lazily (PEP 562): a guest that only unlocks its disk (``crypto.disk``)
must not load chain verification, the certificate layouts and pyca's RSA and X.509 with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sevlaunch._lazy import exports

_EXPORTS = {
    "Link": "chain",
    "VerifiedCa": "chain",
    "VerifiedPlatform": "chain",
    "verify_ca": "chain",
    "verify_cek": "chain",
    "verify_platform": "chain",
    "TransportKeys": "launch",
    "AMD_ROOTS": "truststore",
    "TrustRoot": "truststore",
    "TrustStore": "truststore",
    "fingerprint": "truststore",
}

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


__getattr__ = exports(__name__, _EXPORTS, globals())


if TYPE_CHECKING:
    from sevlaunch.crypto.chain import Link as Link
    from sevlaunch.crypto.chain import VerifiedCa as VerifiedCa
    from sevlaunch.crypto.chain import VerifiedPlatform as VerifiedPlatform
    from sevlaunch.crypto.chain import verify_ca as verify_ca
    from sevlaunch.crypto.chain import verify_cek as verify_cek
    from sevlaunch.crypto.chain import verify_platform as verify_platform
    from sevlaunch.crypto.launch import TransportKeys as TransportKeys
    from sevlaunch.crypto.truststore import AMD_ROOTS as AMD_ROOTS
    from sevlaunch.crypto.truststore import TrustRoot as TrustRoot
    from sevlaunch.crypto.truststore import TrustStore as TrustStore
    from sevlaunch.crypto.truststore import fingerprint as fingerprint
