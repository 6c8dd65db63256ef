"""One record of a launch's steps, shared by the terminal, the host and the guest owner.

The VM tool sees every step but times the host's from the outside; the host times its own
and never sees the owner's. Once a launch is over, the VM tool gives the host its record of
the steps the host does not see (1-5, 11), takes the host's timing and outcome of the host's
(6-10, 12, 13, merged one row per step by :func:`sevlaunch.protocol.one_per_step`), and gives
the resulting table, the one it prints, to the guest owner, keyed by the owner's launch id.
So the terminal, the host's page and the broker's page show the same figures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sevlaunch.errors import SevlaunchError
from sevlaunch.protocol import Step, StepReport, one_per_step

if TYPE_CHECKING:
    from sevlaunch.orchestrate.host_port import HostPort
    from sevlaunch.orchestrate.launch import LaunchResult, Observer, StepRecord
    from sevlaunch.orchestrate.owner_port import GuestOwner

#: Steps the host does not see; the VM tool's record of them is the one the host keeps.
VM_TOOL_STEPS = frozenset(
    {
        Step.LAUNCH_REQUESTED,
        Step.NODE_SEV_INFO,
        Step.PDH_EXPORTED,
        Step.PLATFORM_VERIFIED,
        Step.SESSION_MADE,
        Step.MEASUREMENT_CHECKED,
    }
)


def share_records(
    host: HostPort, owner: GuestOwner, result: LaunchResult, observer: Observer
) -> None:
    """Exchange the records of ``result``'s launch; a party that cannot take them is noted on
    the last step's detail (the launch itself is decided already)."""
    launch = result.host_launch
    if launch is not None:
        try:
            _with_host(host, result, launch, observer)
        except SevlaunchError as exc:
            observer(result.domain, _note(result, f"the host did not take the step records: {exc}"))
    if not result.launch_id:
        return
    table = _table(result, launch or 0)
    try:
        owner.report_steps(result.launch_id, table, launch)
    except SevlaunchError as exc:
        observer(result.domain, _note(result, f"the owner did not take the step records: {exc}"))


def _with_host(host: HostPort, result: LaunchResult, launch: int, observer: Observer) -> None:
    mine = [r for r in _table(result, launch) if r.step in VM_TOOL_STEPS]
    host.report_steps(result.domain, mine)
    for step, report in one_per_step(host.timeline(result.domain, launch)).items():
        if step in VM_TOOL_STEPS:
            continue
        record = result.steps[step - 1]
        record.status, record.by_host = report.outcome, True
        record.detail = record.detail or report.detail  # what the VM tool saw, if it did
        record.started, record.duration = report.started, report.duration
        observer(result.domain, record)


def _table(result: LaunchResult, launch: int) -> list[StepReport]:
    """The steps that happened, as the VM tool now holds them."""
    return [
        StepReport(launch, r.step, r.status, r.started, r.duration, r.detail)
        for r in result.steps
        if r.status in ("ok", "failed") and r.started is not None
    ]


def _note(result: LaunchResult, text: str) -> StepRecord:
    record = result.steps[Step.RESUMED_BOOTED - 1]
    record.detail = f"{record.detail}; {text}" if record.detail else text
    return record
