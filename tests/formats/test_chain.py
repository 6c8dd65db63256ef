"""Chain files: sevctl's PDH ‖ PEK ‖ OCA ‖ CEK [‖ ASK ‖ ARK], AMD's ASK ‖ ARK and the
PDH_CERT_EXPORT buffer. Errors are located in the file, not in the certificate."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sevlaunch.errors import FormatError
from sevlaunch.formats import CaChain, CertExport, PlatformChain, SevCert, Usage
from sevlaunch.formats.sevcert import SIZE
from tests.strategies import (
    ca_bytes,
    ca_chains,
    cert_exports,
    mutated,
    parse_or_error,
    platform_bytes,
    platform_chains,
)

FUZZ = settings(max_examples=200, deadline=None)


@pytest.mark.parametrize("generation", ["naples", "rome"])
def test_real_platform_chain_round_trips(vectors: Path, generation: str) -> None:
    data = platform_bytes(vectors, generation)
    chain = PlatformChain.from_bytes(data)
    assert [c.usage for c in (chain.pdh, chain.pek, chain.oca, chain.cek)] == [
        Usage.PDH,
        Usage.PEK,
        Usage.OCA,
        Usage.CEK,
    ]
    assert chain.ca is None
    assert chain.to_bytes() == data
    export = chain.export()
    assert CertExport.from_bytes(export.to_bytes()) == export
    assert export.to_bytes() == data[SIZE:]
    assert PlatformChain.from_export(chain.pdh, export) == chain


@pytest.mark.parametrize("generation", ["naples", "rome"])
def test_full_export_carries_the_ca(vectors: Path, generation: str) -> None:
    data = platform_bytes(vectors, generation) + ca_bytes(vectors, generation)
    chain = PlatformChain.from_bytes(data)
    assert chain.ca == CaChain.from_bytes(ca_bytes(vectors, generation))
    assert chain.to_bytes() == data


def test_naples_ca_with_the_published_unsigned_ark(vectors: Path) -> None:
    data = ca_bytes(vectors, "naples", ark="ark.cert.bad")
    ca = CaChain.from_bytes(data)
    assert ca.ark.signature is None
    assert ca.ask.signature is not None
    assert ca.to_bytes() == data


def test_ca_in_the_wrong_order_is_refused(vectors: Path) -> None:
    amd = vectors / "amd"
    data = (amd / "rome_ark.cert").read_bytes() + (amd / "rome_ask.cert").read_bytes()
    with pytest.raises(FormatError, match="expected ASK then ARK") as err:
        CaChain.from_bytes(data)
    assert err.value.field == "key_usage"


def test_ca_error_offsets_are_file_offsets(vectors: Path) -> None:
    data = bytearray(ca_bytes(vectors, "rome"))
    data[1600 + 0x30] = 1  # ARK reserved byte
    with pytest.raises(FormatError) as err:
        CaChain.from_bytes(bytes(data))
    assert (err.value.field, err.value.offset) == ("ark.reserved", 1600 + 0x30)
    data = bytearray(ca_bytes(vectors, "rome"))
    data[0x30] = 1  # ASK reserved byte
    with pytest.raises(FormatError) as err:
        CaChain.from_bytes(bytes(data))
    assert (err.value.field, err.value.offset) == ("ask.reserved", 0x30)


def test_ca_without_ark_is_refused(vectors: Path) -> None:
    with pytest.raises(FormatError) as err:
        CaChain.from_bytes((vectors / "amd" / "rome_ask.cert").read_bytes())
    assert err.value.field == "ark.length"


def test_platform_chain_in_the_wrong_order_names_the_position(vectors: Path) -> None:
    folder = vectors / "platforms" / "rome"
    data = b"".join((folder / f"{n}.cert").read_bytes() for n in ("pek", "pdh", "oca", "cek"))
    with pytest.raises(FormatError, match="should be the PDH") as err:
        PlatformChain.from_bytes(data)
    assert (err.value.field, err.value.offset) == ("pdh", 8)


def test_platform_chain_error_offsets_are_file_offsets(vectors: Path) -> None:
    data = bytearray(platform_bytes(vectors, "rome"))
    data[2 * SIZE + 6] = 1  # OCA reserved byte
    with pytest.raises(FormatError) as err:
        PlatformChain.from_bytes(bytes(data))
    assert (err.value.field, err.value.offset) == ("oca.reserved", 2 * SIZE + 6)
    full = bytearray(platform_bytes(vectors, "rome") + ca_bytes(vectors, "rome"))
    full[4 * SIZE + 1600 + 0x29] = 1  # ARK reserved byte in a full export
    with pytest.raises(FormatError) as err:
        PlatformChain.from_bytes(bytes(full))
    assert (err.value.field, err.value.offset) == ("ca.ark.reserved", 4 * SIZE + 1600 + 0x29)


@pytest.mark.parametrize("size", [0, SIZE, 4 * SIZE - 1])
def test_short_platform_chain_is_refused(size: int) -> None:
    with pytest.raises(FormatError) as err:
        PlatformChain.from_bytes(bytes(size))
    assert err.value.field == "length"


@pytest.mark.parametrize("size", [0, 3 * SIZE - 1, 3 * SIZE + 1, 4 * SIZE])
def test_cert_export_has_a_fixed_size(size: int) -> None:
    with pytest.raises(FormatError) as err:
        CertExport.from_bytes(bytes(size))
    assert err.value.field == "length"


# --- round trips -----------------------------------------------------------------------------


@given(platform_chains)
@settings(max_examples=100, deadline=None)
def test_platform_chain_round_trip(chain: PlatformChain) -> None:
    data = chain.to_bytes()
    assert len(data) == 4 * SIZE + (len(chain.ca.to_bytes()) if chain.ca else 0)
    assert PlatformChain.from_bytes(data) == chain
    assert PlatformChain.from_bytes(data).to_bytes() == data


@given(ca_chains)
@settings(max_examples=100, deadline=None)
def test_ca_chain_round_trip(ca: CaChain) -> None:
    data = ca.to_bytes()
    assert CaChain.from_bytes(data) == ca
    assert CaChain.from_bytes(data).to_bytes() == data


@given(cert_exports)
@settings(max_examples=100, deadline=None)
def test_cert_export_round_trip(export: CertExport) -> None:
    data = export.to_bytes()
    assert len(data) == CertExport.SIZE
    assert CertExport.from_bytes(data) == export


# --- fuzz ------------------------------------------------------------------------------------


def _exact_or_format_error(parse: type[PlatformChain | CaChain | CertExport], data: bytes) -> None:
    value = parse_or_error(lambda: parse.from_bytes(data))
    if isinstance(value, FormatError):
        assert value.structure == parse.STRUCTURE
        assert value.field
        assert value.offset is None or value.offset >= 0
    else:
        assert value.to_bytes() == data


@given(st.binary(max_size=3 * SIZE))
@FUZZ
def test_fuzz_random_bytes(data: bytes) -> None:
    for parse in (PlatformChain, CaChain, CertExport):
        _exact_or_format_error(parse, data)


@given(data=st.data())
@FUZZ
def test_fuzz_mutated_full_chain(vectors: Path, data: st.DataObject) -> None:
    base = platform_bytes(vectors, "naples") + ca_bytes(vectors, "naples")
    _exact_or_format_error(PlatformChain, data.draw(mutated(base)))


@given(data=st.data())
@FUZZ
def test_fuzz_mutated_ca(vectors: Path, data: st.DataObject) -> None:
    generation = data.draw(st.sampled_from(("naples", "rome")))
    _exact_or_format_error(CaChain, data.draw(mutated(ca_bytes(vectors, generation))))


@given(data=st.data())
@FUZZ
def test_fuzz_mutated_cert_export(vectors: Path, data: st.DataObject) -> None:
    base = platform_bytes(vectors, "rome")[SIZE:]
    _exact_or_format_error(CertExport, data.draw(mutated(base)))


def test_sev_cert_of_a_chain_is_a_sev_cert(vectors: Path) -> None:
    data = platform_bytes(vectors, "rome")
    assert PlatformChain.from_bytes(data).pek == SevCert.from_bytes(data[SIZE : 2 * SIZE])
