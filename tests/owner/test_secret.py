"""The LAUNCH_SECRET packet: sevctl's known answers, what the guest decrypts, size limits."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from sevlaunch.crypto.launch import TransportKeys, secret_mac
from sevlaunch.crypto.symmetric import aes128_ctr
from sevlaunch.errors import FormatError, UsageError
from sevlaunch.formats import Measurement, SecretTable
from sevlaunch.formats.secret import LUKS_KEY_GUID
from sevlaunch.owner.secret import MAX_PAYLOAD, build_packet, check_size, secret_table

MEASUREMENT = base64.b64decode("TLeA7607lZQntLjRY1/i+sbtdSZ+75zxpz4Px9hzpBLwItF5Q2o4prA++3ZZv9ZS")
IV = base64.b64decode("rFR07U3TLH2YnsUj2SVZ7A==")
OTHER_GUID = "736869e5-aaaa-4973-92ec-06879ce3da0b"
BIG_GUID = "23058844-597b-42fb-8259-a0f5d9d495af"


def _keys(vectors: Path) -> TransportKeys:
    folder = vectors / "sevctl/secret"
    return TransportKeys((folder / "tek1.bin").read_bytes(), (folder / "tik1.bin").read_bytes())


def _secret(vectors: Path, n: int) -> bytes:
    return (vectors / f"sevctl/secret/secret{n}.txt").read_bytes()


def test_sevctl_one_secret(vectors: Path) -> None:
    table = secret_table([("luks-key", _secret(vectors, 1))])
    packet = build_packet(table, _keys(vectors), MEASUREMENT, iv=IV)
    assert packet.header_b64 == (
        "AAAAAKxUdO1N0yx9mJ7FI9klWey8FSzeYQ4X8K71VzNKLU/KQsIsQxLjtbhaPUewqshX5Q=="
    )
    assert packet.payload_b64 == (
        "0U3e5PcXv0UW+H4tSBFKOdCYfKE1+j38Bc2fuO16mYiyI+sWx7INfn+lgYj56GL12yyinDa+lVfCCwD/2w5cPA=="
    )


def test_sevctl_two_secrets(vectors: Path) -> None:
    table = secret_table([("luks-key", _secret(vectors, 1)), (OTHER_GUID, _secret(vectors, 2))])
    packet = build_packet(table, _keys(vectors), Measurement.from_bytes(MEASUREMENT), iv=IV)
    assert packet.header_b64 == (
        "AAAAAKxUdO1N0yx9mJ7FI9klWeyZ3r0dOEKHUOhIRqzGYYvTJgdMtBPL1nK6GD9aGET7Ng=="
    )
    assert packet.payload_b64 == (
        "0U3e5PcXv0UW+H4tSBFKObWYfKE1+j38Bc2fuO16mYiyI+sWx7INfn+lgYj56GL12yyinDa+lVfCC+WWs332lpLN"
        "UX1ZI3YK7vYgtys4X+uGxEIlkIQ90v8/w8ZFmQMe"
    )


@pytest.mark.parametrize("n", [3, 4])
def test_sevctl_largest_payloads_are_exactly_16_kib(vectors: Path, n: int) -> None:
    table = secret_table([(BIG_GUID, _secret(vectors, n))])
    packet = build_packet(table, _keys(vectors), MEASUREMENT, iv=IV)
    assert len(packet.payload) == MAX_PAYLOAD == 16384


def test_guest_decrypts_the_table_and_the_mac_covers_measure(vectors: Path) -> None:
    keys = _keys(vectors)
    packet = build_packet(
        secret_table([("luks-key", b"pass"), (OTHER_GUID, b"x" * 33)]), keys, MEASUREMENT, iv=IV
    )
    plain = aes128_ctr(keys.tek, packet.header.iv, packet.payload)
    table = SecretTable.from_bytes(plain)
    assert table.get(LUKS_KEY_GUID) == b"pass"
    assert len(plain) % 16 == 0
    mac = secret_mac(
        keys.tik,
        flags=0,
        iv=IV,
        guest_length=len(plain),
        ciphertext=packet.payload,
        measure=MEASUREMENT[:32],
    )
    assert packet.header.mac == mac
    assert packet.header.flags == 0


def test_iv_is_drawn_from_rng_when_not_given(vectors: Path) -> None:
    drawn: list[int] = []

    def rng(n: int) -> bytes:
        drawn.append(n)
        return b"\x07" * n

    packet = build_packet(secret_table([("luks-key", b"p")]), _keys(vectors), MEASUREMENT, rng=rng)
    assert drawn == [16]
    assert packet.header.iv == b"\x07" * 16


def test_too_large_tables_are_refused(vectors: Path) -> None:
    table = secret_table([(BIG_GUID, b"." * 16345)])
    with pytest.raises(UsageError, match=r"16400 bytes once padded.*at most 16384") as err:
        build_packet(table, _keys(vectors), MEASUREMENT, iv=IV)
    assert "shorten" in str(err.value)
    small = secret_table([("luks-key", b"." * 3032)])
    assert check_size(small, 0xC00) == 0xC00
    with pytest.raises(UsageError, match="secret area holds 3072 bytes"):
        check_size(secret_table([("luks-key", b"." * 3033)]), 0xC00)


def test_bad_requests_are_refused(vectors: Path) -> None:
    with pytest.raises(UsageError, match="given twice"):
        secret_table([("luks-key", b"a"), (str(LUKS_KEY_GUID), b"b")])
    with pytest.raises(UsageError, match="at least one"):
        secret_table([])
    with pytest.raises(FormatError, match="neither a GUID nor a known alias"):
        secret_table([("disk-key", b"a")])
    table = secret_table([("luks-key", b"a")])
    with pytest.raises(UsageError, match="iv or an rng"):
        build_packet(table, _keys(vectors), MEASUREMENT)
    with pytest.raises(UsageError, match="16 bytes"):
        build_packet(table, _keys(vectors), MEASUREMENT, iv=bytes(8))
    with pytest.raises(FormatError, match="48 bytes"):
        build_packet(table, _keys(vectors), MEASUREMENT[:32], iv=IV)


def test_repr_hides_the_payload(vectors: Path) -> None:
    packet = build_packet(secret_table([("luks-key", b"a")]), _keys(vectors), MEASUREMENT, iv=IV)
    assert packet.payload_b64 not in repr(packet)
    assert "<48 bytes>" in repr(packet)
