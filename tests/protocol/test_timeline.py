"""One row per step from every record of it, as the terminal and the host's page show them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sevlaunch.protocol import Step, StepReport, one_per_step

REPORTS = st.builds(
    StepReport,
    launch=st.just(1),
    step=st.sampled_from(list(Step)),
    outcome=st.sampled_from(["ok", "failed"]),
    started=st.floats(0, 1e6),
    duration=st.none() | st.floats(0, 100),
    detail=st.text(max_size=5),
)


def test_the_two_records_of_step_13_are_one_row() -> None:
    resumed = StepReport(1, Step.RESUMED_BOOTED, "ok", 10.0, 0.5, "resumed")
    booted = StepReport(1, Step.RESUMED_BOOTED, "ok", 12.0, None, "guest booted")
    other = StepReport(1, Step.SECRET_INJECTED, "ok", 9.0, 0.1, "")
    merged = one_per_step([booted, other, resumed])
    assert list(merged) == [Step.SECRET_INJECTED, Step.RESUMED_BOOTED]  # in step order
    row = merged[Step.RESUMED_BOOTED]
    assert (row.started, row.duration, row.detail) == (10.0, 2.0, "resumed; guest booted")
    assert merged[Step.SECRET_INJECTED] is other


def test_a_failed_record_fails_the_row() -> None:
    records = [
        StepReport(1, Step.RESUMED_BOOTED, "ok", 1.0, 0.1, "resumed"),
        StepReport(1, Step.RESUMED_BOOTED, "failed", 2.0, None, "guest halted"),
    ]
    assert one_per_step(records)[Step.RESUMED_BOOTED].outcome == "failed"


@given(st.lists(REPORTS, max_size=30))
def test_each_step_once_spanning_all_its_records(reports: list[StepReport]) -> None:
    merged = one_per_step(reports)
    assert set(merged) == {r.step for r in reports}
    for step, row in merged.items():
        mine = [r for r in reports if r.step == step]
        assert row.started == min(r.started for r in mine)
        end = max(r.started + (r.duration or 0.0) for r in mine)
        if len(mine) > 1:
            assert row.duration is not None
            assert abs(row.started + row.duration - end) <= 1e-6 * max(1.0, end)
