"""ID block and ID auth: the known answers of sev-snp-measure and virtee/sev, round trips,
and mutation fuzzing of the 4096-byte auth structure."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sevlaunch.errors import FormatError
from sevlaunch.formats.snp import EcdsaPublicKey, EcdsaSignature, IdAuth, IdBlock
from tests.snp_strategies import id_auths, id_blocks, public_keys, signatures
from tests.strategies import mutated, parse_or_error


@pytest.mark.parametrize("folder", ["sev-snp-measure", "virtee-sev/measurement"])
def test_id_block_known_answer(vectors: Path, folder: str) -> None:
    expected = json.loads((vectors / "snp" / folder / "expected_id_block.json").read_text())
    if "launch_digest_b64" in expected:
        ld = base64.b64decode(expected["launch_digest_b64"])
    else:
        ld = bytes.fromhex(expected["launch_digest_hex"])
    block = IdBlock(ld)
    assert block.to_bytes() == base64.b64decode(expected["id_block_b64"])
    assert IdBlock.from_bytes(block.to_bytes()) == block


def test_id_auth_vector(vectors: Path) -> None:
    folder = vectors / "snp" / "virtee-sev" / "measurement"
    raw = (folder / "test_auth_block.bin").read_bytes()
    auth = IdAuth.from_bytes(raw)
    assert auth.to_bytes() == raw
    assert auth.id_block_sig == EcdsaSignature.from_bytes((folder / "test_id_sig.bin").read_bytes())
    assert auth.id_key_sig == EcdsaSignature.from_bytes((folder / "test_auth_sig.bin").read_bytes())
    assert auth.id_key.curve == 2
    assert auth.has_author_key


@given(id_blocks)
def test_id_block_round_trip(block: IdBlock) -> None:
    assert IdBlock.from_bytes(block.to_bytes()) == block


@given(id_auths)
@settings(max_examples=100, deadline=None)
def test_id_auth_round_trip(auth: IdAuth) -> None:
    assert IdAuth.from_bytes(auth.to_bytes()) == auth


@given(signatures, public_keys)
def test_ecdsa_structures_round_trip(sig: EcdsaSignature, key: EcdsaPublicKey) -> None:
    assert EcdsaSignature.from_bytes(sig.to_bytes()) == sig
    assert EcdsaPublicKey.from_bytes(key.to_bytes()) == key


@given(st.data())
@settings(max_examples=200, deadline=None)
def test_id_auth_mutations(vectors: Path, data: st.DataObject) -> None:
    base = (vectors / "snp/virtee-sev/measurement/test_auth_block.bin").read_bytes()
    raw = data.draw(mutated(base))
    parsed = parse_or_error(lambda: IdAuth.from_bytes(raw))
    if isinstance(parsed, FormatError):
        assert parsed.structure in ("SNP ID auth", "SNP ECDSA signature", "SNP ECDSA public key")
    else:
        assert parsed.to_bytes() == raw


@given(st.binary(max_size=128))
def test_id_block_fuzz(raw: bytes) -> None:
    parsed = parse_or_error(lambda: IdBlock.from_bytes(raw))
    assert isinstance(parsed, FormatError) or parsed.to_bytes() == raw


def test_bad_sizes() -> None:
    with pytest.raises(FormatError):
        IdBlock(bytes(47))
    with pytest.raises(FormatError):
        EcdsaSignature(1 << 576, 0).to_bytes()
    with pytest.raises(FormatError, match="reserved"):
        EcdsaSignature.from_bytes(bytes(511) + b"\x01")
