"""A launch's steps as its VM tool recorded them: kept once, by the launch's own launcher,
read back as they were given; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sevlaunch.broker.launch_steps import ACTION, DETAIL_MAX, steps_of
from sevlaunch.broker.service import NewWorkload
from sevlaunch.errors import ConflictError, FormatError, NotFoundError
from sevlaunch.protocol import Step, StepReport
from tests.broker.conftest import DIGEST, POLICY, Instance
from tests.broker.fakeplatform import FakePlatform


def _report(step: int, detail: str = "") -> StepReport:
    return StepReport(0, Step.of(step), "ok", 100.0 + step, 0.5, detail or f"step {step}")


def test_kept_once_by_its_own_launcher(
    make_instance: Callable[..., Instance], db_url: str, platform: FakePlatform
) -> None:
    broker = make_instance(db_url).broker
    broker.add_root(platform.ca_file, "lab")
    broker.add_workload(NewWorkload("web", (POLICY,), (DIGEST,)))
    launch = broker.start_launch("web", platform.node.pdh, platform.node.cert_chain).id
    reports = [_report(n) for n in range(1, 12)] + [_report(12, "x" * (DETAIL_MAX + 50))]
    with pytest.raises(NotFoundError):  # another launcher's launch is not found
        broker.record_steps(launch, reports, launcher="someone-else")
    with pytest.raises(FormatError):
        broker.record_steps(launch, [_report(1), _report(1)])
    assert broker.record_steps(launch, reports, host_launch=4) == 12
    with pytest.raises(ConflictError) as again:
        broker.record_steps(launch, reports[:1])
    assert again.value.reason == "steps-recorded"
    entries = [a for a in broker.audit(launch=launch) if a.action == ACTION]
    assert len(entries) == 1
    detail = entries[0].detail
    assert isinstance(detail, dict)
    assert detail["host-launch"] == 4
    kept = steps_of(detail)
    assert [(s.step, s.started, s.duration) for s in kept] == [
        (r.step, r.started, r.duration) for r in reports
    ]
    assert len(kept[-1].detail) == DETAIL_MAX


def test_malformed_records_read_as_none() -> None:
    assert steps_of({}) == []
    assert steps_of({"steps": "no"}) == []
    assert steps_of({"steps": [{"step": 99, "outcome": "ok"}]}) == []
