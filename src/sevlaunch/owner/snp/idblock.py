"""Building and signing an ID block and its ID auth structure (sev-snp.md §3.6), as
sev-snp-measure's ``snp-create-id-block`` does: the ID key signs the 96-byte block, the author
key (optional) signs the ID key's 0x404-byte public-key structure."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from sevlaunch.crypto.snp import ecdsa
from sevlaunch.errors import CryptoError
from sevlaunch.formats.snp.ecdsa import EcdsaPublicKey, EcdsaSignature
from sevlaunch.formats.snp.idblock import IdAuth, IdBlock


@dataclass(frozen=True)
class SignedIdBlock:
    id_block: IdBlock
    id_auth: IdAuth

    @property
    def id_key_digest(self) -> bytes:
        """SHA-384 of the ID key structure: the report's ID_KEY_DIGEST."""
        return key_digest(self.id_auth.id_key)

    @property
    def author_key_digest(self) -> bytes:
        """The report's AUTHOR_KEY_DIGEST: zeros without an author key."""
        if not self.id_auth.has_author_key:
            return bytes(48)
        return key_digest(self.id_auth.author_key)


def key_digest(key: EcdsaPublicKey) -> bytes:
    return hashlib.sha384(key.to_bytes()).digest()


def sign_id_block(
    block: IdBlock,
    id_key: ec.EllipticCurvePrivateKey,
    author_key: ec.EllipticCurvePrivateKey | None = None,
) -> SignedIdBlock:
    """Sign ``block`` with ``id_key`` (and the ID key with ``author_key`` when given)."""
    id_pub = ecdsa.to_snp_key(id_key.public_key())
    if author_key is None:
        id_key_sig, author_pub = EcdsaSignature(0, 0), EcdsaPublicKey(0, 0, 0)
    else:
        author_pub = ecdsa.to_snp_key(author_key.public_key())
        id_key_sig = ecdsa.sign(author_key, id_pub.to_bytes())
    auth = IdAuth(
        id_block_sig=ecdsa.sign(id_key, block.to_bytes()),
        id_key=id_pub,
        id_key_sig=id_key_sig,
        author_key=author_pub,
    )
    return SignedIdBlock(block, auth)


def verify_id_block(block: IdBlock, auth: IdAuth) -> SignedIdBlock:
    """Check the signatures as firmware does at LAUNCH_FINISH; raises CryptoError."""
    ecdsa.verify(ecdsa.from_snp_key(auth.id_key), auth.id_block_sig, block.to_bytes())
    if auth.has_author_key:
        try:
            ecdsa.verify(
                ecdsa.from_snp_key(auth.author_key), auth.id_key_sig, auth.id_key.to_bytes()
            )
        except CryptoError as exc:
            raise CryptoError(f"the author key's signature on the ID key: {exc}") from exc
    return SignedIdBlock(block, auth)
