"""AMD certificate (ARK/ASK): AMD's published files parse, the Naples ARK quirk is handled,
bytes round-trip exactly, hostile bytes raise only FormatError."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sevlaunch.errors import FormatError
from sevlaunch.formats import AmdCert, Usage
from tests.strategies import amd_certs, mutated, parse_or_error

FUZZ = settings(max_examples=300, deadline=None)

KEY_IDS = {
    "naples": "1bb987c359494606b174945601c9ea5b",
    "rome": "e6002122fb58419399d15fee7b131351",
    "milan": "94c38e4177d0479292a7ae671d083fb6",
}
SIZES = {"naples": (832, 2048), "rome": (1600, 4096), "milan": (1600, 4096)}


def _amd(vectors: Path, name: str) -> bytes:
    return (vectors / "amd" / name).read_bytes()


@pytest.mark.parametrize("generation", ["naples", "rome", "milan"])
def test_published_ark_and_ask_parse(vectors: Path, generation: str) -> None:
    size, bits = SIZES[generation]
    ark_bytes, ask_bytes = (_amd(vectors, f"{generation}_{k}.cert") for k in ("ark", "ask"))
    ark, ask = AmdCert.from_bytes(ark_bytes), AmdCert.from_bytes(ask_bytes)
    assert len(ark_bytes) == len(ask_bytes) == size
    assert ark.key_id.hex() == KEY_IDS[generation]
    assert ark.is_self_signed
    assert not ask.is_self_signed
    assert ask.certifying_id == ark.key_id
    assert (ark.key_usage, ask.key_usage) == (Usage.ARK, Usage.ASK)
    for cert, data in ((ark, ark_bytes), (ask, ask_bytes)):
        assert (cert.modulus_size, cert.pub_exp_size, cert.pub_exp) == (bits, bits, 65537)
        assert cert.hash_name == ("sha256" if bits == 2048 else "sha384")
        assert cert.to_bytes() == data
        assert data.startswith(cert.signed_bytes())
        assert len(data) - len(cert.signed_bytes()) == bits // 8


def test_naples_ark_as_published_is_the_patched_one_without_its_signature(vectors: Path) -> None:
    bad, sig, full = (
        _amd(vectors, n) for n in ("naples_ark.cert.bad", "naples_ark.cert.sig", "naples_ark.cert")
    )
    assert bad + sig == full
    assert (len(bad), len(sig), len(full)) == (576, 256, 832)
    unsigned = AmdCert.from_bytes(bad, allow_unsigned=True)
    signed = AmdCert.from_bytes(full)
    assert unsigned.signature is None
    assert signed.signature == int.from_bytes(sig, "little")
    assert unsigned.to_bytes() == bad
    assert unsigned.signed_bytes() == signed.signed_bytes()


def test_unsigned_certificate_needs_permission(vectors: Path) -> None:
    bad = _amd(vectors, "naples_ark.cert.bad")
    with pytest.raises(FormatError) as err:
        AmdCert.from_bytes(bad)
    assert (err.value.structure, err.value.field, err.value.offset) == (
        "AMD certificate",
        "signature",
        576,
    )


@pytest.mark.parametrize(("generation", "digest"), [
    ("rome", "9d7e6b96377ab614e2182e0aae0dcde597019fca23716423f4b902f5dc15c0a6"),
    ("milan", "f3315952a077b37c3c7c58aea544a16fc62fe5a06185b33c86a518658bb2086b"),
])  # fmt: skip
def test_ask_ark_file_digest(vectors: Path, generation: str, digest: str) -> None:
    ask = AmdCert.from_bytes(_amd(vectors, f"{generation}_ask.cert"))
    ark = AmdCert.from_bytes(_amd(vectors, f"{generation}_ark.cert"))
    assert hashlib.sha256(ask.to_bytes() + ark.to_bytes()).hexdigest() == digest


@given(amd_certs())
@settings(max_examples=200, deadline=None)
def test_round_trip_from_value(cert: AmdCert) -> None:
    data = cert.to_bytes()
    signed = cert.signature is not None
    assert len(data) == 0x40 + cert.pub_exp_size // 8 + cert.modulus_size // 8 * (1 + signed)
    assert AmdCert.from_bytes(data, allow_unsigned=not signed) == cert
    if signed:
        assert AmdCert.parse_prefix(data + b"tail") == (cert, b"tail")


@pytest.mark.parametrize(
    ("offset", "value", "field"),
    [
        (0x0, b"\x02", "version"),
        (0x24, b"\x01", "key_usage"),
        (0x2F, b"\x01", "reserved"),
        (0x38, b"\x00\x04\0\0", "pub_exp_size"),  # 1024 bits
        (0x3C, b"\x00\x0c\0\0", "modulus_size"),  # 3072 bits
    ],
)
def test_errors_name_the_field_and_offset(
    vectors: Path, offset: int, value: bytes, field: str
) -> None:
    data = bytearray(_amd(vectors, "rome_ark.cert"))
    data[offset : offset + len(value)] = value
    with pytest.raises(FormatError) as err:
        AmdCert.from_bytes(bytes(data))
    assert (err.value.field, err.value.offset) == (field, offset)


def test_trailing_bytes_are_refused(vectors: Path) -> None:
    data = _amd(vectors, "rome_ark.cert")
    with pytest.raises(FormatError) as err:
        AmdCert.from_bytes(data + b"\0")
    assert (err.value.field, err.value.offset) == ("length", len(data))


def test_wrong_sized_id_is_refused() -> None:
    with pytest.raises(FormatError) as err:
        AmdCert(b"short", bytes(16), Usage.ARK, 2048, 2048, 3, 5, None)
    assert err.value.field == "key_id"


def _parse_exact_or_format_error(data: bytes, *, allow_unsigned: bool) -> None:
    cert = parse_or_error(lambda: AmdCert.from_bytes(data, allow_unsigned=allow_unsigned))
    if isinstance(cert, FormatError):
        assert cert.structure == "AMD certificate"
        assert cert.field
    else:
        assert cert.to_bytes() == data


@given(st.binary(max_size=2000), st.booleans())
@FUZZ
def test_fuzz_random_bytes(data: bytes, allow_unsigned: bool) -> None:
    _parse_exact_or_format_error(data, allow_unsigned=allow_unsigned)


@pytest.mark.parametrize("name", ["naples_ark.cert", "naples_ark.cert.bad", "rome_ask.cert"])
@given(data=st.data())
@FUZZ
def test_fuzz_mutated_real_certificates(vectors: Path, name: str, data: st.DataObject) -> None:
    sample = data.draw(mutated(_amd(vectors, name)))
    _parse_exact_or_format_error(sample, allow_unsigned=data.draw(st.booleans()))
