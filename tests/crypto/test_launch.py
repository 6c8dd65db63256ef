"""Launch crypto against real tools' known answers: virtee's session KATs, sev-tool's MEASURE,
sevctl's measurement blobs (plain, with kernel hashes, SEV-ES) and LAUNCH_SECRET packets."""

from __future__ import annotations

import base64
import hashlib
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sevlaunch.crypto.kdf import master_secret
from sevlaunch.crypto.launch import (
    TransportKeys,
    check_policy_mac,
    measurement_mac,
    policy_mac,
    secret_mac,
    unwrap_keys,
    wrap_keys,
)
from sevlaunch.crypto.symmetric import aes128_ctr
from sevlaunch.errors import CryptoError, IntegrityError
from sevlaunch.formats import KernelHashes, Session
from sevlaunch.formats.secret import LUKS_KEY_GUID, SecretEntry, SecretHeader, SecretTable

MASTER = bytes.fromhex("ab4d269fcc62bedb4511d56c386ce706")
WRAP_TK = bytes.fromhex("2137bc7f9bb8bd7c3e55a576a15d3454b3856b8ba27afadf46dcfee9f02c02c4")
WRAP_MAC = bytes.fromhex("3176c0752738bd9d5e86689534020f528c088f16238826b000b327dee6aeed7d")
POLICY_MAC = bytes.fromhex("aa7855e13839dd767cd5da7c1ff5036540c9264b7a803029315e55375287b4af")

OVMF = "sevctl/OVMF.amdsev.fd_trimmed_edk2-ovmf-20220126gitbb1bba3d77-4.el9"
NONCE = base64.b64decode("wxP6tRHCFrFQWxsuqZA8QA==")


def _zero_session() -> Session:
    keys = TransportKeys(bytes(16), bytes(16))
    wrap_tk, wrap_mac = wrap_keys(MASTER, keys, bytes(16))
    return Session(bytes(16), wrap_tk, bytes(16), wrap_mac, policy_mac(keys.tik, 0))


# --- session (virtee/sev src/session/mod.rs) -------------------------------------------------


def test_wrap_and_policy_mac_kats() -> None:
    assert master_secret(bytes(16), bytes(16)) == MASTER
    session = _zero_session()
    assert (session.wrap_tk, session.wrap_mac, session.policy_mac) == (
        WRAP_TK,
        WRAP_MAC,
        POLICY_MAC,
    )
    check_policy_mac(bytes(16), 0, POLICY_MAC)


def test_unwrap_recovers_the_keys_and_checks_the_mac() -> None:
    tek, tik = bytes(range(16)), bytes(range(16, 32))
    iv = bytes(range(32, 48))
    wrap_tk, wrap_mac = wrap_keys(MASTER, TransportKeys(tek, tik), iv)
    session = Session(bytes(16), wrap_tk, iv, wrap_mac, policy_mac(tik, 3))
    keys = unwrap_keys(MASTER, session)
    assert (keys.tek, keys.tik) == (tek, tik)
    tampered = Session(bytes(16), wrap_tk[:-1] + b"\0", iv, wrap_mac, session.policy_mac)
    with pytest.raises(IntegrityError, match="WRAP_MAC"):
        unwrap_keys(MASTER, tampered)
    with pytest.raises(IntegrityError, match="POLICY_MAC"):
        check_policy_mac(tik, 7, session.policy_mac)


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=32, max_size=32))
@settings(max_examples=50, deadline=None)
def test_wrap_unwrap_round_trip(master: bytes, tk: bytes) -> None:
    keys = TransportKeys.from_tk(tk)
    wrap_tk, wrap_mac = wrap_keys(master, keys, bytes(16))
    back = unwrap_keys(master, Session(bytes(16), wrap_tk, bytes(16), wrap_mac, bytes(32)))
    assert (back.tek, back.tik) == (keys.tek, keys.tik)


def test_transport_keys_never_print_and_check_sizes() -> None:
    keys = TransportKeys(b"\x11" * 16, b"\x22" * 16)
    assert "11" not in repr(keys)
    with pytest.raises(CryptoError):
        TransportKeys(bytes(16), bytes(15))
    with pytest.raises(CryptoError):
        TransportKeys.from_tk(bytes(31))


# --- LAUNCH_MEASURE ----------------------------------------------------------------------------


def test_sev_tool_measure_kat() -> None:
    mac = measurement_mac(
        bytes.fromhex("66320db73158a35a255d051758e95ed4"),
        api_major=0,
        api_minor=18,
        build_id=0x0F,
        policy=0,
        digest=hashlib.sha256(b"").digest(),
        mnonce=bytes.fromhex("4fbe0bedbad6c86ae8f68971d103e554"),
    )
    assert mac.hex() == "6faab2daae389bcd3405a05d6cafe33c0414f7bedd0bae19ba5f38b7fd1664ea"


def test_measurement_mac_checks_sizes() -> None:
    with pytest.raises(CryptoError):
        measurement_mac(
            bytes(16), api_major=0, api_minor=0, build_id=0, policy=0, digest=bytes(31),
            mnonce=bytes(16),
        )  # fmt: skip


def _sev_blob(tik: bytes, digest: bytes, *, api: tuple[int, int], build: int, policy: int,
              nonce: bytes) -> str:  # fmt: skip
    mac = measurement_mac(
        tik, api_major=api[0], api_minor=api[1], build_id=build, policy=policy, digest=digest,
        mnonce=nonce,
    )  # fmt: skip
    return base64.b64encode(mac + nonce).decode()


def _kernel_hashes(vectors: Path) -> KernelHashes:
    folder = vectors / "sevctl" / "measurement"
    return KernelHashes(
        cmdline=hashlib.sha256(b"foo bar baz fake kernel=cmdline\0").digest(),
        initrd=hashlib.sha256((folder / "initrd-fake").read_bytes()).digest(),
        kernel=hashlib.sha256((folder / "vmlinuz-fake").read_bytes()).digest(),
    )


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("given", "lswbxWxI9gckya16JQvdFtpYmNO4b+3inAPpqsgoBI7DE/q1EcIWsVBbGy6pkDxA"),
        ("ovmf", "oMDewIouJSpbpNRHj7Mk3p08H2dPZQdsZMU14qIymBnDE/q1EcIWsVBbGy6pkDxA"),
        ("hashes", "h3auYbWQnVW7EGLWN4Hf9SN0oEYMPU2sK4bLnefWPwvDE/q1EcIWsVBbGy6pkDxA"),
    ],
)
def test_sevctl_sev_measurements(vectors: Path, case: str, expected: str) -> None:
    tik = (vectors / "sevctl" / "measurement" / "tik1.bin").read_bytes()
    ovmf = (vectors / OVMF).read_bytes()
    if case == "given":
        digest = base64.b64decode("xkvRAfyaSizgonxAjZIAkR8TmolUabBKQKb6KJCDDSM=")
    elif case == "ovmf":
        digest = hashlib.sha256(ovmf).digest()
    else:
        table = _kernel_hashes(vectors).to_bytes()
        assert len(table) == 176
        digest = hashlib.sha256(ovmf + table).digest()
    blob = _sev_blob(tik, digest, api=(1, 40), build=40, policy=0x03, nonce=NONCE)
    assert blob == expected


def test_sevctl_sev_es_measurement(vectors: Path) -> None:
    expected = "/o0nzDKE5XgtVnUZWPhUea/WZYrTKLExR7KCwuMdbActvpWfXTFk21KMZIAAhQny"
    sevctl = vectors / "sevctl"
    tik = (sevctl / "measurement" / "tik1.bin").read_bytes()
    vmsa0, vmsa1 = ((sevctl / f"vmsa{i}.bin").read_bytes() for i in (0, 1))
    digest = hashlib.sha256((vectors / OVMF).read_bytes() + vmsa0 + vmsa1 * 3).digest()
    nonce = base64.b64decode(expected)[32:]
    assert _sev_blob(tik, digest, api=(1, 49), build=6, policy=0x05, nonce=nonce) == expected


# --- LAUNCH_SECRET (sevctl tests/secretbuild.rs) ------------------------------------------------

SECRET_MEASUREMENT = "TLeA7607lZQntLjRY1/i+sbtdSZ+75zxpz4Px9hzpBLwItF5Q2o4prA++3ZZv9ZS"
SECRET_IV = base64.b64decode("rFR07U3TLH2YnsUj2SVZ7A==")
OTHER_GUID = uuid.UUID("736869e5-aaaa-4973-92ec-06879ce3da0b")
BIG_GUID = uuid.UUID("23058844-597b-42fb-8259-a0f5d9d495af")


def _packet(vectors: Path, entries: tuple[SecretEntry, ...]) -> tuple[SecretHeader, bytes]:
    folder = vectors / "sevctl" / "secret"
    tek, tik = ((folder / f"{k}1.bin").read_bytes() for k in ("tek", "tik"))
    measure = base64.b64decode(SECRET_MEASUREMENT)[:32]
    plain = SecretTable(entries).to_bytes()
    cipher = aes128_ctr(tek, SECRET_IV, plain)
    mac = secret_mac(
        tik, flags=0, iv=SECRET_IV, guest_length=len(plain), ciphertext=cipher, measure=measure
    )
    return SecretHeader(0, SECRET_IV, mac), cipher


def _secret(vectors: Path, n: int) -> bytes:
    return (vectors / "sevctl" / "secret" / f"secret{n}.txt").read_bytes()


@pytest.mark.parametrize(
    ("count", "header", "payload"),
    [
        (
            1,
            "AAAAAKxUdO1N0yx9mJ7FI9klWey8FSzeYQ4X8K71VzNKLU/KQsIsQxLjtbhaPUewqshX5Q==",
            "0U3e5PcXv0UW+H4tSBFKOdCYfKE1+j38Bc2fuO16mYiyI+sWx7INfn+lgYj56GL12yyinDa+lVfCCwD/2w5cPA==",
        ),
        (
            2,
            "AAAAAKxUdO1N0yx9mJ7FI9klWeyZ3r0dOEKHUOhIRqzGYYvTJgdMtBPL1nK6GD9aGET7Ng==",
            "0U3e5PcXv0UW+H4tSBFKObWYfKE1+j38Bc2fuO16mYiyI+sWx7INfn+lgYj56GL12yyinDa+lVfCC+WWs332lpLNUX1ZI3YK7vYgtys4X+uGxEIlkIQ90v8/w8ZFmQMe",
        ),
    ],
)
def test_sevctl_secret_packets(vectors: Path, count: int, header: str, payload: str) -> None:
    entries = [SecretEntry(LUKS_KEY_GUID, _secret(vectors, 1))]
    if count == 2:
        entries.append(SecretEntry(OTHER_GUID, _secret(vectors, 2)))
    hdr, cipher = _packet(vectors, tuple(entries))
    assert base64.b64encode(hdr.to_bytes()).decode() == header
    assert base64.b64encode(cipher).decode() == payload


@pytest.mark.parametrize("n", [3, 4])
def test_sevctl_largest_secrets_fill_16_kib(vectors: Path, n: int) -> None:
    data = _secret(vectors, n)
    assert len(data) == {3: 16343, 4: 16344}[n]
    hdr, cipher = _packet(vectors, (SecretEntry(BIG_GUID, data),))
    assert len(cipher) == 16384
    assert hdr.flags == 0
    # The guest decrypts it back to the table it can parse.
    tek = (vectors / "sevctl" / "secret" / "tek1.bin").read_bytes()
    assert SecretTable.from_bytes(aes128_ctr(tek, SECRET_IV, cipher)).get(BIG_GUID) == data
