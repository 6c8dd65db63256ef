"""SEV certificate: real certificates parse to what the firmware-API doc says, bytes round-trip
exactly, and hostile bytes raise only FormatError naming the field and its offset."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sevlaunch.errors import FormatError
from sevlaunch.formats import Algorithm, EccCurve, EccPublicKey, SevCert, Signature, Usage
from sevlaunch.formats.sevcert import SIG1_OFFSET, SIG2_OFFSET, SIZE
from tests.strategies import mutated, parse_or_error, sev_certs

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# (usage, algorithm, sig1, sig2) per the doc's "Observed contents of real certs" table.
EXPECTED = {
    "pdh": (Usage.PDH, Algorithm.ECDH_SHA256, (Usage.PEK, Algorithm.ECDSA_SHA256), None),
    "pek": (
        Usage.PEK,
        Algorithm.ECDSA_SHA256,
        (Usage.OCA, Algorithm.ECDSA_SHA256),
        (Usage.CEK, Algorithm.ECDSA_SHA256),
    ),
    "oca": (Usage.OCA, Algorithm.ECDSA_SHA256, (Usage.OCA, Algorithm.ECDSA_SHA256), None),
}
CEK_SIG = {"naples": Algorithm.RSA_SHA256, "rome": Algorithm.RSA_SHA384}
API = {"naples": (0, 16), "rome": (0, 22)}


def _cert_bytes(vectors: Path, generation: str, name: str) -> bytes:
    return (vectors / "platforms" / generation / f"{name}.cert").read_bytes()


def _slot(sig: Signature) -> tuple[Usage, Algorithm] | None:
    return None if sig.is_empty else (sig.usage, sig.algorithm)


@pytest.mark.parametrize("generation", ["naples", "rome"])
@pytest.mark.parametrize("name", ["pdh", "pek", "oca"])
def test_real_platform_certs_parse_as_documented(vectors: Path, generation: str, name: str) -> None:
    data = _cert_bytes(vectors, generation, name)
    cert = SevCert.from_bytes(data)
    usage, algorithm, sig1, sig2 = EXPECTED[name]
    assert (cert.usage, cert.algorithm) == (usage, algorithm)
    assert (_slot(cert.sig1), _slot(cert.sig2)) == (sig1, sig2)
    assert isinstance(cert.public_key, EccPublicKey)
    assert cert.public_key.curve is EccCurve.P384
    assert cert.public_key.qx.bit_length() <= 384
    if name == "pdh":
        assert (cert.api_major, cert.api_minor) == API[generation]
    assert cert.to_bytes() == data
    assert cert.signed_bytes() == data[:SIG1_OFFSET]


@pytest.mark.parametrize("generation", ["naples", "rome"])
def test_real_cek_carries_the_ask_signature_of_its_generation(
    vectors: Path, generation: str
) -> None:
    data = _cert_bytes(vectors, generation, "cek")
    cert = SevCert.from_bytes(data)
    assert cert.usage is Usage.CEK
    assert _slot(cert.sig1) == (Usage.ASK, CEK_SIG[generation])
    assert cert.sig2.is_empty
    assert cert.to_bytes() == data


@given(sev_certs())
@settings(max_examples=200, deadline=None)
def test_round_trip_from_value(cert: SevCert) -> None:
    data = cert.to_bytes()
    assert len(data) == SIZE
    assert SevCert.from_bytes(data) == cert
    assert SevCert.from_bytes(data).to_bytes() == data


def test_with_signature_replaces_one_slot(vectors: Path) -> None:
    cert = SevCert.from_bytes(_cert_bytes(vectors, "rome", "cek"))
    unsigned = cert.with_signature(1, Signature.empty())
    assert unsigned.sig1.is_empty
    assert unsigned.signed_bytes() == cert.signed_bytes()
    assert SevCert.from_bytes(unsigned.to_bytes()) == unsigned
    with pytest.raises(FormatError) as err:
        cert.with_signature(3, Signature.empty())
    assert err.value.field == "slot"


def test_ecc_key_of_an_rsa_cert_is_a_format_error() -> None:
    from sevlaunch.formats import RsaPublicKey

    cert = SevCert(
        Usage.CEK,
        Algorithm.RSA_SHA256,
        RsaPublicKey(2048, 65537, 3),
        Signature.empty(),
        Signature.empty(),
    )
    with pytest.raises(FormatError, match="CEK key is not ECC"):
        _ = cert.ecc_key


# --- precise errors on real bytes ------------------------------------------------------------


def _patched(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


@pytest.mark.parametrize(
    ("offset", "value", "field"),
    [
        (0x0, b"\x02\0\0\0", "version"),
        (0x7, b"\x01", "reserved"),
        (0x8, b"\x05\x10\0\0", "pub_key_usage"),
        (0x8, b"\0\x10\0\0", "pub_key_usage"),  # INVALID cannot own a key
        (0xC, b"\x00\0\0\0", "pub_key_algo"),
        (0xC, b"\x04\0\0\0", "pub_key_algo"),
        (0x10, b"\x03\0\0\0", "pub_key.curve"),
        (0x10 + 0x94 + 5, b"\x01", "pub_key.rmbz"),
        (SIG1_OFFSET, b"\x99\0\0\0", "sig1_usage"),
        (SIG1_OFFSET + 4, b"\x77\0\0\0", "sig1_algo"),
        (SIG1_OFFSET + 8 + 144 + 3, b"\x01", "sig1.rmbz"),
        (SIG2_OFFSET + 4, b"\x02\0\0\0", "sig2_algo"),  # empty slot with an algo
        (SIG2_OFFSET + 8 + 100, b"\x01", "sig2"),  # empty slot with a value
    ],
)
def test_errors_name_the_field_and_offset(
    vectors: Path, offset: int, value: bytes, field: str
) -> None:
    data = _patched(_cert_bytes(vectors, "rome", "pdh"), offset, value)
    with pytest.raises(FormatError) as err:
        SevCert.from_bytes(data)
    exc = err.value
    assert exc.structure == "SEV certificate"
    assert exc.field == field
    assert exc.offset is not None
    # A must-be-zero check points at the byte itself; a field check at the field's start.
    assert 0 <= offset - exc.offset < 4
    assert field in str(exc)


def test_used_slot_with_invalid_algorithm_is_refused(vectors: Path) -> None:
    data = _patched(_cert_bytes(vectors, "rome", "pdh"), SIG1_OFFSET + 4, b"\0\0\0\0")
    with pytest.raises(FormatError) as err:
        SevCert.from_bytes(data)
    assert (err.value.field, err.value.offset) == ("sig1_algo", SIG1_OFFSET + 4)


@pytest.mark.parametrize("size", [0, 1, SIZE - 1, SIZE + 1, 2 * SIZE])
def test_wrong_length_is_refused(size: int) -> None:
    with pytest.raises(FormatError) as err:
        SevCert.from_bytes(bytes(size))
    assert err.value.field == "length"
    assert err.value.value == size


def test_values_too_large_for_their_fields_are_format_errors() -> None:
    key = EccPublicKey(EccCurve.P384, 1 << 576, 1)
    with pytest.raises(FormatError) as err:
        key.to_bytes()
    assert err.value.field == "pub_key.qx"
    with pytest.raises(FormatError):
        Signature(Usage.PEK, Algorithm.ECDSA_SHA256, b"short").to_bytes()


# --- fuzz ------------------------------------------------------------------------------------


def _parse_exact_or_format_error(data: bytes) -> None:
    """Either the bytes parse and re-encode to themselves, or FormatError names a field."""
    cert = parse_or_error(lambda: SevCert.from_bytes(data))
    if isinstance(cert, FormatError):
        assert cert.structure == "SEV certificate"
        assert cert.field
        assert cert.offset is None or cert.offset >= 0
    else:
        assert cert.to_bytes() == data


@given(st.binary(max_size=2 * SIZE))
@FUZZ
def test_fuzz_random_bytes(data: bytes) -> None:
    _parse_exact_or_format_error(data)


@given(st.binary(min_size=SIZE, max_size=SIZE))
@FUZZ
def test_fuzz_random_bytes_of_the_right_size(data: bytes) -> None:
    _parse_exact_or_format_error(data)


@pytest.mark.parametrize("name", ["pdh", "pek", "oca", "cek"])
@given(data=st.data())
@FUZZ
def test_fuzz_mutated_real_certificates(vectors: Path, name: str, data: st.DataObject) -> None:
    base = _cert_bytes(vectors, "rome" if name != "cek" else "naples", name)
    _parse_exact_or_format_error(data.draw(mutated(base)))
