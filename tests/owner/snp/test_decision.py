"""The SNP release decision: every verifier check has a reason code, the first failed check
names the refusal and its message lists every failed one; passes and skips release."""

from __future__ import annotations

import pytest

from sevlaunch.errors import LaunchRefusedError
from sevlaunch.owner.snp.decision import CHECK_REASONS, SnpReason, decide
from sevlaunch.owner.snp.verdicts import CHECKS, Outcome, Verdict, Verdicts


def _verdicts(**outcomes: Outcome) -> Verdicts:
    return Verdicts(
        tuple(Verdict(c, outcomes.get(c, Outcome.PASS), f"{c} says so") for c in CHECKS),
        "2026-01-01T00:00:00+00:00",
    )


def test_every_check_has_a_reason_and_every_code_is_kebab_case() -> None:
    assert set(CHECK_REASONS) == set(CHECKS)
    for reason in SnpReason:
        assert str(reason) == str(reason).lower()
        assert " " not in str(reason)
        assert "_" not in str(reason)


def test_passes_and_skips_release() -> None:
    decide(_verdicts(host_data=Outcome.SKIP, vmpl=Outcome.SKIP))


@pytest.mark.parametrize("check", CHECKS)
def test_each_failed_check_refuses_with_its_reason(check: str) -> None:
    with pytest.raises(LaunchRefusedError) as info:
        decide(_verdicts(**{check: Outcome.FAIL}), "web")
    assert info.value.reason == str(CHECK_REASONS[check])
    assert f"{check}: {check} says so" in str(info.value)
    assert "web" in str(info.value)


def test_the_first_failure_names_the_refusal_and_all_are_listed() -> None:
    with pytest.raises(LaunchRefusedError) as info:
        decide(_verdicts(report_data=Outcome.FAIL, signature=Outcome.FAIL, crl=Outcome.FAIL))
    assert info.value.reason == "revoked"  # crl comes before signature and report_data
    text = str(info.value)
    assert "fails 3 of" in text
    assert text.index("crl:") < text.index("signature:") < text.index("report_data:")
