"""The variants the diagnosis tries: each distinct, the claimed inputs first."""

from __future__ import annotations

import pytest

from sevlaunch.owner.diagnosis import (
    Diagnosis,
    Mistake,
    boot_variants,
    cmdline_variants,
    digest_variants,
    key_variants,
)
from sevlaunch.owner.launch_digest import measure_direct_boot, measure_firmware
from tests.owner import ovmf_images


def test_cmdline_variants_are_distinct_and_exclude_the_given_one() -> None:
    variants = cmdline_variants(b" quiet \n")
    lines = [v for v, _ in variants]
    assert b" quiet \n" not in lines
    assert len(set(lines)) == len(lines)
    assert {f.mistake for _, f in variants} == {
        Mistake.CMDLINE_NO_TRAILING_NEWLINE,
        Mistake.CMDLINE_TRAILING_NEWLINE,
        Mistake.CMDLINE_NO_TRAILING_WHITESPACE,
        Mistake.CMDLINE_TRIMMED,
        Mistake.CMDLINE_EMPTY,
    }
    assert (
        "' quiet '" in {f.mistake: f.text for _, f in variants}[Mistake.CMDLINE_NO_TRAILING_NEWLINE]
    )


def test_empty_cmdline_has_only_the_newline_variant() -> None:
    assert [f.mistake for _, f in cmdline_variants(b"")] == [Mistake.CMDLINE_TRAILING_NEWLINE]


def test_boot_variants_start_with_the_claim_and_end_without_table() -> None:
    boot = measure_direct_boot(b"k", b"i", "quiet")
    variants = list(boot_variants(boot))
    assert variants[0] == ((), boot)
    assert variants[-1][1] is None
    assert variants[-1][0][0].mistake is Mistake.KERNEL_HASHES_OFF
    assert len(variants) == 2 * (1 + len(cmdline_variants(b"quiet"))) + 1
    assert list(boot_variants(None)) == [((), None)]


def test_no_initrd_variant_when_none_was_given() -> None:
    boot = measure_direct_boot(b"k", None, "quiet")
    mistakes = {f.mistake for findings, _ in boot_variants(boot) for f in findings}
    assert Mistake.INITRD_MISSING not in mistakes


def test_digest_variants_claim_first_and_other_firmware_named() -> None:
    a = measure_firmware(ovmf_images.image(b"a" * 100), name="a.fd")
    b = measure_firmware(ovmf_images.image(b"b" * 100), name="b.fd")
    variants = list(digest_variants([a, b], None))
    assert variants[0].findings == ()
    assert variants[0].digest == a.sha256
    assert variants[1].findings[0].text == "the guest ran firmware b.fd instead of a.fd"
    assert list(digest_variants([], None)) == []


def test_key_variants() -> None:
    tik, tek = bytes(16), bytes(range(16))
    assert [k.findings for k in key_variants(tik, None)] == [()]
    swapped = key_variants(tik, tek)[1]
    assert swapped.tik == tek
    assert swapped.findings[0].mistake is Mistake.KEYS_SWAPPED
    assert tek.hex() not in repr(swapped)


@pytest.mark.parametrize(("tried", "words"), [(1, "(1 variant tried:"), (7, "(7 variants tried:")])
def test_an_unexplained_mismatch_counts_its_variants_in_english(tried: int, words: str) -> None:
    assert words in Diagnosis((), tried).describe()
