"""The VM tool's step records shared with the host and the owner: the host gets the steps it
does not see, the VM tool shows the host's timing of the host's steps (merged once each), the
owner gets the resulting table; a party that refuses them leaves the launch's result as it was
decided, with a note."""

from __future__ import annotations

from dataclasses import dataclass, field

from sevlaunch.errors import HostError, SevlaunchError
from sevlaunch.orchestrate.launch import LaunchResult, StepRecord
from sevlaunch.orchestrate.records import VM_TOOL_STEPS, share_records
from sevlaunch.protocol import Step, StepReport


@dataclass
class FakeHost:
    """The host's side: its own records of its steps and what the VM tool gave it."""

    timeline_rows: list[StepReport]
    given: list[StepReport] = field(default_factory=list)
    refuse: bool = False

    def report_steps(self, name: str, reports: list[StepReport]) -> int:
        if self.refuse:
            raise HostError("operation failed", "no timeline here")
        self.given += reports
        return len(reports)

    def timeline(self, name: str, launch: int | None = None) -> list[StepReport]:
        return [r for r in self.timeline_rows if launch is None or r.launch == launch]


@dataclass
class FakeOwner:
    given: list[tuple[str, list[StepReport], int | None]] = field(default_factory=list)

    def report_steps(
        self, launch_id: str, reports: list[StepReport], host_launch: int | None = None
    ) -> int:
        self.given.append((launch_id, reports, host_launch))
        return len(reports)


def _result() -> LaunchResult:
    steps = [StepRecord(s, "ok", 10.0 + s, 0.001, f"seen {int(s)}") for s in Step]
    steps[Step.SESSION_MADE - 1].detail = ""
    return LaunchResult("vm", steps, ok=True, launch_id="ab" * 16, host_launch=2)


def _host_rows() -> list[StepReport]:
    mine = [StepReport(2, s, "ok", 20.0 + s, 0.25, "") for s in Step if s not in VM_TOOL_STEPS]
    booted = StepReport(2, Step.RESUMED_BOOTED, "ok", 40.0, None, "guest booted")
    older = StepReport(1, Step.STARTED_PAUSED, "failed", 1.0, 9.0, "an earlier launch")
    return [*mine, booted, older]


def test_each_party_gets_its_part_and_one_set_of_figures() -> None:
    host, owner, result, seen = FakeHost(_host_rows()), FakeOwner(), _result(), []
    share_records(host, owner, result, lambda _d, r: seen.append(r.step))  # type: ignore[arg-type]
    assert sorted(r.step for r in host.given) == sorted(VM_TOOL_STEPS)
    for step in Step:
        record = result.steps[step - 1]
        if step in VM_TOOL_STEPS:
            assert (record.started, record.by_host) == (10.0 + step, False)
        else:
            assert record.by_host
            assert record.started == 20.0 + step
    resumed = result.steps[Step.RESUMED_BOOTED - 1]
    assert resumed.duration == 40.0 - (20.0 + Step.RESUMED_BOOTED)  # the two records, once
    assert resumed.detail == "seen 13"  # the VM tool's own words stay
    [(launch_id, table, host_launch)] = owner.given
    assert (launch_id, host_launch) == (result.launch_id, 2)
    assert [(r.step, r.started, r.duration) for r in table] == [
        (r.step, r.started, r.duration) for r in result.steps
    ]  # the owner gets the table the terminal shows
    assert set(seen) == {s for s in Step if s not in VM_TOOL_STEPS}


def test_a_host_that_refuses_leaves_a_note_and_the_owner_still_gets_the_table() -> None:
    host, owner, result = FakeHost(_host_rows(), refuse=True), FakeOwner(), _result()
    share_records(host, owner, result, lambda _d, _r: None)  # type: ignore[arg-type]
    assert result.ok
    assert "the host did not take the step records" in result.steps[-1].detail
    assert len(owner.given[0][1]) == len(Step)


def test_no_host_launch_no_host_exchange() -> None:
    host, owner, result = FakeHost(_host_rows()), FakeOwner(), _result()
    result.host_launch = None
    share_records(host, owner, result, lambda _d, _r: None)  # type: ignore[arg-type]
    assert host.given == []
    assert owner.given[0][2] is None


class RefusingOwner(FakeOwner):
    def report_steps(
        self, launch_id: str, reports: list[StepReport], host_launch: int | None = None
    ) -> int:
        raise SevlaunchError("the broker is gone")


def test_an_owner_that_refuses_leaves_a_note() -> None:
    result = _result()
    share_records(FakeHost(_host_rows()), RefusingOwner(), result, lambda _d, _r: None)  # type: ignore[arg-type]
    assert "the owner did not take the step records: the broker is gone" in result.steps[-1].detail
