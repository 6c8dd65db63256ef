"""The broker dashboard's audit rendering of an SNP attestation: each verifier check on its
own line with its verdict and detail, escaped (the details quote what the guest sent)."""

from __future__ import annotations

from sevlaunch.broker.dashboard import Filters, render_audit
from sevlaunch.broker.store import AuditRow


def test_an_snp_attestation_shows_every_check_verdict() -> None:
    checks = [
        {"name": "signature", "verdict": "pass", "detail": "ECDSA P-384"},
        {"name": "report_data", "verdict": "fail", "detail": "REPORT_DATA <b>… is not bound"},
        {"name": "host_data", "verdict": "skip", "detail": "no HOST_DATA expected"},
    ]
    row = AuditRow(
        id=7,
        at=1_700_000_000.0,
        instance="b",
        actor="guest",
        action="snp.attest",
        outcome="refused",
        reason="report-data-mismatch",
        workload="app",
        launch=None,
        detail={"checks": checks, "message": "the SNP report fails 1 check"},
    )
    page = render_audit([row], Filters("", "", ""))
    assert '<ul class="checks">' in page
    assert '<li class="verdict-fail"><span class="key">report_data</span> fail: ' in page
    assert "REPORT_DATA &lt;b&gt;… is not bound" in page
    assert '<li class="verdict-skip">' in page
    assert page.count("<li ") == 3
    assert '"verdict"' not in page  # not dumped as JSON
