"""A launch step as the host manager records it: a row in the store's timeline and a live
``launch-step`` event, with the same fields and the protocol's one wording of each step, so
the dashboard, the CLI and the VM tool agree.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from sevlaunch.host.events import EventBus
from sevlaunch.host.store import DomainRow, StepRow, Store
from sevlaunch.protocol import Outcome, SnpStep, Step, StepReport

#: Step 13 is recorded twice: when the vCPUs resume, and when the guest reports its boot (the
#: second record's detail starts with one of these).
GUEST_BOOTED = "guest booted"
GUEST_HALTED = "guest halted"
#: The steps the host does not see: the VM tool and the guest owner do them, and the VM tool
#: reports them (:func:`record_report`) so that the timeline holds all 13 of a launch.
REPORTED = frozenset(
    {
        Step.LAUNCH_REQUESTED,
        Step.NODE_SEV_INFO,
        Step.PDH_EXPORTED,
        Step.PLATFORM_VERIFIED,
        Step.SESSION_MADE,
        Step.MEASUREMENT_CHECKED,
    }
)
DETAIL_MAX = 2000


def record_step(
    store: Store,
    events: EventBus,
    row: DomainRow,
    launch: int,
    step: Step | SnpStep,
    outcome: Outcome,
    detail: str = "",
    began: float | None = None,
) -> None:
    """Record and publish one step; its duration runs from ``began`` when given."""
    now = time.time()
    duration = now - began if began is not None else None
    store.add_step(
        row.uuid,
        launch,
        int(step),
        step.title,
        step.party,
        str(outcome),
        detail,
        started=began or now,
        duration=duration,
    )
    events.publish(
        "launch-step",
        row.name,
        launch=launch,
        step=int(step),
        name=step.title,
        party=step.party,
        outcome=str(outcome),
        detail=detail,
        duration=duration,
    )


def boot_reported(steps: Iterable[StepRow], step: int = Step.RESUMED_BOOTED) -> bool:
    """Whether the guest reported its boot (or its halt) in these steps (``step``: the
    launch's boot step, SNP's is 12)."""
    return any(s.step == step and s.detail.startswith((GUEST_BOOTED, GUEST_HALTED)) for s in steps)


def booted(steps: Iterable[StepRow], step: int = Step.RESUMED_BOOTED) -> bool:
    """Whether the guest reported a successful boot in these steps."""
    return any(
        s.step == step and s.outcome == Outcome.OK and s.detail.startswith(GUEST_BOOTED)
        for s in steps
    )


def record_report(
    store: Store, events: EventBus, row: DomainRow, report: StepReport, recorded: set[int]
) -> bool:
    """Record a step the VM tool reports (one of :data:`REPORTED`, of the domain's current
    launch, once: ``recorded`` holds the steps already there); whether it was recorded."""
    if report.step not in REPORTED or report.launch != row.launch or report.step in recorded:
        return False
    outcome = Outcome(report.outcome)
    detail = report.detail[:DETAIL_MAX]
    store.add_step(
        row.uuid,
        row.launch,
        int(report.step),
        report.step.title,
        report.step.party,
        str(outcome),
        detail,
        started=report.started,
        duration=report.duration,
    )
    recorded.add(int(report.step))
    events.publish(
        "launch-step",
        row.name,
        launch=row.launch,
        step=int(report.step),
        name=report.step.title,
        party=report.step.party,
        outcome=str(outcome),
        detail=detail,
        duration=report.duration,
    )
    return True
