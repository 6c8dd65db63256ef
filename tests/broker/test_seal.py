"""Sealing under the KEK: round trip, and a blob moved to another owner or KEK fails."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sevlaunch.broker.seal import Sealer, launch_context, secret_context
from sevlaunch.errors import CryptoError, IntegrityError

SEALER = Sealer(bytes(32), os.urandom)


@given(st.binary(max_size=512), st.text(max_size=20), st.text(max_size=36))
def test_round_trip(plaintext: bytes, workload: str, guid: str) -> None:
    ctx = secret_context(workload, guid)
    assert SEALER.open(SEALER.seal(plaintext, ctx), ctx) == plaintext


def test_blob_bound_to_its_context_and_kek() -> None:
    blob = SEALER.seal(b"tek and tik", launch_context("a" * 32))
    with pytest.raises(IntegrityError):
        SEALER.open(blob, launch_context("b" * 32))
    with pytest.raises(IntegrityError):
        SEALER.open(blob, secret_context("a" * 32, ""))
    with pytest.raises(IntegrityError):
        Sealer(bytes(31) + b"\1", os.urandom).open(blob, launch_context("a" * 32))
    with pytest.raises(IntegrityError):
        SEALER.open(blob[:-1] + bytes([blob[-1] ^ 1]), launch_context("a" * 32))
    with pytest.raises(IntegrityError):
        SEALER.open(blob[:10], launch_context("a" * 32))


def test_kek_must_be_32_bytes() -> None:
    with pytest.raises(CryptoError, match="head -c 32"):
        Sealer(bytes(16), os.urandom)
