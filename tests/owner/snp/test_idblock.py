"""ID block signing reproduces both tools' key digests with their test keys; what we sign
verifies as firmware checks it, and a changed block or a swapped key does not."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sevlaunch.errors import CryptoError
from sevlaunch.formats.snp import IdBlock
from sevlaunch.owner.snp.idblock import sign_id_block, verify_id_block

FOLDERS = ["sev-snp-measure", "virtee-sev/measurement"]


def key(path: Path) -> ec.EllipticCurvePrivateKey:
    loaded = serialization.load_pem_private_key(path.read_bytes(), None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    return loaded


@pytest.mark.parametrize("folder", FOLDERS)
def test_known_digests(vectors: Path, folder: str) -> None:
    base = vectors / "snp" / folder
    expected = json.loads((base / "expected_id_block.json").read_text())
    ld = (
        base64.b64decode(expected["launch_digest_b64"])
        if "launch_digest_b64" in expected
        else bytes.fromhex(expected["launch_digest_hex"])
    )
    signed = sign_id_block(
        IdBlock(ld), key(base / expected["id_key_pem"]), key(base / expected["author_key_pem"])
    )
    assert signed.id_block.to_bytes() == base64.b64decode(expected["id_block_b64"])
    assert signed.id_key_digest == base64.b64decode(expected["id_key_digest_b64"])
    assert signed.author_key_digest == base64.b64decode(expected["author_key_digest_b64"])
    verify_id_block(signed.id_block, signed.id_auth)


def test_virtee_auth_block_verifies(vectors: Path) -> None:
    from sevlaunch.formats.snp import IdAuth

    base = vectors / "snp" / "virtee-sev" / "measurement"
    expected = json.loads((base / "expected_id_block.json").read_text())
    auth = IdAuth.from_bytes((base / "test_auth_block.bin").read_bytes())
    block = IdBlock(bytes.fromhex(expected["launch_digest_hex"]))
    verify_id_block(block, auth)
    with pytest.raises(CryptoError):
        verify_id_block(dataclasses.replace(block, guest_svn=1), auth)


def test_without_author_key_and_tampering() -> None:
    id_key = ec.generate_private_key(ec.SECP384R1())
    block = IdBlock(bytes(range(48)), guest_svn=4, policy=0x3001F)
    signed = sign_id_block(block, id_key)
    assert signed.author_key_digest == bytes(48)
    assert not signed.id_auth.has_author_key
    verify_id_block(block, signed.id_auth)
    other = sign_id_block(block, id_key, ec.generate_private_key(ec.SECP384R1()))
    forged = dataclasses.replace(other.id_auth, id_key_sig=signed.id_auth.id_block_sig)
    with pytest.raises(CryptoError, match="author key"):
        verify_id_block(block, forged)
