"""Every byte of every signed region, flipped, fails — and fails in the expected way.

For each certificate of the real Naples and Rome full chains (PDH ‖ PEK ‖ OCA ‖ CEK ‖ ASK ‖
ARK, and Naples with AMD's unsigned ARK) one bit of every signed byte is flipped (all eight
bits in the headers, where codes live), the file is parsed and verified exactly as
``sevlaunch owner verify`` does, and the outcome must be the one the firmware-API doc
predicts from the field alone:

- a field the parser validates (version, reserved, usage, sizes, must-be-zero, unknown
  codes) → FormatError naming that certificate's field at the flipped offset;
- anything a signature covers → ChainError naming the first link that checks it;
- the ARK's key id or key → UntrustedRootError (the pin).

Signature values are flipped too (outside the signed region, so they are cheap to add).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sevlaunch.crypto import TrustStore, verify_platform
from sevlaunch.errors import ChainError, FormatError, UntrustedRootError
from sevlaunch.formats import Algorithm, PlatformChain
from sevlaunch.formats.sevcert import SIG1_OFFSET, SIG2_OFFSET, SIGNED_SIZE, SIZE
from tests.strategies import SEV_NAMES, ca_bytes, platform_bytes

# (exception class, link or field prefix, offset of the error relative to the flipped byte's
# certificate, or None for "the field holding the flipped byte")
Outcome = tuple[type[Exception], str, int | None]

FIRST_LINK = {"pdh": "PEK -> PDH", "pek": "OCA -> PEK", "oca": "OCA -> OCA", "cek": "ASK -> CEK"}
ECC_CODES = {int(a) for a in Algorithm if a.is_ecc}
RSA_CODES = {int(a) for a in Algorithm if a.is_rsa}
AMD_HEADER = 0x40
CASES = [("naples", "ark.cert"), ("naples", "ark.cert.bad"), ("rome", "ark.cert")]


def _u32(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 4], "little")


def _expected_sev(name: str, pos: int, flipped: bytes) -> Outcome:
    """What a flip at ``pos`` (relative to the certificate) of an SEV certificate must cause."""
    chain_error: Outcome = (ChainError, FIRST_LINK[name], None)
    if 4 <= pos < 6:  # api_major/api_minor: only the signature notices
        return chain_error
    if 12 <= pos < 16:
        algorithm = _u32(flipped, 12)
        if algorithm in ECC_CODES:  # another ECC algorithm parses and breaks the signature
            return chain_error
        if algorithm in RSA_CODES:  # the key union now reads as RSA: curve 2 is no bit size
            return (FormatError, f"{name}.pub_key.modulus_size", 0x10)
    if 16 <= pos < 20 and _u32(flipped, 16) in (1, 2):  # another curve: signature breaks
        return chain_error
    if 20 <= pos < 0x10 + 4 + 2 * 72:  # qx, qy
        return chain_error
    return (FormatError, name, None)  # version, reserved, usage, codes, pub_key.rmbz


def _expected_amd(name: str, pos: int) -> Outcome:
    """What a flip at ``pos`` of the ASK or ARK's signed bytes must cause."""
    in_key_id = 4 <= pos < 0x14
    in_certifying_id = 0x14 <= pos < 0x24
    if not (in_key_id or in_certifying_id or pos >= AMD_HEADER):
        return (FormatError, f"ca.{name}", None)  # version, usage, reserved, sizes
    if name == "ask":
        return (ChainError, "ARK -> ASK", None)
    if in_certifying_id:
        return (ChainError, "ARK -> ARK", None)
    return (UntrustedRootError, "", None)  # the ARK's key id or key no longer matches the pin


def _flips(start: int, end: int, header: int) -> Iterator[tuple[int, int]]:
    """(relative offset, bit) pairs: all 8 bits in the first ``header`` bytes, then one."""
    for pos in range(start, end):
        bits = range(8) if pos < header else (pos % 8,)
        for bit in bits:
            yield pos, bit


def _outcome(data: bytes) -> Exception | None:
    try:
        verify_platform(PlatformChain.from_bytes(data), TrustStore())
    except (FormatError, ChainError, UntrustedRootError) as exc:
        return exc
    return None


def _check(exc: Exception | None, expected: Outcome, file_pos: int, base: int) -> str | None:
    """None when ``exc`` is exactly the expected outcome, else a description of the mismatch.

    ``file_pos`` is the flipped byte and ``base`` the start of its certificate in the file.
    """
    cls, where, offset = expected
    if type(exc) is not cls:
        return f"expected {cls.__name__} {where}, got {exc!r}"
    if isinstance(exc, ChainError) and exc.link != where:
        return f"expected link {where}, got {exc.link}"
    if isinstance(exc, FormatError):
        if not exc.field.startswith(where):
            return f"expected a field of {where}, got {exc.field}"
        if offset is not None and exc.offset != base + offset:
            return f"expected offset {base + offset:#x}, got {exc.offset}"
        if offset is None and (exc.offset is None or not 0 <= file_pos - exc.offset < 4):
            return f"expected the offset of the field at {file_pos:#x}, got {exc.offset}"
    return None


def _flip(data: bytes, pos: int, bit: int) -> bytes:
    return data[:pos] + bytes([data[pos] ^ (1 << bit)]) + data[pos + 1 :]


def _full_chain(vectors: Path, generation: str, ark: str) -> bytes:
    return platform_bytes(vectors, generation) + ca_bytes(vectors, generation, ark=ark)


def _assert_all(failures: list[str], count: int) -> None:
    assert count > 0
    assert not failures, f"{len(failures)} of {count} flips misbehaved:\n" + "\n".join(
        failures[:20]
    )


@pytest.mark.parametrize(("generation", "ark"), CASES)
def test_unflipped_chain_verifies(vectors: Path, generation: str, ark: str) -> None:
    assert _outcome(_full_chain(vectors, generation, ark)) is None


@pytest.mark.parametrize("generation", ["naples", "rome"])
@pytest.mark.parametrize("index", range(4), ids=SEV_NAMES)
def test_sev_certificate_signed_bytes(vectors: Path, generation: str, index: int) -> None:
    data = _full_chain(vectors, generation, "ark.cert")
    name, base = SEV_NAMES[index], index * SIZE
    failures, count = [], 0
    for pos, bit in _flips(0, SIGNED_SIZE, header=20):
        flipped = _flip(data, base + pos, bit)
        expected = _expected_sev(name, pos, flipped[base : base + SIZE])
        problem = _check(_outcome(flipped), expected, base + pos, base)
        count += 1
        if problem:
            failures.append(f"{name} byte {pos:#x} bit {bit}: {problem}")
    _assert_all(failures, count)


@pytest.mark.parametrize(("generation", "ark"), CASES)
@pytest.mark.parametrize("name", ["ask", "ark"])
def test_amd_certificate_signed_bytes(vectors: Path, generation: str, ark: str, name: str) -> None:
    data = _full_chain(vectors, generation, ark)
    ask_size = (vectors / "amd" / f"{generation}_ask.cert").stat().st_size
    base = 4 * SIZE + (ask_size if name == "ark" else 0)
    signed = AMD_HEADER + 2 * (ask_size - AMD_HEADER) // 3  # header ‖ exponent ‖ modulus
    failures, count = [], 0
    for pos, bit in _flips(0, signed, header=AMD_HEADER):
        outcome = _outcome(_flip(data, base + pos, bit))
        problem = _check(outcome, _expected_amd(name, pos), base + pos, base)
        count += 1
        if problem:
            failures.append(f"{generation} {name} byte {pos:#x} bit {bit}: {problem}")
    _assert_all(failures, count)


@pytest.mark.parametrize("generation", ["naples", "rome"])
def test_signature_values(vectors: Path, generation: str) -> None:
    """The bytes of each used signature: r ‖ s for ECDSA, the integer for RSA."""
    data = _full_chain(vectors, generation, "ark.cert")
    used = {
        "pdh": [(SIG1_OFFSET, 96)],
        "pek": [(SIG1_OFFSET, 96), (SIG2_OFFSET, 96)],
        "oca": [(SIG1_OFFSET, 96)],
        "cek": [(SIG1_OFFSET, 512 if generation == "rome" else 256)],
    }
    # CEK -> PEK is checked after OCA -> PEK, so a broken sig2 shows up as its own link.
    slot_link = {("pek", SIG2_OFFSET): "CEK -> PEK"}
    failures, count = [], 0
    for index, name in enumerate(SEV_NAMES):
        for slot, size in used[name]:
            link = slot_link.get((name, slot), FIRST_LINK[name])
            start = index * SIZE + slot + 8
            for pos in range(start, start + size):
                outcome = _outcome(_flip(data, pos, pos % 8))
                problem = _check(outcome, (ChainError, link, None), pos, index * SIZE)
                count += 1
                if problem:
                    failures.append(f"{name} signature byte {pos - start}: {problem}")
    ask_size = (vectors / "amd" / f"{generation}_ask.cert").stat().st_size
    sig_size = (ask_size - AMD_HEADER) // 3
    for cert_base, link in ((4 * SIZE, "ARK -> ASK"), (4 * SIZE + ask_size, "ARK -> ARK")):
        for pos in range(cert_base + ask_size - sig_size, cert_base + ask_size):
            outcome = _outcome(_flip(data, pos, pos % 8))
            problem = _check(outcome, (ChainError, link, None), pos, cert_base)
            count += 1
            if problem:
                failures.append(f"{link} signature byte {pos - cert_base}: {problem}")
    _assert_all(failures, count)
